/**
 * The one retry policy of the clients (push, pull, reconnect, re-subscribe):
 * capped exponential backoff with full jitter, as a `Schedule`. Attempt `n`
 * (from 0) waits a uniform random time in `[0, min(max, initial * 2^n))`,
 * so many clients that failed together do not retry together.
 *
 * A `Backoff` is that schedule driven by hand, for loops that decide per
 * attempt whether they failed: `wait` sleeps for the next delay (cut short by
 * a wake signal, e.g. "the live socket is back"), `reset` starts over after a
 * success.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"

/** The delays of a backoff. */
export interface Options {
  /** The cap of the first delay (doubling per attempt). */
  readonly initial: Duration.DurationInput
  /** The largest cap. */
  readonly max: Duration.DurationInput
}

/** Capped exponential backoff with full jitter: delay `n` is uniform in `[0, min(max, initial * 2^n))`. */
export const schedule = (options: Options): Schedule.Schedule<Duration.Duration> =>
  Schedule.exponential(options.initial).pipe(
    Schedule.union(Schedule.spaced(options.max)),
    Schedule.delays,
    Schedule.jitteredWith({ min: 0, max: 1 })
  )

/** A backoff driven by hand. */
export interface Backoff {
  /** Sleep for the next delay, or until `wake` (if given) is signalled, whichever comes first. */
  readonly wait: Effect.Effect<void>
  /** The next `wait` is the first again (after a success). */
  readonly reset: Effect.Effect<void>
}

/** A `Backoff` over `schedule(options)`; a signal on `wake` ends a wait early. */
export const make = (options: Options, wake?: Queue.Dequeue<void>): Effect.Effect<Backoff> =>
  Effect.map(Schedule.driver(schedule(options)), (driver) => {
    // the schedule never ends, so `next` never fails; `ignore` only satisfies the type
    const sleep = Effect.ignore(driver.next(undefined))
    return {
      wait: wake === undefined ? sleep : Effect.raceFirst(sleep, Queue.take(wake)),
      reset: driver.reset
    }
  })
