/**
 * The SQL `Store`: `mizu_entities`, primary key `(scope, entity, id)`, the
 * value as JSON text. One statement per operation. Listings are ordered by
 * the key, which compares bytewise on both databases (the order of
 * `Entity.idOrder`); snapshots are built with own properties only, so an id
 * `"__proto__"` is a row like any other.
 *
 * @internal
 */
import type * as Context from "effect/Context"
import * as Option from "effect/Option"
import { getOwn, setOwn, type SnapshotData } from "../../../protocol/Sync.js"
import type { Store, SyncView } from "../../Store.js"
import { encodeJson, type Statements } from "./statements.js"

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

const readGet = (rows: ReadonlyArray<{ readonly data: string }>): Option.Option<unknown> => {
  const row = rows[0]
  return row === undefined ? Option.none() : Option.some<unknown>(JSON.parse(row.data))
}

const readDeleted = (rows: ReadonlyArray<{ readonly id: string }>): boolean => rows.length > 0

const readNothing = (): void => undefined

/** The store over the family's statements. */
export const make = ({ q, query, querySync, syncIn }: Statements): Store["Type"] => {
  const getText = q("SELECT data FROM mizu_entities WHERE scope = ? AND entity = ? AND id = ?")
  const putText = q(`INSERT INTO mizu_entities (scope, entity, id, data) VALUES (?, ?, ?, ?)
    ON CONFLICT (scope, entity, id) DO UPDATE SET data = excluded.data`)
  const deleteText = q("DELETE FROM mizu_entities WHERE scope = ? AND entity = ? AND id = ? RETURNING id")
  const listText = q("SELECT id, data FROM mizu_entities WHERE scope = ? AND entity = ? ORDER BY id")
  const snapshotText = q("SELECT entity, id, data FROM mizu_entities WHERE scope = ? ORDER BY entity, id")

  // the view of the last context asked for (a group's writer asks in one context throughout)
  let viewContext: Context.Context<never> | undefined
  let view: SyncView | undefined
  const viewIn = (context: Context.Context<never>): SyncView | undefined => {
    if (context === viewContext) return view
    viewContext = context
    view = !syncIn(context) ? undefined : {
      get: (scope, entity, id) => querySync(getText, [scope, entity, id], "Store.get", readGet, context),
      put: (scope, entity, id, data) => {
        const json = encodeJson(data)
        querySync(putText, [scope, entity, id, json], "Store.put", readNothing, context)
        return json
      },
      delete: (scope, entity, id) => querySync(deleteText, [scope, entity, id], "Store.delete", readDeleted, context)
    }
    return view
  }

  return {
    get: (scope, entity, id) => query(getText, [scope, entity, id], "Store.get", readGet),
    put: (scope, entity, id, data) => query(putText, [scope, entity, id, encodeJson(data)], "Store.put", readNothing),
    delete: (scope, entity, id) => query(deleteText, [scope, entity, id], "Store.delete", readDeleted),
    syncIn: viewIn,
    list: (scope, entity) =>
      query<{ readonly id: string; readonly data: string }, ReadonlyArray<readonly [string, unknown]>>(
        listText,
        [scope, entity],
        "Store.list",
        (rows) => rows.map((row): readonly [string, unknown] => [row.id, JSON.parse(row.data)])
      ),
    snapshot: (scope) => query<DataRow, SnapshotData>(snapshotText, [scope], "Store.snapshot", toSnapshot)
  }
}
