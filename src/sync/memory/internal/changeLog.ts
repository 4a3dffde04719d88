/**
 * The memory `ChangeLog` over a `MemoryDatabase`: `changes[i]` of a scope
 * has cursor `floor + i + 1`, and every write registers its undo step, so a
 * rolled-back append leaves the head where it was.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type { Change } from "../../../protocol/Sync.js"
import type { ChangeLog } from "../../ChangeLog.js"
import { emptyLog as empty, type MemoryDatabase } from "./memoryDatabase.js"

/** The memory implementation over one `MemoryDatabase` (a builder: one short method per operation). */
export const make = (db: MemoryDatabase): ChangeLog["Type"] => {
  const service: ChangeLog["Type"] = {
    append: (scope, inputs) =>
      inputs.length === 0 ? Effect.succeed([]) : db.write((state, undo) => {
        let log = state.logs.get(scope)
        if (log === undefined) {
          const created = empty()
          state.logs.set(scope, created)
          undo(() => state.logs.delete(scope))
          log = created
        }
        const target = log
        const ts = new Date().toISOString()
        const out: Array<Change> = []
        const prevHead = target.head
        for (const input of inputs) {
          const change: Change = {
            cursor: ++target.head,
            scope,
            entity: input.entity,
            id: input.id,
            op: input.op,
            ...(input.op === "delete" || input.data === undefined ? {} : { data: input.data }),
            ts
          }
          target.changes.push(change)
          out.push(change)
        }
        undo(() => {
          target.changes.length -= out.length
          target.head = prevHead
        })
        return out
      }),
    since: (scope, cursor, limit) =>
      db.read((state) => {
        const log = state.logs.get(scope)
        if (log === undefined) return { changes: [], hasMore: false }
        const start = Math.max(0, cursor - log.floor)
        const changes = log.changes.slice(start, start + limit)
        return { changes, hasMore: start + limit < log.changes.length }
      }),
    head: (scope) => db.read((state) => state.logs.get(scope)?.head ?? 0),
    lockScopes: () => Effect.void,
    floor: (scope) => db.read((state) => state.logs.get(scope)?.floor ?? 0),
    trim: (scope, upTo) =>
      db.write((state, undo) => {
        const log = state.logs.get(scope)
        if (log === undefined) return
        const target = Math.min(upTo, log.head)
        if (target <= log.floor) return
        const removed = log.changes.splice(0, target - log.floor)
        const prevFloor = log.floor
        log.floor = target
        undo(() => {
          log.changes.unshift(...removed)
          log.floor = prevFloor
        })
      })
  }
  return service
}

