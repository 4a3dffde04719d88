/**
 * What a pull reads, as ONE statement (`SyncStorage.readPull`): the scope's
 * head, floor and compaction mark, the client's owner and its last id in the scope
 * (at least its tombstone's last id, when its record expired: every id up
 * to it was processed), and the
 * page of changes after the cursor already encoded as the wire's JSON array
 * by the database (`json_group_array` / `json_agg`), with its count and last
 * cursor. One statement sees one snapshot on SQLite and on Postgres, so the
 * pull needs no transaction around its reads and `last_mutation_id` never
 * claims a change the page does not reach; the page's JSON is stored JSON
 * spliced, so no row is parsed or encoded in JS on the HTTP path.
 *
 * An aggregate without `GROUP BY`: always one row, also for an empty page;
 * the other values are uncorrelated scalar subqueries, each run once.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type { PullRead } from "../../SyncStorage.js"
import { decodeRows, mapSqlError, type Statements } from "./statements.js"

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

/** `SyncStorage.readPull` over the family's statements. */
export const make = ({ exec, isPg, q }: Statements): NonNullable<PullRead.Reader> => {
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
