/**
 * The memory `Store` over a `MemoryDatabase`: `scope → entity → id → JSON`
 * maps whose every write registers its undo step; listings are sorted with
 * `Entity.idOrder`, and snapshots built with own properties only.
 *
 * @internal
 */
import * as Option from "effect/Option"
import { setOwn } from "../../../protocol/Sync.js"
import * as Entity from "../../Entity.js"
import type { Store } from "../../Store.js"
import type { MemoryDatabase } from "./memoryDatabase.js"

/** The memory implementation over one `MemoryDatabase`. */
export const make = (db: MemoryDatabase): Store["Type"] => {
  const service: Store["Type"] = {
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
  }
  return service
}
