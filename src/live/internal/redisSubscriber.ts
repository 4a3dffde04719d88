/**
 * The subscriber side of the Redis `LivePubSub`: the channels this process
 * wants, what Redis has confirmed on the current connection, and the one
 * fiber that brings Redis in line.
 *
 * Invariants:
 * - The wanted channels (those with a local subscriber) are the truth. The
 *   reconciling fiber SUBSCRIBEs what is wanted and not confirmed and
 *   UNSUBSCRIBEs what is confirmed and no longer wanted, retried on the
 *   `retrySchedule` until it succeeds, so a SUBSCRIBE that failed (Redis
 *   down) is made when Redis is back. Only that fiber talks to the
 *   connection, so a subscribe and an unsubscribe of one channel never
 *   overtake each other.
 * - On every (re)connect the confirmed set is emptied and every wanted
 *   channel subscribed again (ioredis's own resubscription must be off: it
 *   only knows the channels whose SUBSCRIBE had succeeded). A reply from
 *   before a reconnect confirms nothing.
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import type { Redis } from "ioredis"

/** One SUBSCRIBE / UNSUBSCRIBE round that takes longer than this is retried. */
const ATTEMPT_TIMEOUT = Duration.seconds(10)
/** Between attempts while Redis is unreachable: 100 ms doubling, at most 2 s. */
const retrySchedule = Schedule.exponential("100 millis").pipe(Schedule.union(Schedule.spaced("2 seconds")))

/** @internal */
export interface Subscriber {
  /** Want `channel` until the Scope closes. */
  readonly want: (channel: string) => Effect.Effect<void, never, Scope.Scope>
  /** Wait (interruptibly) until Redis confirms `channel`, at most `timeout`. */
  readonly confirmation: (channel: string, timeout: Duration.Duration) => Effect.Effect<void>
}

/** What the subscriber knows of Redis. */
interface State {
  readonly wanted: Set<string>
  /** channels Redis confirmed on the current connection */
  readonly confirmed: Set<string>
  /** subscribers waiting for a channel's confirmation */
  readonly waiting: Map<string, Deferred.Deferred<void>>
  /** bumped on every (re)connect: a reply from before it says nothing of the new connection */
  epoch: number
  /** the last round failed and none has succeeded since (log once per episode) */
  failing: boolean
}

const settle = (state: State, channel: string) => {
  const waiter = state.waiting.get(channel)
  if (waiter === undefined) return
  state.waiting.delete(channel)
  Deferred.unsafeDone(waiter, Exit.void)
}

/** One round: SUBSCRIBE / UNSUBSCRIBE the difference between wanted and confirmed. */
const reconcileOnce = (sub: Redis, state: State, signal: () => void) =>
  Effect.suspend(() => {
    const at = state.epoch
    const add = [...state.wanted].filter((channel) => !state.confirmed.has(channel))
    const drop = [...state.confirmed].filter((channel) => !state.wanted.has(channel))
    if (add.length === 0 && drop.length === 0) return Effect.void
    return Effect.tryPromise(async () => {
      if (drop.length > 0) await sub.unsubscribe(...drop)
      if (add.length > 0) await sub.subscribe(...add)
    }).pipe(
      Effect.timeoutFail({ duration: ATTEMPT_TIMEOUT, onTimeout: () => "no answer from Redis" }),
      Effect.zipRight(Effect.sync(() => {
        // reconnected meanwhile: the new connection has not necessarily seen these
        if (at !== state.epoch) return signal()
        for (const channel of drop) state.confirmed.delete(channel)
        for (const channel of add) {
          state.confirmed.add(channel)
          settle(state, channel)
        }
      }))
    )
  })

/** `reconcileOnce` until it succeeds, logging the episode's start and end once. */
const reconcile = (sub: Redis, state: State, signal: () => void) =>
  reconcileOnce(sub, state, signal).pipe(
    Effect.tapErrorCause((cause) => {
      const first = !state.failing
      state.failing = true
      return first ? Effect.logWarning("redis subscribe failed; retrying until Redis answers", cause) : Effect.void
    }),
    Effect.retry(retrySchedule),
    Effect.zipRight(Effect.suspend(() => {
      const recovered = state.failing
      state.failing = false
      return recovered ? Effect.logInfo("redis subscriptions restored") : Effect.void
    }))
  )

/**
 * The subscriber over the connection `sub` (made with `autoResubscribe:
 * false`); the caller listens to its messages.
 *
 * @internal
 */
export const make = (sub: Redis): Effect.Effect<Subscriber, never, Scope.Scope> =>
  Effect.gen(function*() {
    const state: State = { wanted: new Set(), confirmed: new Set(), waiting: new Map(), epoch: 0, failing: false }
    const wake = yield* Queue.sliding<void>(1)
    const signal = (): void => {
      Queue.unsafeOffer(wake, undefined)
    }

    sub.on("ready", () => {
      state.epoch++
      state.confirmed.clear()
      signal()
    })

    yield* Queue.take(wake).pipe(
      Effect.zipRight(reconcile(sub, state, signal)),
      Effect.forever,
      Effect.interruptible,
      Effect.forkScoped
    )

    const want = (channel: string) =>
      Effect.acquireRelease(
        Effect.sync(() => {
          state.wanted.add(channel)
          signal()
        }),
        () =>
          Effect.sync(() => {
            state.wanted.delete(channel)
            settle(state, channel)
            signal()
          })
      ).pipe(Effect.asVoid)

    const confirmation = (channel: string, timeout: Duration.Duration) =>
      Effect.suspend(() => {
        if (state.confirmed.has(channel) || !state.wanted.has(channel)) return Effect.void
        let waiter = state.waiting.get(channel)
        if (waiter === undefined) {
          waiter = Deferred.unsafeMake<void>(FiberId.none)
          state.waiting.set(channel, waiter)
        }
        return Deferred.await(waiter).pipe(
          Effect.timeout(timeout),
          Effect.catchTag("TimeoutException", () =>
            Effect.logDebug("redis has not confirmed a subscription yet; it is made when Redis answers", { channel }))
        )
      })

    return { want, confirmation }
  })
