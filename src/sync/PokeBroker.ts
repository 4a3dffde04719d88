/**
 * Told after every commit: `poke(scope, cursor)` with the scope's new head.
 * Pokes are hints (at most once); a broker must never fail the push that
 * caused it, so `poke` cannot fail.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"

/**
 * Told after every commit, with each written scope's new head. A poke is a
 * hint, delivered at most once; it cannot fail, so it never fails the push.
 *
 * @since 0.1.0
 * @category services
 */
export class PokeBroker extends Context.Tag("@mizu/sync/PokeBroker")<PokeBroker, {
  readonly poke: (scope: string, cursor: number) => Effect.Effect<void>
}>() {}

/**
 * A broker from a function (it must not fail: a poke cannot fail the push
 * that caused it).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerFunction = (poke: (scope: string, cursor: number) => Effect.Effect<void>): Layer.Layer<PokeBroker> =>
  Layer.succeed(PokeBroker, PokeBroker.of({ poke }))
