/**
 * The per-scope ordered change log.
 *
 * Guarantees of every layer:
 * - `append` gives the scope's next cursors, `head + 1 …`, with no gap and no
 *   duplicate, in commit order, whatever the number of concurrent writers
 *   (SQL layers lock the scope's head row until the transaction ends).
 * - `since(scope, cursor, limit)` returns the changes with `cursor > cursor`,
 *   ascending, at most `limit`, and whether more exist.
 * - `trim(scope, upTo)` drops changes with `cursor <= upTo` and raises the
 *   floor to `upTo`: a reader at a cursor below the floor must reset from a
 *   snapshot. The head never moves back.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { Change, ChangeOp } from "../protocol/Sync.js"
import { MemoryDatabase } from "./memory/MemoryDatabase.js"
import type { StorageError } from "./StorageError.js"

/** A change before the log gives it a cursor and a timestamp. */
export interface ChangeInput {
  readonly entity: string
  readonly id: string
  readonly op: ChangeOp
  readonly data?: unknown
}

/** A page of the log. */
export interface Page {
  readonly changes: ReadonlyArray<Change>
  readonly hasMore: boolean
}

export class ChangeLog extends Context.Tag("@mizu/sync/ChangeLog")<ChangeLog, {
  /** Append changes to a scope; returns them with their cursors. An empty input changes nothing. */
  readonly append: (scope: string, changes: ReadonlyArray<ChangeInput>) => Effect.Effect<ReadonlyArray<Change>, StorageError>
  /** Changes after `cursor`, ascending, at most `limit`. */
  readonly since: (scope: string, cursor: number, limit: number) => Effect.Effect<Page, StorageError>
  /** The cursor of the scope's last change (0 if none). */
  readonly head: (scope: string) => Effect.Effect<number, StorageError>
  /** The lowest cursor a reader may still pull from (0 until trimmed). */
  readonly floor: (scope: string) => Effect.Effect<number, StorageError>
  /** Drop changes with `cursor <= upTo` (capped at the head). */
  readonly trim: (scope: string, upTo: number) => Effect.Effect<void, StorageError>
  /**
   * Inside a transaction: take the write locks of these scopes' heads now, in
   * the order given (callers sort), held until the transaction ends. A writer
   * that locks every scope it will append to before writing anything queues
   * behind the others instead of deadlocking with them (Postgres). A no-op
   * where writers are serialized anyway (memory, SQLite).
   */
  readonly lockScopes: (scopes: ReadonlyArray<string>) => Effect.Effect<void, StorageError>
}>() {}

const empty = (): { head: number; floor: number; changes: Array<Change> } => ({ head: 0, floor: 0, changes: [] })

/** The memory implementation over a `MemoryDatabase`. */
export const makeMemory: Effect.Effect<ChangeLog["Type"], never, MemoryDatabase> = Effect.gen(function*() {
  const db = yield* MemoryDatabase
  return ChangeLog.of({
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
  })
})

/** Memory layer; needs the `MemoryDatabase` it shares with the other memory layers. */
export const layerMemory: Layer.Layer<ChangeLog, never, MemoryDatabase> = Layer.effect(ChangeLog, makeMemory)
