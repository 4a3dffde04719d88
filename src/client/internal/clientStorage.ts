/**
 * `ClientStorage.applyBatch`: the meaning of a batch, that every layer's
 * `load` must give back after `commit`. Scopes, entities and ids are own
 * properties whatever the name (`"__proto__"`, `"constructor"`).
 *
 * @internal
 */
import { getOwn, setOwn } from "../../protocol/Sync.js"
import type { Batch, StoredScope, StoredState } from "../ClientStorage.js"

/** See `ClientStorage.applyBatch`. */
export const applyBatch = (state: StoredState, batch: Batch): StoredState => {
  let scopes = state.scopes
  if (batch.scopes !== undefined && batch.scopes.length > 0) {
    // Scopes, entities and ids are data, any string ("__proto__", "constructor"): own properties
    // only, read with getOwn and written with setOwn (spread copies own properties as they are).
    const next: Record<string, StoredScope> = { ...state.scopes }
    for (const w of batch.scopes) {
      const prev = w.reset === true ? undefined : getOwn(next, w.scope)
      const rows: Record<string, Record<string, unknown>> = {}
      for (const [entity, ids] of Object.entries(prev?.rows ?? {})) setOwn(rows, entity, { ...ids })
      for (const [entity, id, data] of w.put ?? []) {
        let ids = getOwn(rows, entity)
        if (ids === undefined) {
          ids = {}
          setOwn(rows, entity, ids)
        }
        setOwn(ids, id, data)
      }
      for (const [entity, id] of w.delete ?? []) {
        const ids = getOwn(rows, entity)
        if (ids === undefined) continue
        delete ids[id]
        if (Object.keys(ids).length === 0) delete rows[entity]
      }
      setOwn(next, w.scope, { cursor: w.cursor, rows })
    }
    scopes = next
  }
  let pending = batch.pendingReplace ?? state.pending
  if (batch.pendingDelete !== undefined && batch.pendingDelete.length > 0) {
    const drop = new Set(batch.pendingDelete)
    pending = pending.filter((m) => !drop.has(m.id))
  }
  if (batch.pendingPut !== undefined && batch.pendingPut.length > 0) {
    const byId = new Map(pending.map((m) => [m.id, m] as const))
    for (const m of batch.pendingPut) byId.set(m.id, m)
    pending = [...byId.values()].sort((a, b) => a.id - b.id)
  }
  return {
    clientId: batch.meta?.clientId ?? state.clientId,
    nextId: batch.meta?.nextId ?? state.nextId,
    scopes,
    pending,
    ...(batch.revision !== undefined ? { revision: batch.revision } : state.revision !== undefined ? { revision: state.revision } : {})
  }
}
