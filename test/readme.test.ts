/**
 * The README's tour, as code that runs: a mutator tested with the exported
 * testing layers, no server.
 */
import { assert, it } from "@effect/vitest"
import { Effect } from "effect"
import { SyncEngine } from "mizu-sync-live"
import { layerMemoryEngine, PokeRecorder } from "mizu-sync-live/testing"
import { registry } from "../examples/todo/mutations.js"

it.effect("creates a todo and pokes its scope", () =>
  Effect.gen(function*() {
    const engine = yield* SyncEngine.SyncEngine
    const res = yield* engine.push(
      { mutations: [{ name: "todo/create", scope: "u:1", args: { id: "a", title: "milk" } }] },
      SyncEngine.anonymous
    )
    assert.deepStrictEqual(res.results, [{ ok: true, cursor: 1 }])
    assert.deepStrictEqual(yield* (yield* PokeRecorder).pokes, [{ scope: "u:1", cursor: 1 }])
  }).pipe(Effect.provide(layerMemoryEngine(registry))))

it.effect("a rejected mutation changes nothing and pokes nobody", () =>
  Effect.gen(function*() {
    const engine = yield* SyncEngine.SyncEngine
    const res = yield* engine.push(
      { mutations: [{ name: "todo/toggle", scope: "u:1", args: { id: "missing" } }] },
      SyncEngine.anonymous
    )
    assert.strictEqual(res.results[0].error?.code, "rejected")
    assert.deepStrictEqual(yield* (yield* PokeRecorder).pokes, [])
  }).pipe(Effect.provide(layerMemoryEngine(registry))))
