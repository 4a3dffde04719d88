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
 * - `compact(scope, upTo, maxScan)` drops the changes with `cursor <= upTo`
 *   that a later change of the same row supersedes (the latest change of
 *   each row is kept, deletes too) and raises the scope's compaction mark:
 *   cursors at or below the mark may be missing, those above it never are.
 *   A reader anywhere at or above the floor that applies the compacted log
 *   to the head holds the same rows as one that applied it whole. The floor,
 *   the head and the checksums do not move.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type { Change, ChangeOp } from "../protocol/Sync.js"
import type { StorageError } from "./StorageError.js"

/**
 * A change before the log gives it a cursor and a timestamp.
 *
 * @since 0.1.0
 * @category models
 */
export interface ChangeInput {
  readonly entity: string
  readonly id: string
  readonly op: ChangeOp
  readonly data?: unknown
  /**
   * How this write moves the scope's checksum (`Checksum.delta`: the new
   * row's hash in, the old one's out); the `Transaction` of a mutation sets
   * it. Absent: 0 (a writer that leaves it out makes the stored checksum
   * wrong, which clients then repair).
   */
  readonly checksumDelta?: number
  /**
   * `data`'s JSON text (`JSON.stringify(data)`), when the writer already
   * has it (the SQL store's synchronous view returns the text it stored):
   * the SQL log stores it as it is instead of encoding `data` again.
   */
  readonly json?: string | undefined
}

/**
 * A slice of the log, as `since` reads it: changes in ascending cursor
 * order with no gap, and whether more follow the last one.
 *
 * @since 0.1.0
 * @category models
 */
export interface Slice {
  readonly changes: ReadonlyArray<Change>
  readonly hasMore: boolean
  /** The scope's checksum at the slice's last change (at `cursor` when empty and at the head); absent when unknown. */
  readonly checksum?: number | undefined
  /** The scope's compaction mark: cursors at or below it may be missing from the slice (0: none). */
  readonly compacted?: number | undefined
}

/**
 * What one `compact` did: how many changes it dropped, and the mark it
 * reached (every superseded change at or below it is gone).
 *
 * @since 0.1.0
 * @category models
 */
export interface Compaction {
  readonly removed: number
  readonly through: number
}

/**
 * A scope whose log has more uncompacted changes than asked
 * (`compactionCandidates`): its head and where compaction stands.
 *
 * @since 0.1.0
 * @category models
 */
export interface CompactionCandidate {
  readonly scope: string
  readonly head: number
  /** `max(floor, compacted)`: the changes above it are not compacted yet. */
  readonly from: number
}

/**
 * The per-scope change log (see the module header for its guarantees).
 *
 * @since 0.1.0
 * @category services
 */
export class ChangeLog extends Context.Tag("@mizu/sync/ChangeLog")<ChangeLog, {
  /** Append changes to a scope; returns them with their cursors. An empty input changes nothing. */
  readonly append: (scope: string, changes: ReadonlyArray<ChangeInput>) => Effect.Effect<ReadonlyArray<Change>, StorageError>
  /** Changes after `cursor`, ascending, at most `limit`. */
  readonly since: (scope: string, cursor: number, limit: number) => Effect.Effect<Slice, StorageError>
  /** The cursor of the scope's last change (0 if none). */
  readonly head: (scope: string) => Effect.Effect<number, StorageError>
  /** The checksum of the scope's rows at its head (`Checksum`; 0 for a scope never written). */
  readonly checksum: (scope: string) => Effect.Effect<number, StorageError>
  /** The lowest cursor a reader may still pull from (0 until trimmed). */
  readonly floor: (scope: string) => Effect.Effect<number, StorageError>
  /** Drop changes with `cursor <= upTo` (capped at the head). */
  readonly trim: (scope: string, upTo: number) => Effect.Effect<void, StorageError>
  /**
   * Fold the changes up to `upTo` (capped at the head) into the later
   * changes of the same rows, looking at no more than `maxScan` cursors past
   * the current mark (bounded work: the mark reached is returned). Atomic.
   */
  readonly compact: (scope: string, upTo: number, maxScan: number) => Effect.Effect<Compaction, StorageError>
  /** At most `limit` scopes with more than `backlog` changes above their compaction mark (and floor). */
  readonly compactionCandidates: (backlog: number, limit: number) => Effect.Effect<ReadonlyArray<CompactionCandidate>, StorageError>
  /**
   * Inside a transaction: take the write locks of these scopes' heads now, in
   * the order given (callers sort), held until the transaction ends. A writer
   * that locks every scope it will append to before writing anything queues
   * behind the others instead of deadlocking with them (Postgres). A no-op
   * where writers are serialized anyway (memory, SQLite).
   */
  readonly lockScopes: (scopes: ReadonlyArray<string>) => Effect.Effect<void, StorageError>
}>() {}

/**
 * The retention rule of every layer: after an append left a scope at `head`
 * with `floor`, the cursor to trim up to, or `undefined` while the scope
 * keeps at most `maxChanges`. A trim keeps 90% of `maxChanges` (at least 1),
 * so it runs once every ~`maxChanges / 10` appends rather than on each.
 *
 * @since 0.1.0
 * @category utils
 */
export const retentionTrimPoint = (maxChanges: number, head: number, floor: number): number | undefined =>
  head - floor <= maxChanges ? undefined : head - Math.max(1, maxChanges - Math.floor(maxChanges / 10))
