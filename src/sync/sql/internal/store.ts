/**
 * The SQL `Store`: `mizu_entities`, primary key `(scope, entity, id)`, the
 * value as JSON text. One statement per operation. Listings are ordered by
 * the key, which compares bytewise on both databases (the order of
 * `Entity.idOrder`); snapshots are built with own properties only, so an id
 * `"__proto__"` is a row like any other.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { getOwn, setOwn, type SnapshotData } from "../../../protocol/Sync.js"
import type { Store } from "../../Store.js"
import { decodeRows, encodeJson, mapSqlError, type Statements } from "./statements.js"

interface DataRow {
  readonly entity: string
  readonly id: string
  readonly data: string
}

/** The snapshot of a scope from its rows (ordered by entity, then id). */
const toSnapshot = (rows: ReadonlyArray<DataRow>): SnapshotData => {
  const out: Record<string, Record<string, unknown>> = {}
  for (const row of rows) {
    let byId = getOwn(out, row.entity)
    if (byId === undefined) {
      byId = {}
      setOwn(out, row.entity, byId)
    }
    setOwn(byId, row.id, JSON.parse(row.data))
  }
  return out
}

/** The store over the family's statements. */
export const make = ({ exec, q }: Statements): Store["Type"] => {
  const getText = q("SELECT data FROM mizu_entities WHERE scope = ? AND entity = ? AND id = ?")
  const putText = q(`INSERT INTO mizu_entities (scope, entity, id, data) VALUES (?, ?, ?, ?)
    ON CONFLICT (scope, entity, id) DO UPDATE SET data = excluded.data`)
  const deleteText = q("DELETE FROM mizu_entities WHERE scope = ? AND entity = ? AND id = ? RETURNING id")
  const listText = q("SELECT id, data FROM mizu_entities WHERE scope = ? AND entity = ? ORDER BY id")
  const snapshotText = q("SELECT entity, id, data FROM mizu_entities WHERE scope = ? ORDER BY entity, id")

  return {
    get: (scope, entity, id) =>
      exec<{ readonly data: string }>(getText, [scope, entity, id]).pipe(
        mapSqlError("Store.get failed"),
        Effect.flatMap((rows) => {
          const row = rows[0]
          return row === undefined ? Effect.succeedNone : decodeRows("entity", () => Option.some<unknown>(JSON.parse(row.data)))
        })
      ),
    put: (scope, entity, id, data) =>
      exec(putText, [scope, entity, id, encodeJson(data)]).pipe(
        Effect.asVoid,
        mapSqlError("Store.put failed")
      ),
    delete: (scope, entity, id) =>
      exec<{ readonly id: string }>(deleteText, [scope, entity, id]).pipe(
        Effect.map((rows) => rows.length > 0),
        mapSqlError("Store.delete failed")
      ),
    list: (scope, entity) =>
      exec<{ readonly id: string; readonly data: string }>(listText, [scope, entity]).pipe(
        mapSqlError("Store.list failed"),
        Effect.flatMap((rows) =>
          decodeRows("entity", () => rows.map((row): readonly [string, unknown] => [row.id, JSON.parse(row.data)]))
        )
      ),
    snapshot: (scope) =>
      exec<DataRow>(snapshotText, [scope]).pipe(
        mapSqlError("Store.snapshot failed"),
        Effect.flatMap((rows) => decodeRows("entity", () => toSnapshot(rows)))
      )
  }
}
