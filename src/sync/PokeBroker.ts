/**
 * Told after every commit: `poke(scope, cursor)` with the scope's new head.
 * Pokes are hints (at most once); a broker must never fail the push that
 * caused it, so `poke` cannot fail.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"

export class PokeBroker extends Context.Tag("@mizu/sync/PokeBroker")<PokeBroker, {
  readonly poke: (scope: string, cursor: number) => Effect.Effect<void>
}>() {}

/** A broker that drops every poke (a sync-only server). */
export const layerNoop: Layer.Layer<PokeBroker> = Layer.succeed(PokeBroker, PokeBroker.of({ poke: () => Effect.void }))

/** A broker from a function. */
export const layerFunction = (poke: (scope: string, cursor: number) => Effect.Effect<void>): Layer.Layer<PokeBroker> =>
  Layer.succeed(PokeBroker, PokeBroker.of({ poke }))
