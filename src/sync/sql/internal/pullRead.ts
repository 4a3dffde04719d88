/**
 * What a pull reads, as ONE statement (`SyncStorage.readPull`): the scope's
 * head and floor, the page of changes after the cursor (one more than the
 * limit, to tell `has_more`), the client's owner and its last id in the
 * scope. One statement sees one snapshot on SQLite and on Postgres, so the
 * pull needs no transaction around its reads and `last_mutation_id` never
 * claims a change the page does not reach.
 *
 * One row per change (head, floor, owner and last id repeated), or one row
 * with no change columns when the page is empty.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type { PullRead } from "../../SyncStorage.js"
import { toChange } from "./changeLog.js"
import { decodeRows, mapSqlError, type Statements } from "./statements.js"

interface Row {
  readonly head: number | string | null
  readonly floor: number | string | null
  readonly owner: string | null
  readonly last_id: number | string | null
  readonly cursor: number | string | null
  readonly entity: string | null
  readonly id: string | null
  readonly op: string | null
  readonly data: string | null
  readonly ts: string | null
}

/** `SyncStorage.readPull` over the family's statements. */
export const make = ({ exec, q }: Statements) => {
  const text = q(`SELECT h.head AS head, h.floor AS floor,
      (SELECT owner FROM mizu_clients WHERE client_id = s.client_id) AS owner,
      (SELECT last FROM mizu_client_scopes WHERE client_id = s.client_id AND scope = s.scope) AS last_id,
      c.cursor AS cursor, c.entity AS entity, c.id AS id, c.op AS op, c.data AS data, c.ts AS ts
    FROM (SELECT CAST(? AS text) AS scope, CAST(? AS text) AS client_id) AS s
    LEFT JOIN mizu_heads AS h ON h.scope = s.scope
    LEFT JOIN (
      SELECT scope, cursor, entity, id, op, data, ts FROM mizu_changes
      WHERE scope = ? AND cursor > ?
      ORDER BY cursor
      LIMIT ?
    ) AS c ON c.scope = s.scope
    ORDER BY c.cursor`)

  return (scope: string, cursor: number, limit: number, clientId: string | undefined) =>
    exec<Row>(text, [scope, clientId ?? null, scope, cursor, Math.max(0, limit) + 1]).pipe(
      mapSqlError("SyncStorage.readPull failed"),
      Effect.flatMap((rows) =>
        decodeRows("pull page", (): PullRead => {
          const first = rows[0]
          const changeRows = first === undefined || first.cursor === null ? [] : rows
          const hasMore = changeRows.length > limit
          const page = hasMore ? changeRows.slice(0, Math.max(0, limit)) : changeRows
          return {
            head: Number(first?.head ?? 0),
            floor: Number(first?.floor ?? 0),
            owner: first?.owner ?? undefined,
            lastId: Number(first?.last_id ?? 0),
            changes: page.map((row) =>
              toChange(scope, {
                cursor: row.cursor ?? 0,
                entity: row.entity ?? "",
                id: row.id ?? "",
                op: row.op ?? "",
                data: row.data,
                ts: row.ts ?? ""
              })
            ),
            hasMore
          }
        })
      )
    )
}
