/**
 * The transport between server processes: publish a message on a topic,
 * subscribe to a topic's messages. Messages are strings (the hub's encoded
 * envelopes), so every layer — memory, Redis, Postgres NOTIFY — moves the
 * same bytes.
 *
 * Guarantees: delivery is at most once and best effort (live traffic is made
 * of hints and ephemera; the change log is the truth). A subscriber sees only
 * what is published after `subscribe` returns. A subscription lives until its
 * `Scope` closes.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as PubSub from "effect/PubSub"
import type * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"

export class LivePubSub extends Context.Tag("@mizu/live/LivePubSub")<LivePubSub, {
  readonly publish: (topic: string, message: string) => Effect.Effect<void>
  readonly subscribe: (topic: string) => Effect.Effect<Queue.Dequeue<string>, never, Scope.Scope>
}>() {}

/** Messages a slow process may fall behind by before it loses the oldest (pokes are hints). */
const CAPACITY = 4096

/**
 * One process-wide bus: an Effect `PubSub` per topic (sliding, so a slow
 * subscriber never blocks publishers), created on the first subscription and
 * shut down with the last. Several servers built in one process on the same
 * layer instance talk to each other through it, as processes do through Redis.
 */
export const makeMemory: Effect.Effect<LivePubSub["Type"]> = Effect.sync(() => {
  const topics = new Map<string, { readonly pubsub: PubSub.PubSub<string>; refs: number }>()
  const acquire = (topic: string) =>
    Effect.acquireRelease(
      Effect.gen(function*() {
        const existing = topics.get(topic)
        if (existing !== undefined) {
          existing.refs++
          return existing.pubsub
        }
        const pubsub = yield* PubSub.sliding<string>(CAPACITY)
        const raced = topics.get(topic)
        if (raced !== undefined) {
          raced.refs++
          yield* PubSub.shutdown(pubsub)
          return raced.pubsub
        }
        topics.set(topic, { pubsub, refs: 1 })
        return pubsub
      }),
      () =>
        Effect.suspend(() => {
          const entry = topics.get(topic)
          if (entry === undefined || --entry.refs > 0) return Effect.void
          topics.delete(topic)
          return PubSub.shutdown(entry.pubsub)
        })
    )
  return LivePubSub.of({
    publish: (topic, message) =>
      Effect.suspend(() => {
        const entry = topics.get(topic)
        return entry === undefined ? Effect.void : Effect.asVoid(PubSub.publish(entry.pubsub, message))
      }),
    subscribe: (topic) => Effect.flatMap(acquire(topic), PubSub.subscribe)
  })
})

export const layerMemory: Layer.Layer<LivePubSub> = Layer.effect(LivePubSub, makeMemory)
