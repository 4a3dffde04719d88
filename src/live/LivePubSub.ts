/**
 * The transport between server processes: publish a message on a topic,
 * subscribe to a topic's messages. Messages are strings (the hub's encoded
 * envelopes), so every layer — memory, Redis, Postgres NOTIFY — moves the
 * same bytes.
 *
 * Guarantees: delivery is at most once and best effort (live traffic is made
 * of hints and ephemera; the change log is the truth). `publish` never waits
 * on the network: a distributed layer queues the message in a bounded
 * in-process queue and sends it in the background (`makePublisher`), so a
 * push's reply never waits on the pub/sub. A subscriber sees what is
 * published after `subscribe` returns — while the transport is reachable;
 * when it is not, `subscribe` still returns (after a bounded wait) and the
 * subscription is made, and remade after every reconnect, as soon as the
 * transport answers. A subscription lives until its `Scope` closes.
 *
 * @since 0.1.0
 */
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as PubSub from "effect/PubSub"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Metrics from "../Metrics.js"

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

// ---------------------------------------------------------------------------
// Publishing without waiting (for the distributed layers)
// ---------------------------------------------------------------------------

/** How a distributed layer's publish queue is bounded. */
export interface PublishOptions {
  /** Messages waiting to be sent before new ones are dropped (default 10,000). */
  readonly publishCapacity?: number | undefined
  /** How long one batch may take to send before its messages count as dropped (default 5 s). */
  readonly publishTimeout?: Duration.DurationInput | undefined
}

/** One message on its way to the transport. */
export interface Outgoing {
  readonly topic: string
  readonly message: string
}

/** Most messages one send carries (one Redis pipeline, one NOTIFY statement). */
const MAX_BATCH = 512

/**
 * The `publish` of a distributed layer: it puts the message in a bounded
 * in-process queue and returns at once; one fiber (in the current `Scope`)
 * hands what is queued to `send`, in publish order, a batch at a time. A
 * message that finds the queue full is dropped, and so is every message of
 * a batch that fails or takes longer than `publishTimeout`; each is counted
 * in `mizu_pubsub_dropped_total` (clients' interval pull is the safety net).
 * Trouble is logged once per episode, not once per message.
 */
export const makePublisher = (
  name: string,
  send: (batch: ReadonlyArray<Outgoing>) => Effect.Effect<void, unknown>,
  options: PublishOptions = {}
): Effect.Effect<LivePubSub["Type"]["publish"], never, Scope.Scope> =>
  Effect.gen(function*() {
    const timeout = Duration.decode(options.publishTimeout ?? "5 seconds")
    const queue = yield* Effect.acquireRelease(Queue.dropping<Outgoing>(options.publishCapacity ?? 10_000), Queue.shutdown)
    let failing = false
    let full = false

    const sendBatch = (batch: ReadonlyArray<Outgoing>) =>
      send(batch).pipe(
        Effect.timeoutFail({ duration: timeout, onTimeout: () => `no answer in ${Duration.format(timeout)}` }),
        Effect.matchCauseEffect({
          onFailure: (cause) => {
            const first = !failing
            failing = true
            return Effect.zipRight(
              Metrics.pubsubDrop("publish_failed", batch.length),
              first ? Effect.logWarning(`${name} publish failed; live messages are dropped until it answers`, cause) : Effect.void
            )
          },
          onSuccess: () => {
            const recovered = failing
            failing = false
            full = false
            return recovered ? Effect.logInfo(`${name} publish works again`) : Effect.void
          }
        })
      )

    yield* Queue.takeBetween(queue, 1, MAX_BATCH).pipe(
      Effect.flatMap((chunk) => sendBatch(Chunk.toReadonlyArray(chunk))),
      Effect.forever,
      Effect.interruptible,
      Effect.forkScoped
    )

    return (topic: string, message: string) =>
      Effect.suspend(() => {
        if (Queue.unsafeOffer(queue, { topic, message })) return Effect.void
        const first = !full
        full = true
        return Effect.zipRight(
          Metrics.pubsubDrop("queue_full"),
          first ? Effect.logWarning(`${name} publish queue full; live messages are dropped until it drains`) : Effect.void
        )
      })
  })
