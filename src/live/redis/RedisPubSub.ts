/**
 * `LivePubSub` over Redis pub/sub (ioredis): one connection publishes, one
 * subscribes; a Redis channel per topic, subscribed while this process has
 * a subscriber for the topic.
 *
 * Invariants (the layer heals by itself when Redis goes away and comes back):
 * - Publishing never waits on Redis; what cannot be sent is dropped and
 *   counted (pokes are hints).
 * - The channels this process wants are the truth: after every reconnect, and
 *   after a SUBSCRIBE that failed, they are subscribed again (with backoff)
 *   until Redis confirms them; a channel no longer wanted is unsubscribed.
 * - `subscribe` returns once Redis confirms the channel, or after
 *   `subscribeTimeout` if Redis does not answer; the subscription is made
 *   when it does.
 *
 * @since 0.1.0
 */
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as internal from "../internal/redisPubSub.js"
import { LivePubSub, type PublishOptions } from "../LivePubSub.js"

/**
 * Where Redis is and how the layer waits on it.
 *
 * @since 0.1.0
 * @category options
 */
export interface Options extends PublishOptions {
  /** `redis://host:port/db` */
  readonly url: string
  /** Channel name prefix (default `mizu:live:`). */
  readonly prefix?: string
  /**
   * How long `subscribe` waits for Redis to confirm a new channel before it
   * returns anyway (default 2 s); the subscription is still made, as soon as
   * Redis answers.
   */
  readonly subscribeTimeout?: Duration.DurationInput
}

/**
 * The Redis `LivePubSub`, its two connections closed with the Scope. Dies
 * (with the URL redacted) on a URL ioredis cannot parse; never fails on an
 * unreachable Redis.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: (options: Options) => Effect.Effect<LivePubSub["Type"], never, Scope.Scope> = internal.make

/**
 * `LivePubSub` on Redis at `url`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<LivePubSub> => Layer.scoped(LivePubSub, make(options))
