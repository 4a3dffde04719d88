/**
 * Scoped entity data, kept as JSON: `scope → entity → id → value`.
 * Reads inside a `SyncStorage` unit see that unit's own writes. Ids are any
 * string (`Entity.invalidId` says which ones writers refuse); `"__proto__"`
 * and `"constructor"` are ids like any other, in `snapshot` too (own
 * properties, see `Protocol.setOwn`).
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { setOwn, type SnapshotData } from "../protocol/Sync.js"
import * as Entity from "./Entity.js"
import { MemoryDatabase } from "./memory/MemoryDatabase.js"
import type { StorageError } from "./StorageError.js"

export class Store extends Context.Tag("@mizu/sync/Store")<Store, {
  readonly get: (scope: string, entity: string, id: string) => Effect.Effect<Option.Option<unknown>, StorageError>
  readonly put: (scope: string, entity: string, id: string, data: unknown) => Effect.Effect<void, StorageError>
  /** Returns whether the id existed. */
  readonly delete: (scope: string, entity: string, id: string) => Effect.Effect<boolean, StorageError>
  /** Every value of one entity in a scope, ordered by id. */
  readonly list: (scope: string, entity: string) => Effect.Effect<ReadonlyArray<readonly [string, unknown]>, StorageError>
  /** The whole scope; ids ordered as `list` orders them. */
  readonly snapshot: (scope: string) => Effect.Effect<SnapshotData, StorageError>
}>() {}

export const makeMemory: Effect.Effect<Store["Type"], never, MemoryDatabase> = Effect.gen(function*() {
  const db = yield* MemoryDatabase
  return Store.of({
    get: (scope, entity, id) =>
      db.read((state) => {
        const rows = state.store.get(scope)?.get(entity)
        return rows !== undefined && rows.has(id) ? Option.some(rows.get(id)) : Option.none()
      }),
    put: (scope, entity, id, data) =>
      db.write((state, undo) => {
        let entities = state.store.get(scope)
        if (entities === undefined) {
          const created = new Map<string, Map<string, unknown>>()
          state.store.set(scope, created)
          undo(() => state.store.delete(scope))
          entities = created
        }
        let rows = entities.get(entity)
        if (rows === undefined) {
          const created = new Map<string, unknown>()
          const owner = entities
          owner.set(entity, created)
          undo(() => owner.delete(entity))
          rows = created
        }
        const target = rows
        const had = target.has(id)
        const prev = target.get(id)
        target.set(id, data)
        undo(() => had ? target.set(id, prev) : target.delete(id))
      }),
    delete: (scope, entity, id) =>
      db.write((state, undo) => {
        const rows = state.store.get(scope)?.get(entity)
        if (rows === undefined || !rows.has(id)) return false
        const prev = rows.get(id)
        rows.delete(id)
        undo(() => rows.set(id, prev))
        return true
      }),
    list: (scope, entity) =>
      db.read((state) => {
        const rows = state.store.get(scope)?.get(entity)
        if (rows === undefined) return []
        return [...rows.entries()].sort(([a], [b]) => Entity.idOrder(a, b))
      }),
    snapshot: (scope) =>
      db.read((state) => {
        const out: Record<string, Record<string, unknown>> = {}
        for (const [entity, rows] of state.store.get(scope) ?? []) {
          if (rows.size === 0) continue
          const byId: Record<string, unknown> = {}
          for (const [id, data] of [...rows].sort(([a], [b]) => Entity.idOrder(a, b))) setOwn(byId, id, data)
          setOwn(out, entity, byId)
        }
        return out
      })
  })
})

export const layerMemory: Layer.Layer<Store, never, MemoryDatabase> = Layer.effect(Store, makeMemory)
