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
        return { changes, hasMore: start + limit < log.changes.length, checksum, compacted: log.compacted }
      }),
    head: (scope) => db.read((state) => state.logs.get(scope)?.head ?? 0),
    checksum: (scope) => db.read((state) => state.logs.get(scope)?.checksum ?? 0),
    lockScopes: () => Effect.void,
    floor: (scope) => db.read((state) => state.logs.get(scope)?.floor ?? 0),
    compact: (scope, upTo, maxScan) =>
      db.write((state, undo) => {
        const log = state.logs.get(scope)
        if (log === undefined) return { removed: 0, through: 0 }
        const from = Math.max(log.floor, log.compacted)
        const through = Math.max(from, Math.min(upTo, log.head, from + Math.max(0, Math.floor(maxScan))))
        if (through <= log.compacted) return { removed: 0, through: log.compacted }
        // the index of each row's latest change in the whole log: every change of the row before it is superseded
        const latest = new Map<string, number>()
        log.changes.forEach((c, i) => latest.set(`${c.entity}\u0000${c.id}`, i))
        const keep: Array<Change> = []
        const keepSums: Array<number> = []
        let removed = 0
        log.changes.forEach((c, i) => {
          if (c.cursor > from && c.cursor <= through && latest.get(`${c.entity}\u0000${c.id}`) !== i) removed++
          else {
            keep.push(c)
            keepSums.push(log.sums[i])
          }
        })
        const before = { changes: log.changes, sums: log.sums, compacted: log.compacted, compactedAt: log.compactedAt }
        log.changes = keep
        log.sums = keepSums
        log.compacted = through
        log.compactedAt = Date.now()
        undo(() => {
          log.changes = before.changes
          log.sums = before.sums
          log.compacted = before.compacted
          log.compactedAt = before.compactedAt
        })
        return { removed, through }
      }),
    compactionCandidates: (backlog, limit) =>
      db.read((state) => {
        const out: Array<{ readonly scope: string; readonly head: number; readonly from: number }> = []
        for (const [scope, log] of state.logs) {
          if (out.length >= limit) break
          const from = Math.max(log.floor, log.compacted)
          if (log.head - from > backlog) out.push({ scope, head: log.head, from })
        }
        return out
      }),
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
