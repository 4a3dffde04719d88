/**
 * The SQL `Operator`: one statement per page, so every page is one snapshot.
 *
 * - `scopes`: the page of `mizu_heads` (keyset: `scope > ?`, its primary key
 *   order, `limit + 1` rows to know whether more follow) in a CTE, joined
 *   with `COUNT(*)` of `mizu_entities` grouped by scope for the page's
 *   scopes only (its primary key prefix), never the whole table.
 * - `clients`: the page of `mizu_clients` (with what the client's tombstone
 *   adds, as the `Clients` reads do) and of the tombstones of clients that
 *   have no record, merged by `UNION ALL … ORDER BY client_id LIMIT`, joined
 *   with `COUNT(*)` of `mizu_client_scopes` for the page's clients only.
 * - `totals`: one statement of five `COUNT(*)`s: a full count of each
 *   table, for the metrics job's interval, not for a request path.
 *
 * Keys are `COLLATE "C"` on Postgres and `BINARY` on SQLite: both bytewise.
 * Postgres answers `BIGINT` and `COUNT(*)` as strings: read with `Number`.
 *
 * @internal
 */
import * as Admin from "../../../protocol/Admin.js"
import * as Operator from "../../Operator.js"
import type { Statements } from "./statements.js"

type Int = number | string
type IntOrNull = Int | null

interface ScopeRow {
  readonly scope: string
  readonly head: Int
  readonly floor: Int
  readonly checksum: Int
  readonly compacted: Int
  readonly compacted_at: IntOrNull
  readonly row_count: Int
}

interface ClientRow {
  readonly client_id: string
  readonly last: Int
  readonly owner: string | null
  readonly seen: IntOrNull
  readonly expired: IntOrNull
  readonly scope_count: Int
}

interface TotalsRow {
  readonly scopes: Int
  readonly row_count: Int
  readonly changes: Int
  readonly clients: Int
  readonly expired: Int
}

const num = (value: Int): number => {
  const n = Number(value)
  if (!Number.isSafeInteger(n)) throw new Error(`not an integer: ${JSON.stringify(value)}`)
  return n
}
const numOrNull = (value: IntOrNull): number | null => (value === null ? null : num(value))

/** The statement texts, with (`past`) and without a start key, normalized once. */
const texts = (q: Statements["q"]) => {
  const scopes = (past: boolean) =>
    q(`WITH page AS (
      SELECT scope, head, floor, checksum, compacted, compacted_at FROM mizu_heads
      ${past ? "WHERE scope > ?" : ""} ORDER BY scope LIMIT ?
    )
    SELECT p.scope, p.head, p.floor, p.checksum, p.compacted, p.compacted_at, COALESCE(n.row_count, 0) AS row_count
    FROM page p LEFT JOIN (
      SELECT scope, COUNT(*) AS row_count FROM mizu_entities WHERE scope IN (SELECT scope FROM page) GROUP BY scope
    ) n ON n.scope = p.scope
    ORDER BY p.scope`)
  const clients = (past: boolean) =>
    q(`WITH page AS (
      SELECT c.client_id AS client_id,
        CASE WHEN e.last IS NOT NULL AND e.last > c.last THEN e.last ELSE c.last END AS last,
        COALESCE(c.owner, e.owner) AS owner, c.seen AS seen, CAST(NULL AS BIGINT) AS expired
      FROM mizu_clients c LEFT JOIN mizu_expired_clients e ON e.client_id = c.client_id
      ${past ? "WHERE c.client_id > ?" : ""}
      UNION ALL
      SELECT e.client_id AS client_id, e.last AS last, e.owner AS owner, CAST(NULL AS BIGINT) AS seen, e.expired AS expired
      FROM mizu_expired_clients e
      WHERE ${past ? "e.client_id > ? AND" : ""} NOT EXISTS (SELECT 1 FROM mizu_clients c WHERE c.client_id = e.client_id)
      ORDER BY client_id LIMIT ?
    )
    SELECT p.client_id, p.last, p.owner, p.seen, p.expired, COALESCE(n.scope_count, 0) AS scope_count
    FROM page p LEFT JOIN (
      SELECT client_id, COUNT(*) AS scope_count FROM mizu_client_scopes
      WHERE client_id IN (SELECT client_id FROM page) GROUP BY client_id
    ) n ON n.client_id = p.client_id
    ORDER BY p.client_id`)
  return {
    scopesFirst: scopes(false),
    scopesAfter: scopes(true),
    clientsFirst: clients(false),
    clientsAfter: clients(true),
    totals: q(`SELECT (SELECT COUNT(*) FROM mizu_heads) AS scopes, (SELECT COUNT(*) FROM mizu_entities) AS row_count,
      (SELECT COUNT(*) FROM mizu_changes) AS changes, (SELECT COUNT(*) FROM mizu_clients) AS clients,
      (SELECT COUNT(*) FROM mizu_expired_clients) AS expired`)
  }
}

const scopeInfo = (row: ScopeRow): Admin.ScopeInfo => ({
  scope: row.scope,
  head: num(row.head),
  floor: num(row.floor),
  rows: num(row.row_count),
  checksum: num(row.checksum),
  compacted: num(row.compacted),
  compacted_at: Operator.isoOrNull(numOrNull(row.compacted_at))
})

const clientInfo = (row: ClientRow): Admin.ClientInfo => {
  const base = { client_id: row.client_id, ...(row.owner === null ? {} : { owner: row.owner }), last_id: num(row.last) }
  const expired = numOrNull(row.expired)
  return expired === null
    ? { ...base, seen: Operator.isoOrNull(numOrNull(row.seen)), scopes: num(row.scope_count) }
    : { ...base, seen: null, expired: true, expired_at: new Date(expired).toISOString() }
}

/** The page of `limit + 1` rows read: at most `limit` of them, and `next` when there was one more. */
const paged = <A>(rows: ReadonlyArray<A>, limit: number, keyOf: (a: A) => string) => {
  const taken = rows.length > limit ? rows.slice(0, limit) : rows
  const last = taken[taken.length - 1]
  return { taken, next: rows.length > limit && last !== undefined ? keyOf(last) : undefined }
}

/** The SQL implementation over the family's statements. */
export const make = ({ q, query }: Statements): Operator.Operator["Type"] => {
  const text = texts(q)
  return {
    scopes: (page) => {
      const limit = Operator.clampLimit(page.limit, Admin.MAX_LIMIT)
      const [statement, params] = page.after === undefined
        ? [text.scopesFirst, [limit + 1]]
        : [text.scopesAfter, [page.after, limit + 1]]
      return query<ScopeRow, Admin.ScopesResponse>(statement, params, "Operator.scopes", (rows) => {
        const { next, taken } = paged(rows, limit, (row) => row.scope)
        const scopes = taken.map(scopeInfo)
        return next === undefined ? { scopes } : { scopes, next }
      })
    },
    clients: (page) => {
      const limit = Operator.clampLimit(page.limit, Admin.MAX_LIMIT)
      const [statement, params] = page.after === undefined
        ? [text.clientsFirst, [limit + 1]]
        : [text.clientsAfter, [page.after, page.after, limit + 1]]
      return query<ClientRow, Admin.ClientsResponse>(statement, params, "Operator.clients", (rows) => {
        const { next, taken } = paged(rows, limit, (row) => row.client_id)
        const clients = taken.map(clientInfo)
        return next === undefined ? { clients } : { clients, next }
      })
    },
    totals: query<TotalsRow, Operator.Totals>(text.totals, [], "Operator.totals", (rows) => {
      const row = rows[0]
      if (row === undefined) throw new Error("no totals row")
      return {
        scopes: num(row.scopes),
        rows: num(row.row_count),
        changes: num(row.changes),
        clients: num(row.clients),
        expired: num(row.expired)
      }
    })
  }
}
