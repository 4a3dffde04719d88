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
 *
 * @internal
 */
import type { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import type { Change, ChangeOp } from "../../../protocol/Sync.js"
import { type ChangeInput, type ChangeLog, retentionTrimPoint } from "../../ChangeLog.js"
import type * as StorageError from "../../StorageError.js"
import { chunked, decodeRows, encodeJson, mapSqlError, multiRow, type Statements } from "./statements.js"
import type { Transactions } from "./transaction.js"

interface HeadRow {
  readonly head: number | string
  readonly floor: number | string
}

/** A row of `mizu_changes`. */
export interface ChangeRow {
  readonly cursor: number | string
  readonly entity: string
  readonly id: string
  readonly op: string
  readonly data: string | null
  readonly ts: string
}

const isOp = (op: string): op is ChangeOp => op === "create" || op === "update" || op === "delete"

/** A stored row as a `Change` (throws on an unknown op: corrupt data). */
export const toChange = (scope: string, row: ChangeRow): Change => {
  if (!isOp(row.op)) throw new Error(`unknown op ${JSON.stringify(row.op)} at cursor ${row.cursor}`)
  const base = { cursor: Number(row.cursor), scope, entity: row.entity, id: row.id, op: row.op, ts: row.ts }
  return row.data === null ? base : { ...base, data: JSON.parse(row.data) }
}

const dataOf = (input: ChangeInput): string | null =>
  input.op === "delete" || input.data === undefined ? null : encodeJson(input.data)

/** The statement texts of the log, normalized once. */
const texts = (q: Statements["q"]) => ({
  trim: q(`UPDATE mizu_heads
    SET floor = CASE WHEN ? < head THEN ? ELSE head END
    WHERE scope = ? AND floor < CASE WHEN ? < head THEN ? ELSE head END
    RETURNING floor`),
  deleteTrimmed: q("DELETE FROM mizu_changes WHERE scope = ? AND cursor <= ?"),
  // Postgres: the head bump and the rows in one statement.
  appendPg: q(`WITH h AS (
      INSERT INTO mizu_heads (scope, head, floor) VALUES (?, ?, 0)
      ON CONFLICT (scope) DO UPDATE SET head = mizu_heads.head + excluded.head
      RETURNING head, floor
    ), c AS (
      INSERT INTO mizu_changes (scope, cursor, entity, id, op, data, ts)
      SELECT ?, h.head - ?::bigint + v.ord, v.entity, v.id, v.op, v.data, ?
      FROM h, unnest(?::text[], ?::text[], ?::text[], ?::text[]) WITH ORDINALITY AS v (entity, id, op, data, ord)
    )
    SELECT head, floor FROM h`),
  bumpHead: q(`INSERT INTO mizu_heads (scope, head, floor) VALUES (?, ?, 0)
    ON CONFLICT (scope) DO UPDATE SET head = mizu_heads.head + excluded.head
    RETURNING head, floor`),
  insertChanges: multiRow(q, "INSERT INTO mizu_changes (scope, cursor, entity, id, op, data, ts) VALUES", "(?, ?, ?, ?, ?, ?, ?)"),
  since: q(`SELECT cursor, entity, id, op, data, ts FROM mizu_changes
    WHERE scope = ? AND cursor > ?
    ORDER BY cursor
    LIMIT ?`),
  head: q("SELECT head, floor FROM mizu_heads WHERE scope = ?"),
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
  { exec, isPg, q }: Statements,
  { atomic, inTransaction }: Transactions,
  maxChanges: number | undefined
): ChangeLog["Type"] => {
  const text = texts(q)

  /** Raise the floor to `upTo` (capped at the head) and drop the changes up to it. */
  const trimTo = (scope: string, upTo: number): Effect.Effect<void, SqlError> =>
    Effect.flatMap(exec<{ readonly floor: number | string }>(text.trim, [upTo, upTo, scope, upTo, upTo]), (rows) => {
      const row = rows[0]
      return row === undefined ? Effect.void : Effect.asVoid(exec(text.deleteTrimmed, [scope, Number(row.floor)]))
    })

  /** The retention rule after an append that left the scope at `head` / `floor`. */
  const retain = (scope: string, head: number, floor: number): Effect.Effect<void, SqlError> => {
    const upTo = maxChanges === undefined ? undefined : retentionTrimPoint(maxChanges, head, floor)
    return upTo === undefined ? Effect.void : atomic(trimTo(scope, upTo))
  }

  const appendPg = (scope: string, inputs: ReadonlyArray<ChangeInput>, ts: string): Effect.Effect<HeadRow, SqlError> =>
    Effect.map(
      exec<HeadRow>(text.appendPg, [
        scope,
        inputs.length,
        scope,
        inputs.length,
        ts,
        inputs.map((input) => input.entity),
        inputs.map((input) => input.id),
        inputs.map((input) => input.op),
        inputs.map(dataOf)
      ]),
      (rows) => rows[0] ?? { head: 0, floor: 0 }
    )

  const appendSqlite = (scope: string, inputs: ReadonlyArray<ChangeInput>, ts: string): Effect.Effect<HeadRow, SqlError> =>
    Effect.flatMap(exec<HeadRow>(text.bumpHead, [scope, inputs.length]), (rows) => {
      const row = rows[0] ?? { head: 0, floor: 0 }
      const first = Number(row.head) - inputs.length + 1
      const insert = chunked(inputs.length, (start, end) => {
        const params: Array<unknown> = []
        for (let i = start; i < end; i++) {
          const input = inputs[i]
          params.push(scope, first + i, input.entity, input.id, input.op, dataOf(input), ts)
        }
        return exec(text.insertChanges(end - start), params)
      })
      return Effect.as(insert, row)
    })

  /** Bump the head and insert the rows; returns the new head and the floor. */
  const appendRows = isPg ? appendPg : appendSqlite

  const append = (scope: string, inputs: ReadonlyArray<ChangeInput>): Effect.Effect<ReadonlyArray<Change>, StorageError.StorageError> => {
    if (inputs.length === 0) return Effect.succeed([])
    const ts = new Date().toISOString()
    const n = inputs.length
    const written = Effect.flatMap(inTransaction, (inTx): Effect.Effect<number, SqlError> => {
      const body = Effect.flatMap(appendRows(scope, inputs, ts), (row) => {
        const head = Number(row.head)
        return Effect.as(retain(scope, head, Number(row.floor)), head)
      })
      // Postgres: the append is one statement, atomic on its own (retention, if due, is its own transaction).
      return inTx || isPg ? body : atomic(body)
    })
    return written.pipe(
      Effect.map((head) =>
        inputs.map((input, i): Change => {
          const base = { cursor: head - n + 1 + i, scope, entity: input.entity, id: input.id, op: input.op, ts }
          return input.op === "delete" || input.data === undefined ? base : { ...base, data: input.data }
        })
      ),
      mapSqlError("ChangeLog.append failed")
    )
  }

  const since = (scope: string, cursor: number, limit: number) =>
    exec<ChangeRow>(text.since, [scope, cursor, Math.max(0, limit) + 1]).pipe(
      mapSqlError("ChangeLog.since failed"),
      Effect.flatMap((rows) =>
        decodeRows("change", () => {
          const hasMore = rows.length > limit
          const slice = hasMore ? rows.slice(0, Math.max(0, limit)) : rows
          return { changes: slice.map((row) => toChange(scope, row)), hasMore }
        })
      )
    )

  const headRow = (scope: string) => Effect.map(exec<HeadRow>(text.head, [scope]), (rows) => rows[0])

  return {
    append,
    since,
    head: (scope) =>
      headRow(scope).pipe(
        Effect.map((row) => row === undefined ? 0 : Number(row.head)),
        mapSqlError("ChangeLog.head failed")
      ),
    floor: (scope) =>
      headRow(scope).pipe(
        Effect.map((row) => row === undefined ? 0 : Number(row.floor)),
        mapSqlError("ChangeLog.floor failed")
      ),
    trim: (scope, upTo) => atomic(trimTo(scope, upTo)).pipe(mapSqlError("ChangeLog.trim failed")),
    // SQLite: one writer at a time already.
    lockScopes: (scopes) =>
      isPg
        ? Effect.forEach(scopes, (scope) => exec(text.lockHead, [scope]), { discard: true }).pipe(
          mapSqlError("ChangeLog.lockScopes failed")
        )
        : Effect.void
  }
}
