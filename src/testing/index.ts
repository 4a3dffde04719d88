/**
 * Layers for testing apps built on Mizu: a `PokeBroker` that records what it
 * is told, and a ready memory-backed engine, so mutators can be tested with
 * `@effect/vitest` without a server.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Authorizer from "../sync/Authorizer.js"
import type * as Mutator from "../sync/Mutator.js"
import type * as Mutation from "../sync/Mutation.js"
import { PokeBroker } from "../sync/PokeBroker.js"
import type * as SyncEngine from "../sync/SyncEngine.js"
import * as SyncStorage from "../sync/SyncStorage.js"
import * as Server from "../Server.js"

/**
 * One poke the engine asked for: `scope` has committed changes up to `cursor`
 * (its head after the commit).
 *
 * @since 0.1.0
 * @category models
 */
export interface RecordedPoke {
  readonly scope: string
  readonly cursor: number
}

/**
 * Reads what the recording broker was told, in call order (the engine pokes
 * each changed scope at most once per push, after its commit); `clear`
 * forgets them.
 *
 * @since 0.1.0
 * @category services
 */
export class PokeRecorder extends Context.Tag("@mizu/testing/PokeRecorder")<PokeRecorder, {
  readonly pokes: Effect.Effect<ReadonlyArray<RecordedPoke>>
  readonly clear: Effect.Effect<void>
}>() {}

/**
 * A `PokeBroker` that records every poke (and sends none), and the
 * `PokeRecorder` to read them. Each build starts with an empty record.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerRecordingPokeBroker: Layer.Layer<PokeBroker | PokeRecorder> = Layer.effectContext(Effect.sync(() => {
  // Appended in place (a poke is O(1), however long a test runs); readers get a copy.
  let recorded: Array<RecordedPoke> = []
  return Context.make(PokeBroker, PokeBroker.of({ poke: (scope, cursor) => Effect.sync(() => void recorded.push({ scope, cursor })) }))
    .pipe(Context.add(PokeRecorder, PokeRecorder.of({
      pokes: Effect.sync(() => recorded.slice()),
      clear: Effect.sync(() => {
        recorded = []
      })
    })))
}))

/**
 * Everything `layerEngine` and `layerMemoryEngine` provide.
 *
 * @since 0.1.0
 * @category models
 */
export type MemoryEngineServices =
  | SyncEngine.SyncEngine
  | Mutator.Mutator
  | SyncStorage.Services
  | PokeBroker
  | PokeRecorder
  | Authorizer.Authorizer

/**
 * A complete engine over the given storage layers, with a recording poke
 * broker and an allow-all authorizer (or the one given).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerEngine = <E, R>(
  registry: Mutation.Registry,
  storage: Layer.Layer<SyncStorage.Services, E, R>,
  options: { readonly authorizer?: Layer.Layer<Authorizer.Authorizer> } = {}
): Layer.Layer<MemoryEngineServices, E, R> =>
  Server.layerEngine(registry).pipe(
    Layer.provideMerge(Layer.mergeAll(
      storage,
      layerRecordingPokeBroker,
      options.authorizer ?? Authorizer.layerAllowAll
    ))
  )

/**
 * A complete engine on fresh memory storage, with a recording poke broker and
 * an allow-all authorizer (or the one given). Each build is a new database.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerMemoryEngine = (
  registry: Mutation.Registry,
  options: { readonly authorizer?: Layer.Layer<Authorizer.Authorizer> } = {}
): Layer.Layer<MemoryEngineServices> => layerEngine(registry, SyncStorage.layerMemory, options)
