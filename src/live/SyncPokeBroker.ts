/**
 * The seed's bridge: a `PokeBroker` that pokes every session subscribed to
 * the scope, on every process, through the `LiveHub` and its `LivePubSub`.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { PokeBroker } from "../sync/PokeBroker.js"
import { LiveHub } from "./LiveHub.js"

export const layer: Layer.Layer<PokeBroker, never, LiveHub> = Layer.effect(
  PokeBroker,
  Effect.map(LiveHub, (hub) =>
    PokeBroker.of({
      poke: (scope, cursor) => hub.poke(scope, cursor).pipe(Effect.withSpan("PokeBroker.poke", { attributes: { scope, cursor }, captureStackTrace: false }))
    }))
)
