/**
 * The one retry policy of the clients (push, pull, reconnect, re-subscribe):
 * capped exponential backoff with full jitter, as a `Schedule`. Attempt `n`
 * (from 0) waits a uniform random time in `[0, min(max, initial * 2^n))`,
 * so many clients that failed together do not retry together.
 *
 * Every client retry uses `schedule` (through `Effect.retry`), `resetWhen`
 * (the same policy starting over after a success, e.g. a connection that
 * was accepted), or `make` (the same policy driven by hand, for a worker
 * whose wait a wake signal may cut short).
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"

/**
 * The delays of a backoff.
 *
 * @since 0.1.0
 * @category options
 */
export interface Options {
  /** The cap of the first delay (doubling per attempt). */
  readonly initial: Duration.DurationInput
  /** The largest cap. */
  readonly max: Duration.DurationInput
}

/**
 * Capped exponential backoff with full jitter: delay `n` is uniform in
 * `[0, min(max, initial * 2^n))`. Never ends: a retry with it stops only
 * on success (or on its `while` / `until`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const schedule = (options: Options): Schedule.Schedule<Duration.Duration> =>
  Schedule.exponential(options.initial).pipe(
    Schedule.union(Schedule.spaced(options.max)),
    Schedule.delays,
    Schedule.jitteredWith({ min: 0, max: 1 })
  )

/**
 * `schedule(options)` for `Effect.retry`, started over whenever `reset`
 * holds for the failure being retried: that failure waits the first delay
 * again, and later ones grow from there.
 *
 * @since 0.1.0
 * @category constructors
 */
export const resetWhen = <In>(options: Options, reset: (input: In) => boolean): Schedule.Schedule<readonly [In, Duration.Duration], In> =>
  Schedule.identity<In>().pipe(
    Schedule.intersect(schedule(options)),
    Schedule.resetWhen(([input]) => reset(input))
  )

/**
 * `schedule` driven by hand, for a worker that decides per attempt whether
 * it failed.
 *
 * @since 0.1.0
 * @category models
 */
export interface Backoff {
  /** Sleep for the next delay, or until `wake` (if given) is signalled, whichever comes first. */
  readonly wait: Effect.Effect<void>
  /** The next `wait` is the first again (after a success). */
  readonly reset: Effect.Effect<void>
}

/**
 * A `Backoff` over `schedule(options)`; a signal on `wake` ends a wait
 * early without resetting the delays.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options, wake?: Queue.Dequeue<void>): Effect.Effect<Backoff> =>
  Effect.map(Schedule.driver(schedule(options)), (driver) => {
    // the schedule never ends, so `next` never fails; `ignore` only satisfies the type
    const sleep = Effect.ignore(driver.next(undefined))
    return {
      wait: wake === undefined ? sleep : Effect.raceFirst(sleep, Queue.take(wake)),
      reset: driver.reset
    }
  })
