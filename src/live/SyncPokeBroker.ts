/**
 * The seed's bridge: a `PokeBroker` that pokes every session subscribed to
 * the scope, on every process, through the `LiveHub` and its `LivePubSub`.
 * A poke never waits on the network (the Redis and Postgres pub/subs queue
 * it, bounded, and send it in the background), so a push's reply does not
 * wait on the pub/sub; a poke that cannot be sent is dropped and counted in
 * `mizu_pubsub_dropped_total` (clients' interval pull is the safety net).
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { whenTracing } from "../internal/spans.js"
import { PokeBroker } from "../sync/PokeBroker.js"
import { LiveHub } from "./LiveHub.js"

/**
 * The bridge as a value, for a broker of the app's own that adds to it (for
 * example one that also writes each commit to a queue):
 * `Layer.effect(PokeBroker, Effect.map(SyncPokeBroker.make, (live) => PokeBroker.of({ poke: (s, c) => Effect.zipRight(live.poke(s, c), enqueue(s, c)) })))`.
 * A poke never fails and never waits on the network.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<PokeBroker["Type"], never, LiveHub> = Effect.map(LiveHub, (hub) =>
  PokeBroker.of({
    poke: (scope, cursor) =>
      hub.poke(scope, cursor).pipe(whenTracing("PokeBroker.poke", { attributes: { scope, cursor }, captureStackTrace: false }))
  }))

/**
 * The bridge as the `PokeBroker` layer (what `Server.layerServices` uses by default).
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<PokeBroker, never, LiveHub> = Layer.effect(PokeBroker, make)
