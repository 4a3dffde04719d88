/**
 * The SQL `ChangeLog`: `mizu_heads` (one row per scope: `head`, `floor`)
 * and `mizu_changes` (primary key `(scope, cursor)`).
 *
 * Invariants:
 * - **Gap-free cursors across processes.** `append` bumps the scope's head
 *   row with one upsert (`INSERT … ON CONFLICT (scope) DO UPDATE SET head =
 *   head + n RETURNING head`) and inserts the changes `head-n+1 … head`. On
 *   Postgres the upsert holds the head row's lock until the transaction
 *   ends, so a later writer of the scope waits and commits after it: cursors
 *   become visible in order and a reader never sees a gap fill in behind
 *   it. SQLite has one writer.
 * - **One statement per append on Postgres** (a data-modifying CTE over
 *   arrays, the same text for any number of changes), so a standalone
 *   append needs no transaction there; two on SQLite (the head bump, one
 *   multi-row insert per 500 changes), in a transaction of their own when
 *   standalone.
 * - **Retention** (`ChangeLog.retentionTrimPoint`) is applied in the
 *   append's transaction, from the head and floor the append returned: no
 *   extra read.
 * - JSON is stored as text; `data` is `NULL` for a delete.
 * - **Checksums** (`Checksum`): the head row's `checksum` moves by the sum
 *   of the appended changes' `checksumDelta` in the same upsert, and each
 *   change row stores the checksum after it (the head's, minus what the
 *   later changes of the append add), so a pull page carries the checksum
 *   at its last cursor.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type { Change, ChangeOp } from "../../../protocol/Sync.js"
import type * as ChangeLogModule from "../../ChangeLog.js"
import { type ChangeInput, type ChangeLog, retentionTrimPoint } from "../../ChangeLog.js"
import * as Checksum from "../../../protocol/Checksum.js"
import type * as StorageError from "../../StorageError.js"
import { chunked, encodeJson, multiRow, type Statements } from "./statements.js"
import type { Transactions } from "./transaction.js"

interface HeadRow {
  readonly head: number | string
  readonly floor: number | string
  readonly checksum?: number | string
}

/** The deltas of an append: their total, and the running total after each (all mod 2^32). */
const deltasOf = (inputs: ReadonlyArray<ChangeInput>): { readonly total: number; readonly running: ReadonlyArray<number> } => {
  let total = 0
  const running = inputs.map((input) => (total = Checksum.add(total, input.checksumDelta ?? 0)))
  return { total, running }
}

/** A row of `mizu_changes`. */
export interface ChangeRow {
  readonly cursor: number | string
  readonly entity: string
  readonly id: string
  readonly op: string
  readonly data: string | null
  readonly ts: string
  readonly checksum?: number | string | null
}

const isOp = (op: string): op is ChangeOp => op === "create" || op === "update" || op === "delete"

/** A stored row as a `Change` (throws on an unknown op: corrupt data). */
export const toChange = (scope: string, row: ChangeRow): Change => {
  if (!isOp(row.op)) throw new Error(`unknown op ${JSON.stringify(row.op)} at cursor ${row.cursor}`)
  const base = { cursor: Number(row.cursor), scope, entity: row.entity, id: row.id, op: row.op, ts: row.ts }
  return row.data === null ? base : { ...base, data: JSON.parse(row.data) }
}

const dataOf = (input: ChangeInput): string | null =>
  input.op === "delete" || input.data === undefined ? null : input.json ?? encodeJson(input.data)

/** The statement texts of the log, normalized once. */
const texts = (q: Statements["q"]) => ({
  trim: q(`UPDATE mizu_heads
    SET floor = CASE WHEN ? < head THEN ? ELSE head END
    WHERE scope = ? AND floor < CASE WHEN ? < head THEN ? ELSE head END
    RETURNING floor`),
  deleteTrimmed: q("DELETE FROM mizu_changes WHERE scope = ? AND cursor <= ?"),
  // Postgres: the head bump and the rows in one statement.
  appendPg: q(`WITH h AS (
      INSERT INTO mizu_heads (scope, head, floor, checksum) VALUES (?, ?, 0, ?)
      ON CONFLICT (scope) DO UPDATE SET head = mizu_heads.head + excluded.head,
        checksum = (mizu_heads.checksum + excluded.checksum) % 4294967296
      RETURNING head, floor, checksum
    ), c AS (
      INSERT INTO mizu_changes (scope, cursor, entity, id, op, data, ts, checksum)
      SELECT ?, h.head - ?::bigint + v.ord, v.entity, v.id, v.op, v.data, ?,
        ((h.checksum - ?::bigint + v.running) % 4294967296 + 4294967296) % 4294967296
      FROM h, unnest(?::text[], ?::text[], ?::text[], ?::text[], ?::bigint[]) WITH ORDINALITY AS v (entity, id, op, data, running, ord)
    )
    SELECT head, floor, checksum FROM h`),
  bumpHead: q(`INSERT INTO mizu_heads (scope, head, floor, checksum) VALUES (?, ?, 0, ?)
    ON CONFLICT (scope) DO UPDATE SET head = mizu_heads.head + excluded.head,
      checksum = (mizu_heads.checksum + excluded.checksum) % 4294967296
    RETURNING head, floor, checksum`),
  insertChanges: multiRow(q, "INSERT INTO mizu_changes (scope, cursor, entity, id, op, data, ts, checksum) VALUES", "(?, ?, ?, ?, ?, ?, ?, ?)"),
  checksum: q("SELECT checksum FROM mizu_heads WHERE scope = ?"),
  since: q(`SELECT cursor, entity, id, op, data, ts, checksum FROM mizu_changes
    WHERE scope = ? AND cursor > ?
    ORDER BY cursor
    LIMIT ?`),
  head: q("SELECT head, floor FROM mizu_heads WHERE scope = ?"),
  // compaction: where it stands, the window's changes, the rows changed after it, the mark
  compactState: q("SELECT head, floor, compacted FROM mizu_heads WHERE scope = ?"),
  compactLock: q("SELECT pg_try_advisory_xact_lock(hashtextextended(?, 0)) AS ok"),
  compactWindow: q("SELECT cursor, entity, id FROM mizu_changes WHERE scope = ? AND cursor > ? AND cursor <= ? ORDER BY cursor"),
  compactLater: q("SELECT entity, id FROM mizu_changes WHERE scope = ? AND cursor > ?"),
  compactDeletePg: q("DELETE FROM mizu_changes WHERE scope = ? AND cursor = ANY(?::bigint[])"),
  compactDelete: multiRow(q, "DELETE FROM mizu_changes WHERE scope = ? AND cursor IN (", "?", ")"),
  compactMark: q("UPDATE mizu_heads SET compacted = ?, compacted_at = ? WHERE scope = ? AND compacted < ?"),
  compactionCandidates: q(`SELECT scope, head, CASE WHEN floor > compacted THEN floor ELSE compacted END AS start_at FROM mizu_heads
    WHERE head - (CASE WHEN floor > compacted THEN floor ELSE compacted END) > ?
    ORDER BY scope LIMIT ?`),
  // Postgres: an upsert that changes nothing but takes the head row's lock (creating the row if needed).
  lockHead: q(`INSERT INTO mizu_heads (scope, head, floor) VALUES (?, 0, 0)
    ON CONFLICT (scope) DO UPDATE SET head = mizu_heads.head`)
})

/**
 * The log over the family's statements and transactions; `maxChanges`: the
 * retention, if any. A builder: its body is one small named helper per
 * operation over the statement texts made once.
 */
export const make = (
  { isPg, q, query }: Statements,
  { atomic }: Transactions,
  maxChanges: number | undefined
): ChangeLog["Type"] => {
  const text = texts(q)

  /** Raise the floor to `upTo` (capped at the head) and drop the changes up to it. */
  const trimTo = (scope: string, upTo: number, what: string): Effect.Effect<void, StorageError.StorageError> =>
    Effect.flatMap(
      query<{ readonly floor: number | string }, number | undefined>(
        text.trim,
        [upTo, upTo, scope, upTo, upTo],
        what,
        (rows) => rows[0] === undefined ? undefined : Number(rows[0].floor)
      ),
      (floor) => floor === undefined ? Effect.void : query(text.deleteTrimmed, [scope, floor], what, () => undefined)
    )

  /** The retention rule after an append that left the scope at `head` / `floor`: the point to trim to, if any. */
  const trimPoint = (head: number, floor: number): number | undefined =>
    maxChanges === undefined ? undefined : retentionTrimPoint(maxChanges, head, floor)

  const appendPg = (scope: string, inputs: ReadonlyArray<ChangeInput>, ts: string): Effect.Effect<HeadRow, StorageError.StorageError> => {
    const { running, total } = deltasOf(inputs)
    return query<HeadRow, HeadRow>(
      text.appendPg,
      [
        scope,
        inputs.length,
        total,
        scope,
        inputs.length,
        ts,
        total,
        inputs.map((input) => input.entity),
        inputs.map((input) => input.id),
        inputs.map((input) => input.op),
        inputs.map(dataOf),
        running
      ],
      "ChangeLog.append",
      (rows) => rows[0] ?? { head: 0, floor: 0 }
    )
  }

  const appendSqlite = (scope: string, inputs: ReadonlyArray<ChangeInput>, ts: string): Effect.Effect<HeadRow, StorageError.StorageError> =>
    Effect.flatMap(
      query<HeadRow, HeadRow>(text.bumpHead, [scope, inputs.length, deltasOf(inputs).total], "ChangeLog.append", (rows) => rows[0] ?? { head: 0, floor: 0 }),
      (row) => {
        const first = Number(row.head) - inputs.length + 1
        const { running, total } = deltasOf(inputs)
        const start0 = Checksum.subtract(Number(row.checksum ?? 0), total)
        const insert = chunked(inputs.length, (start, end) => {
          const params: Array<unknown> = []
          for (let i = start; i < end; i++) {
            const input = inputs[i]
            params.push(scope, first + i, input.entity, input.id, input.op, dataOf(input), ts, Checksum.add(start0, running[i]))
          }
          return query(text.insertChanges(end - start), params, "ChangeLog.append", () => undefined)
        })
        return Effect.as(insert, row)
      }
    )

  /** Bump the head and insert the rows; returns the new head and the floor. */
  const appendRows = isPg ? appendPg : appendSqlite

  const append = (scope: string, inputs: ReadonlyArray<ChangeInput>): Effect.Effect<ReadonlyArray<Change>, StorageError.StorageError> => {
    if (inputs.length === 0) return Effect.succeed([])
    const ts = new Date().toISOString()
    const n = inputs.length
    const changesTo = (head: number) =>
      inputs.map((input, i): Change => {
        const base = { cursor: head - n + 1 + i, scope, entity: input.entity, id: input.id, op: input.op, ts }
        return input.op === "delete" || input.data === undefined ? base : { ...base, data: input.data }
      })
    const body = Effect.flatMap(appendRows(scope, inputs, ts), (row) => {
      const head = Number(row.head)
      const upTo = trimPoint(head, Number(row.floor))
      return upTo === undefined
        ? Effect.succeed(changesTo(head))
        // Postgres: the append was one statement; the trim, when due, is its own transaction
        : Effect.as(atomic(trimTo(scope, upTo, "ChangeLog.append"), "ChangeLog.append"), changesTo(head))
    })
    // Postgres: the append is one statement, atomic on its own.
    return isPg ? body : atomic(body, "ChangeLog.append")
  }

  const since = (scope: string, cursor: number, limit: number) =>
    query<ChangeRow, { readonly changes: ReadonlyArray<Change>; readonly hasMore: boolean }>(
      text.since,
      [scope, cursor, Math.max(0, limit) + 1],
      "ChangeLog.since",
      (rows) => {
        const hasMore = rows.length > limit
        const slice = hasMore ? rows.slice(0, Math.max(0, limit)) : rows
        const last = slice[slice.length - 1]
        const checksum = last?.checksum === null || last?.checksum === undefined ? undefined : Number(last.checksum)
        return { changes: slice.map((row) => toChange(scope, row)), hasMore, checksum }
      }
    )

  /**
   * Compaction (see `ChangeLog.compact`): in one transaction, the window
   * `(max(floor, compacted), through]` is read with the rows changed after
   * it, the superseded changes of the window are deleted and the mark set.
   * No index beyond the primary key: the work is the window and the later
   * changes, both bounded by retention. Postgres: a transaction-scoped
   * advisory lock per scope (`pg_try_advisory_xact_lock`), so two processes
   * never compact one scope at once and appends never wait on compaction.
   */
  const compactIn = (scope: string, upTo: number, maxScan: number): Effect.Effect<ChangeLogModule.Compaction, StorageError.StorageError> =>
    Effect.gen(function*() {
      const what = "ChangeLog.compact"
      if (isPg) {
        const locked = yield* query<{ readonly ok: boolean }, boolean>(text.compactLock, [`mizu-compact:${scope}`], what, (rows) => rows[0]?.ok === true)
        if (!locked) return { removed: 0, through: 0 }
      }
      const state = yield* query<HeadRow & { readonly compacted: number | string }, HeadRow & { readonly compacted: number | string } | undefined>(
        text.compactState,
        [scope],
        what,
        (rows) => rows[0]
      )
      if (state === undefined) return { removed: 0, through: 0 }
      const compacted = Number(state.compacted)
      const from = Math.max(Number(state.floor), compacted)
      const through = Math.max(from, Math.min(upTo, Number(state.head), from + Math.max(0, Math.floor(maxScan))))
      if (through <= compacted) return { removed: 0, through: compacted }
      const key = (row: { readonly entity: string; readonly id: string }) => `${row.entity}\u0000${row.id}`
      const window = yield* query<{ readonly cursor: number | string; readonly entity: string; readonly id: string }, ReadonlyArray<{ readonly cursor: number; readonly key: string }>>(
        text.compactWindow,
        [scope, from, through],
        what,
        (rows) => rows.map((row) => ({ cursor: Number(row.cursor), key: key(row) }))
      )
      const later = yield* query<{ readonly entity: string; readonly id: string }, ReadonlySet<string>>(
        text.compactLater,
        [scope, through],
        what,
        (rows) => new Set(rows.map(key))
      )
      // a change is superseded by a later one of its row: in the window after it, or after the window
      const seen = new Set(later)
      const superseded: Array<number> = []
      for (let i = window.length - 1; i >= 0; i--) {
        if (seen.has(window[i].key)) superseded.push(window[i].cursor)
        else seen.add(window[i].key)
      }
      if (superseded.length > 0) {
        yield* isPg
          ? query(text.compactDeletePg, [scope, superseded], what, () => undefined)
          : chunked(superseded.length, (start, end) =>
            query(text.compactDelete(end - start), [scope, ...superseded.slice(start, end)], what, () => undefined))
      }
      yield* query(text.compactMark, [through, Date.now(), scope, through], what, () => undefined)
      return { removed: superseded.length, through }
    })

  const compactionCandidates = (backlog: number, limit: number) =>
    query<{ readonly scope: string; readonly head: number | string; readonly start_at: number | string }, ReadonlyArray<ChangeLogModule.CompactionCandidate>>(
      text.compactionCandidates,
      [backlog, Math.max(0, Math.floor(limit))],
      "ChangeLog.compactionCandidates",
      (rows) => rows.map((row) => ({ scope: row.scope, head: Number(row.head), from: Number(row.start_at) }))
    )

  const headRow = <B>(scope: string, what: string, read: (row: HeadRow | undefined) => B) =>
    query<HeadRow, B>(text.head, [scope], what, (rows) => read(rows[0]))

  return {
    append,
    since,
    head: (scope) => headRow(scope, "ChangeLog.head", (row) => row === undefined ? 0 : Number(row.head)),
    checksum: (scope) =>
      query<{ readonly checksum: number | string }, number>(text.checksum, [scope], "ChangeLog.checksum", (rows) => Number(rows[0]?.checksum ?? 0)),
    floor: (scope) => headRow(scope, "ChangeLog.floor", (row) => row === undefined ? 0 : Number(row.floor)),
    trim: (scope, upTo) => atomic(trimTo(scope, upTo, "ChangeLog.trim"), "ChangeLog.trim"),
    compact: (scope, upTo, maxScan) => atomic(compactIn(scope, upTo, maxScan), "ChangeLog.compact"),
    compactionCandidates,
    // SQLite: one writer at a time already.
    lockScopes: (scopes) =>
      isPg
        ? Effect.forEach(scopes, (scope) => query(text.lockHead, [scope], "ChangeLog.lockScopes", () => undefined), { discard: true })
        : Effect.void
  }
}
