/**
 * The per-topic Effect `PubSub`s under every `LivePubSub` layer (memory,
 * Redis, Postgres): a transport hands each message it receives to the
 * topic's `PubSub` in this process, and every subscription is a subscription
 * to that `PubSub`.
 *
 * Invariants: at most one `PubSub` (and one transport resource, `open`) per
 * topic per process, held in an `RcMap` — made with the first subscription,
 * closed with the last. `PubSub.sliding`, so delivering never blocks: a
 * subscriber that falls `CAPACITY` messages behind loses the oldest.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as PubSub from "effect/PubSub"
import type * as Queue from "effect/Queue"
import * as RcMap from "effect/RcMap"
import type * as Scope from "effect/Scope"
import type { LivePubSub } from "../LivePubSub.js"

/** Messages a slow subscriber may fall behind by before it loses the oldest (pokes are hints). */
const CAPACITY = 4096

/** @internal */
export interface Topics {
  /** A subscription to the topic's `PubSub` until the Scope closes. */
  readonly subscribe: (topic: string) => Effect.Effect<Queue.Dequeue<string>, never, Scope.Scope>
  /** Hand a message to the topic's subscribers in this process (none: dropped). Never blocks. */
  readonly deliver: (topic: string, message: string) => void
}

/**
 * The topics of one layer. `open` runs in the topic's scope when its first
 * subscription is made (a Redis SUBSCRIBE, for example); its finalizers run
 * when the last one closes.
 *
 * @internal
 */
export const make = (
  open: (topic: string) => Effect.Effect<void, never, Scope.Scope> = () => Effect.void
): Effect.Effect<Topics, never, Scope.Scope> =>
  Effect.gen(function*() {
    /** the open topics' PubSubs, for the synchronous `deliver` */
    const live = new Map<string, PubSub.PubSub<string>>()
    const topics = yield* RcMap.make({
      lookup: (topic: string) =>
        Effect.gen(function*() {
          const pubsub = yield* Effect.acquireRelease(PubSub.sliding<string>(CAPACITY), PubSub.shutdown)
          yield* Effect.acquireRelease(
            Effect.sync(() => live.set(topic, pubsub)),
            () => Effect.sync(() => live.get(topic) === pubsub && live.delete(topic))
          )
          yield* open(topic)
          return pubsub
        })
    })
    return {
      subscribe: (topic) => Effect.flatMap(RcMap.get(topics, topic), PubSub.subscribe),
      deliver: (topic, message) => {
        const pubsub = live.get(topic)
        // `unsafeOffer` drops the NEW message when a subscriber is full; `publish` slides (drops
        // the oldest) and, on a sliding PubSub, is synchronous: taken only on that rare path
        if (pubsub !== undefined && !pubsub.unsafeOffer(message) && pubsub.isActive()) Effect.runSync(PubSub.publish(pubsub, message))
      }
    }
  })

/**
 * One process-wide bus: `publish` delivers to this process's subscribers
 * of the topic. Several servers built in one process on the same layer
 * instance talk to each other through it, as processes do through Redis.
 *
 * @internal
 */
export const makeMemory: Effect.Effect<LivePubSub["Type"], never, Scope.Scope> = Effect.map(make(), (topics) => ({
  publish: (topic, message) => Effect.sync(() => topics.deliver(topic, message)),
  subscribe: topics.subscribe
}))
