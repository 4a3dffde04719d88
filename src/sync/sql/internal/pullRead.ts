/**
 * What a pull reads, in one consistent read (`SyncStorage.readPull`): the scope's
 * head, floor and compaction mark, the client's owner and its last id in the scope
 * (at least its tombstone's last id, when its record expired: every id up
 * to it was processed), and the
 * page of changes after the cursor already encoded as the wire's JSON array
 * by the database (`json_group_array` / `json_agg`), with its count and last
 * cursor. `last_mutation_id` never claims a change the page does not
 * reach, because everything is read from one snapshot:
 * - On Postgres (and any SQLite client but ours) ONE statement: an aggregate
 *   without `GROUP BY` (always one row, also for an empty page), the other
 *   values uncorrelated scalar subqueries, each run once; the page encoded
 *   by the database (`json_group_array` / `json_agg`).
 * - On our SQLite connection two plain statements (the head row with the
 *   client's values, then the page's rows) in one read transaction, in one
 *   synchronous step holding the connection's permit; the page's JSON is
 *   built by concatenation around each row's stored JSON text, checked
 *   with `json_valid` (not parsed). On SQLite the aggregate statement
 *   costs ~3× the two plain ones (its JSON functions parse and re-encode
 *   every row's data; bench/README, "A lone pull").
 *
 * Either way the page's JSON is stored JSON spliced, so no row is parsed or
 * encoded as a value in JS on the HTTP path.
 *
 * @internal
 */
import { SqlError } from "@effect/sql/SqlError"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as StorageError from "../../StorageError.js"
import type { PullRead } from "../../SyncStorage.js"
import type { SqliteDriver } from "./sqliteDriver.js"
import { decodeRows, mapSqlError, type Statements, toStorageError } from "./statements.js"

interface Row {
  readonly head: number | string | null
  readonly floor: number | string | null
  readonly owner: string | null
  readonly last_id: number | string | null
  readonly page: string | null
  readonly n: number | string
  readonly last_cursor: number | string | null
  readonly last_checksum: number | string | null
  readonly head_checksum: number | string | null
  readonly compacted: number | string | null
}

/** A change as a JSON object, the wire's `Change` (no `data` on a delete, whose stored data is NULL). */
const changeObject = (build: string, data: string) =>
  `CASE WHEN c.data IS NULL
    THEN ${build}('cursor', c.cursor, 'scope', c.scope, 'entity', c.entity, 'id', c.id, 'op', c.op, 'ts', c.ts)
    ELSE ${build}('cursor', c.cursor, 'scope', c.scope, 'entity', c.entity, 'id', c.id, 'op', c.op, 'data', ${data}, 'ts', c.ts) END`

const sqliteText = `SELECT
    (SELECT head FROM mizu_heads WHERE scope = ?) AS head,
    (SELECT floor FROM mizu_heads WHERE scope = ?) AS floor,
    (SELECT owner FROM mizu_clients WHERE client_id = ?) AS owner,
    max(COALESCE((SELECT last FROM mizu_client_scopes WHERE client_id = ? AND scope = ?), 0),
      COALESCE((SELECT last FROM mizu_expired_clients WHERE client_id = ?), 0)) AS last_id,
    (SELECT checksum FROM mizu_heads WHERE scope = ?) AS head_checksum,
    (SELECT compacted FROM mizu_heads WHERE scope = ?) AS compacted,
    json_group_array(json(${changeObject("json_object", "json(c.data)")})) AS page,
    count(c.cursor) AS n, max(c.cursor) AS last_cursor, c.checksum AS last_checksum
  FROM (SELECT scope, cursor, entity, id, op, data, ts, checksum FROM mizu_changes
    WHERE scope = ? AND cursor > ? ORDER BY cursor LIMIT ?) AS c`

const pgText = `SELECT
    (SELECT head FROM mizu_heads WHERE scope = ?) AS head,
    (SELECT floor FROM mizu_heads WHERE scope = ?) AS floor,
    (SELECT owner FROM mizu_clients WHERE client_id = ?) AS owner,
    GREATEST(COALESCE((SELECT last FROM mizu_client_scopes WHERE client_id = ? AND scope = ?), 0),
      COALESCE((SELECT last FROM mizu_expired_clients WHERE client_id = ?), 0)) AS last_id,
    (SELECT checksum FROM mizu_heads WHERE scope = ?) AS head_checksum,
    (SELECT compacted FROM mizu_heads WHERE scope = ?) AS compacted,
    COALESCE(json_agg(${changeObject("json_build_object", "c.data::json")} ORDER BY c.cursor), '[]'::json)::text AS page,
    count(c.cursor) AS n, max(c.cursor) AS last_cursor, (array_agg(c.checksum ORDER BY c.cursor DESC))[1] AS last_checksum
  FROM (SELECT scope, cursor, entity, id, op, data, ts, checksum FROM mizu_changes
    WHERE scope = ? AND cursor > ? ORDER BY cursor LIMIT ?) AS c`

/** The head row of the two-statement read: the scope's row (NULLs when it has none) and the client's values. */
interface HeadRow {
  readonly head: number | null
  readonly floor: number | null
  readonly head_checksum: number | null
  readonly compacted: number | null
  readonly owner: string | null
  readonly last_id: number
}

interface PageRow {
  readonly cursor: number
  readonly entity: string
  readonly id: string
  readonly op: string
  readonly data: string | null
  readonly ts: string
  readonly checksum: number | null
  readonly valid: number | null
}

const sqliteHeadText = `SELECT h.head, h.floor, h.checksum AS head_checksum, h.compacted,
    (SELECT owner FROM mizu_clients WHERE client_id = ?) AS owner,
    max(COALESCE((SELECT last FROM mizu_client_scopes WHERE client_id = ? AND scope = ?), 0),
      COALESCE((SELECT last FROM mizu_expired_clients WHERE client_id = ?), 0)) AS last_id
  FROM (SELECT 1) LEFT JOIN mizu_heads AS h ON h.scope = ?`

const sqlitePageText = `SELECT cursor, entity, id, op, data, ts, checksum, json_valid(data) AS valid FROM mizu_changes
  WHERE scope = ? AND cursor > ? ORDER BY cursor LIMIT ?`

/** The wire's `Change[]` of a page's rows, each row's stored data spliced (the keys in the order the statements above give them). */
const pageJson = (scope: string, rows: ReadonlyArray<PageRow>): string => {
  const quotedScope = JSON.stringify(scope)
  let json = "["
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i]
    if (row.data !== null && row.valid !== 1) throw new Error(`the data of change ${row.cursor} is not JSON`)
    json += `${i === 0 ? "" : ","}{"cursor":${row.cursor},"scope":${quotedScope},"entity":${JSON.stringify(row.entity)},"id":${
      JSON.stringify(row.id)
    },"op":${JSON.stringify(row.op)}${row.data === null ? "" : `,"data":${row.data}`},"ts":${JSON.stringify(row.ts)}}`
  }
  return json + "]"
}

const unreadable = (cause: unknown) => new StorageError.StorageError({ reason: "corrupt", message: "unreadable pull page", cause })

/**
 * The two-statement read on our SQLite connection (see the header), in one
 * step: inside its fiber's transaction as it is; outside one, with the
 * connection's permit, taken only when another fiber holds it (a free
 * permit means no transaction is open, and nothing runs before this step ends).
 */
const sqliteReader = (driver: SqliteDriver["Type"], q: Statements["q"]): NonNullable<PullRead.Reader> => {
  const headText = q(sqliteHeadText)
  const pageText = q(sqlitePageText)
  const read = (scope: string, cursor: number, limit: number, client: string | null, context: Context.Context<never>): PullRead => {
    let head: HeadRow | undefined
    let rows: ReadonlyArray<PageRow>
    try {
      head = driver.runSync(headText, [client, client, scope, client, scope], context)[0] as HeadRow | undefined
      rows = driver.runSync(pageText, [scope, cursor, Math.max(0, limit)], context) as ReadonlyArray<PageRow>
    } catch (cause) {
      throw toStorageError("SyncStorage.readPull failed")(cause instanceof SqlError ? cause : new SqlError({ cause, message: "Failed to execute statement" }))
    }
    let changesJson: string
    try {
      if (head === undefined) throw new Error("the head statement returned no row")
      changesJson = pageJson(scope, rows)
    } catch (cause) {
      throw unreadable(cause)
    }
    const headCursor = Number(head.head ?? 0)
    const count = rows.length
    const last = rows[count - 1]
    const lastCursor = last === undefined ? cursor : Number(last.cursor)
    return {
      head: headCursor,
      floor: Number(head.floor ?? 0),
      owner: head.owner ?? undefined,
      lastId: Number(head.last_id ?? 0),
      changesJson,
      count,
      lastCursor,
      compacted: Number(head.compacted ?? 0),
      // as the one-statement read: the checksum at the page's last change, or at the head when the page is empty there
      checksum: last !== undefined
        ? last.checksum === null ? undefined : Number(last.checksum)
        : cursor === headCursor ? Number(head.head_checksum ?? 0) : undefined,
      hasMore: count >= limit && lastCursor < headCursor
    }
  }
  /** BEGIN, the read, COMMIT (ROLLBACK when it threw): one snapshot for both statements. */
  const inReadTransaction = (scope: string, cursor: number, limit: number, client: string | null, context: Context.Context<never>) => {
    driver.runSync("BEGIN", [], context)
    let result: PullRead
    try {
      result = read(scope, cursor, limit, client, context)
    } catch (error) {
      driver.runSync("ROLLBACK", [], context)
      throw error
    }
    driver.runSync("COMMIT", [], context)
    return result
  }
  const attempt = (f: () => PullRead): Effect.Effect<PullRead, StorageError.StorageError> => {
    try {
      return Effect.succeed(f())
    } catch (error) {
      return Effect.fail(
        error instanceof StorageError.StorageError
          ? error
          : toStorageError("SyncStorage.readPull failed")(error instanceof SqlError ? error : new SqlError({ cause: error, message: "Failed to execute statement" }))
      )
    }
  }
  return (scope, cursor, limit, clientId) =>
    Effect.withFiberRuntime((fiber) => {
      const client = clientId ?? null
      const context = fiber.currentContext
      const current = Context.getOption(context, SqlClient.TransactionConnection)
      // inside a transaction on the connection (its permit held, its snapshot taken): just the two statements
      if (current._tag === "Some" && current.value[0] === driver.connection) {
        return attempt(() => read(scope, cursor, limit, client, context))
      }
      // the connection idle (the common case): the read is this one step, which nothing can interleave with
      if (driver.isFree()) return attempt(() => inReadTransaction(scope, cursor, limit, client, context))
      return driver.withPermit(Effect.suspend(() => attempt(() => inReadTransaction(scope, cursor, limit, client, context))))
    })
}

/** `SyncStorage.readPull` over the family's statements. */
export const make = ({ exec, isPg, q, sqlite }: Statements): NonNullable<PullRead.Reader> => {
  if (sqlite !== undefined) return sqliteReader(sqlite, q)
  const text = q(isPg ? pgText : sqliteText)
  return (scope, cursor, limit, clientId) => {
    const client = clientId ?? null
    return exec<Row>(text, [scope, scope, client, client, scope, client, scope, scope, scope, cursor, Math.max(0, limit)]).pipe(
      mapSqlError("SyncStorage.readPull failed"),
      Effect.flatMap((rows) =>
        decodeRows("pull page", (): PullRead => {
          const row = rows[0]
          if (row === undefined) throw new Error("the pull statement returned no row")
          const head = Number(row.head ?? 0)
          const count = Number(row.n)
          const lastCursor = row.last_cursor === null ? cursor : Number(row.last_cursor)
          return {
            head,
            floor: Number(row.floor ?? 0),
            owner: row.owner ?? undefined,
            lastId: Number(row.last_id ?? 0),
            changesJson: row.page ?? "[]",
            count,
            lastCursor,
            compacted: Number(row.compacted ?? 0),
            // the checksum at the page's last change (unknown for one stored before checksums), or at the head when the page is empty there
            checksum: count > 0
              ? row.last_checksum === null ? undefined : Number(row.last_checksum)
              : cursor === head ? Number(row.head_checksum ?? 0) : undefined,
            // the head is the highest cursor ever appended: a full page ending below it has more after it
            hasMore: count >= limit && lastCursor < head
          }
        })
      )
    )
  }
}
