/**
 * The one retry policy of the clients (push, pull, reconnect, re-subscribe):
 * capped exponential backoff with full jitter, as a `Schedule`. Attempt `n`
 * (from 0) waits a uniform random time in `[0, min(max, initial * 2^n))`,
 * so many clients that failed together do not retry together.
 *
 * Every client retry is `Effect.retry` / `Effect.repeat` over `schedule`,
 * `resetWhen` (the same policy starting over after a success, e.g. a
 * connection that was accepted), or `wakeable` (the same policy, each wait of
 * which a wake signal may cut short: the socket is back, a scope is wanted).
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
 * `schedule(options)` for `Effect.retry`, every wait of which a signal on
 * `wake` ends early; the delays keep growing (only a success starts them
 * over, with the next retry).
 *
 * @since 0.1.0
 * @category constructors
 */
export const wakeable = (options: Options, wake: Queue.Dequeue<void>): Schedule.Schedule<Duration.Duration> =>
  schedule(options).pipe(
    Schedule.modifyDelayEffect((_, delay) => Effect.as(Effect.raceFirst(Effect.sleep(delay), Queue.take(wake)), Duration.zero))
  )
