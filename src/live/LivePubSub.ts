/**
 * The transport between server processes: publish a message on a topic,
 * subscribe to a topic's messages. Messages are strings (the hub's encoded
 * envelopes), so every layer — memory, Redis, Postgres NOTIFY — moves the
 * same bytes.
 *
 * Guarantees: delivery is at most once and best effort (live traffic is made
 * of hints and ephemera; the change log is the truth). `publish` never waits
 * on the network: a distributed layer queues the message in a bounded
 * in-process queue and sends it in the background, so a push's reply never
 * waits on the pub/sub. A subscriber sees what is published after
 * `subscribe` returns — while the transport is reachable; when it is not,
 * `subscribe` still returns (after a bounded wait) and the subscription is
 * made, and remade after every reconnect, as soon as the transport answers.
 * A subscription lives until its `Scope` closes.
 *
 * In every layer a topic is one Effect `PubSub` per process (sliding: a
 * publisher never blocks, a slow subscriber loses the oldest messages), fed
 * by the transport and shared by the topic's subscriptions; the transport's
 * own subscription (a Redis channel) is held while the topic has one.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as internal from "./internal/pubsubTopics.js"

/**
 * Messages between server processes, by topic: at most once, best effort,
 * in publish order per publisher; `publish` never blocks on the network.
 *
 * @since 0.1.0
 * @category services
 */
export class LivePubSub extends Context.Tag("@mizu/live/LivePubSub")<LivePubSub, {
  /** Queue `message` for every subscriber of `topic`, on every process; returns without waiting for delivery. */
  readonly publish: (topic: string, message: string) => Effect.Effect<void>
  /** The messages published on `topic` after this returns, until the Scope closes. */
  readonly subscribe: (topic: string) => Effect.Effect<Queue.Dequeue<string>, never, Scope.Scope>
}>() {}

/**
 * How a distributed layer's publish queue is bounded: beyond it, and on a
 * failed or late send, messages are dropped and counted, never waited for.
 *
 * @since 0.1.0
 * @category options
 */
export interface PublishOptions {
  /** Messages waiting to be sent before new ones are dropped (default 10,000). */
  readonly publishCapacity?: number | undefined
  /** How long one batch may take to send before its messages count as dropped (default 5 s). */
  readonly publishTimeout?: Duration.DurationInput | undefined
}

/**
 * The in-process bus, for one process (or several servers built in one
 * process on the same layer instance): a topic's `PubSub` lives while it has
 * a subscriber, until the Scope closes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeMemory: Effect.Effect<LivePubSub["Type"], never, Scope.Scope> = internal.makeMemory

/**
 * `LivePubSub` in memory (one process); servers that share this layer value
 * share its bus.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerMemory: Layer.Layer<LivePubSub> = Layer.scoped(LivePubSub, makeMemory)
