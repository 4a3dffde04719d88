/**
 * The memory `ChangeLog` over a `MemoryDatabase`: a scope's `changes` are
 * ascending by cursor (gap-free above the compaction mark), `sums[i]` is the
 * checksum after `changes[i]`, and every write registers its undo step, so a
 * rolled-back append leaves the head and the checksum where they were.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Checksum from "../../../protocol/Checksum.js"
import type { Change } from "../../../protocol/Sync.js"
import type { ChangeLog } from "../../ChangeLog.js"
import { emptyLog as empty, type LogState, type MemoryDatabase } from "./memoryDatabase.js"

/** The index of the first change with a cursor above `cursor`. */
export const firstAfter = (log: LogState, cursor: number): number => {
  let lo = 0
  let hi = log.changes.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (log.changes[mid].cursor <= cursor) lo = mid + 1
    else hi = mid
  }
  return lo
}

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
        const prevChecksum = target.checksum
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
          target.checksum = Checksum.add(target.checksum, input.checksumDelta ?? 0)
          target.changes.push(change)
          target.sums.push(target.checksum)
          out.push(change)
        }
        undo(() => {
          target.changes.length -= out.length
          target.sums.length -= out.length
          target.head = prevHead
          target.checksum = prevChecksum
        })
        return out
      }),
    since: (scope, cursor, limit) =>
      db.read((state) => {
        const log = state.logs.get(scope)
        if (log === undefined) return { changes: [], hasMore: false, checksum: cursor === 0 ? 0 : undefined }
        const start = firstAfter(log, cursor)
        const changes = log.changes.slice(start, start + limit)
        const checksum = changes.length > 0 ? log.sums[start + changes.length - 1] : cursor === log.head ? log.checksum : undefined
        return { changes, hasMore: start + limit < log.changes.length, checksum }
      }),
    head: (scope) => db.read((state) => state.logs.get(scope)?.head ?? 0),
    checksum: (scope) => db.read((state) => state.logs.get(scope)?.checksum ?? 0),
    lockScopes: () => Effect.void,
    floor: (scope) => db.read((state) => state.logs.get(scope)?.floor ?? 0),
    trim: (scope, upTo) =>
      db.write((state, undo) => {
        const log = state.logs.get(scope)
        if (log === undefined) return
        const target = Math.min(upTo, log.head)
        if (target <= log.floor) return
        const n = firstAfter(log, target)
        const removed = log.changes.splice(0, n)
        const removedSums = log.sums.splice(0, n)
        const prevFloor = log.floor
        log.floor = target
        undo(() => {
          log.changes.unshift(...removed)
          log.sums.unshift(...removedSums)
          log.floor = prevFloor
        })
      })
  }
  return service
}
