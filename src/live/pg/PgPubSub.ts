/**
 * `LivePubSub` over PostgreSQL LISTEN/NOTIFY, through `PgClient.listen` and
 * `pg_notify`. All topics share one channel; each process keeps the
 * notifications of the topics it has subscribers for.
 *
 * Invariants:
 * - A message is never dropped for its size up to `MAX_MESSAGE_BYTES`: one
 *   larger than a NOTIFY payload (a presence renewal of a few hundred
 *   sessions) is sent in fragments, in one statement, and put back together
 *   by the receivers. A larger one is dropped, logged and counted
 *   `too_large`.
 * - Publishing never waits on Postgres.
 * - The listener checks every `probeInterval` that its connection still
 *   delivers (by hearing its own probe back) and listens again on a new
 *   connection when it does not; what was published in between is lost.
 *
 * @since 0.1.0
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as Notify from "../internal/pgNotify.js"
import * as internal from "../internal/pgPubSub.js"
import { LivePubSub, type PublishOptions } from "../LivePubSub.js"

/**
 * The largest message sent (in fragments when it must be); a larger one is
 * dropped and counted `too_large`.
 *
 * @since 0.1.0
 * @category constants
 */
export const MAX_MESSAGE_BYTES: number = Notify.MAX_MESSAGE_BYTES

/**
 * How the layer publishes and checks its listener.
 *
 * @since 0.1.0
 * @category options
 */
export interface Options extends PublishOptions {
  /** How often the listener checks that its connection still delivers (default 5 s). */
  readonly probeInterval?: Duration.DurationInput | undefined
}

/**
 * The Postgres `LivePubSub` over the `PgClient` in context; its listener and
 * publisher live until the Scope closes. Never fails on an unreachable
 * Postgres: it listens again until it answers.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: (options?: Options) => Effect.Effect<LivePubSub["Type"], never, PgClient.PgClient | Scope.Scope> =
  internal.make

/**
 * `LivePubSub` over the `PgClient` in context.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<LivePubSub, never, PgClient.PgClient> = Layer.scoped(LivePubSub, make())

/**
 * `LivePubSub` over the `PgClient` in context, with options.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerWith = (options: Options): Layer.Layer<LivePubSub, never, PgClient.PgClient> =>
  Layer.scoped(LivePubSub, make(options))

/**
 * `LivePubSub` over a PostgreSQL of its own (a small pool for NOTIFY and one
 * LISTEN connection; connecting times out after 10 s, so an unreachable
 * server fails a publish instead of holding it).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerUrl = (url: string, options: Options = {}): Layer.Layer<LivePubSub, unknown> =>
  layerWith(options).pipe(
    Layer.provide(PgClient.layer({ url: Redacted.make(url), maxConnections: 2, connectTimeout: "10 seconds" }))
  )
