/**
 * The hand-written baseline's storage: better-sqlite3 prepared statements
 * (WAL, synchronous=NORMAL) on a database migrated by our SQL layer (same
 * tables and keys), doing per request what the engine does for the todo app:
 *
 * - push (with client_id), one transaction: read the client's last id (the
 *   dedupe check), then per mutation a savepoint holding the mutator
 *   (`todo/create`: existence check, entity upsert), the head bump, the change
 *   row insert, the client's last id and per-scope last id; the protocol's
 *   result per mutation (duplicate / out_of_order / rejected / …);
 * - pull, one read transaction: the head and floor checks, the page
 *   (`WHERE scope=? AND cursor>? ORDER BY cursor LIMIT n+1`), each row's data
 *   parsed into the Change, `last_mutation_id` when client_id is given.
 *
 * Used by bench/servers/baseline-http.ts and bench/push-engine.ts.
 */
import Database from "better-sqlite3"

export interface Mutation {
  readonly id: number
  readonly name: string
  readonly scope?: string
  readonly args?: { readonly id?: unknown; readonly title?: unknown }
}

/** A string of 1..max characters. */
export const isStr = (x: unknown, max: number): x is string => typeof x === "string" && x.length >= 1 && x.length <= max

/** The baseline's two operations, as the HTTP baseline serves them. */
export interface Baseline {
  /** One transaction; the results of PROTOCOL.md, one per mutation. */
  readonly push: (clientId: string, mutations: ReadonlyArray<Mutation>) => Array<Record<string, unknown>>
  /** One read transaction; the status and body to answer. */
  readonly pull: (
    scope: string,
    cursor: number,
    limit: number,
    clientId: string | undefined
  ) => { readonly status: number; readonly body: unknown }
  readonly close: () => void
}

/** Open the database file (already migrated) and prepare the statements. */
export const open = (filename: string): Baseline => {
  const db = new Database(filename)
  db.pragma("journal_mode = WAL")
  db.pragma("synchronous = NORMAL")
  db.pragma("busy_timeout = 5000")

  const st = {
    lastId: db.prepare<[string], { last: number }>("SELECT last FROM mizu_clients WHERE client_id = ?"),
    head: db.prepare<[string], { head: number; floor: number }>("SELECT head, floor FROM mizu_heads WHERE scope = ?"),
    getEntity: db.prepare<[string, string, string], { data: string }>(
      "SELECT data FROM mizu_entities WHERE scope = ? AND entity = ? AND id = ?"
    ),
    putEntity: db.prepare(
      "INSERT INTO mizu_entities (scope, entity, id, data) VALUES (?, ?, ?, ?) ON CONFLICT (scope, entity, id) DO UPDATE SET data = excluded.data"
    ),
    bumpHead: db.prepare<[string, number], { head: number; floor: number }>(
      "INSERT INTO mizu_heads (scope, head, floor) VALUES (?, ?, 0) ON CONFLICT (scope) DO UPDATE SET head = mizu_heads.head + excluded.head RETURNING head, floor"
    ),
    insertChange: db.prepare(
      "INSERT INTO mizu_changes (scope, cursor, entity, id, op, data, ts) VALUES (?, ?, ?, ?, ?, ?, ?)"
    ),
    recordClient: db.prepare(
      "INSERT INTO mizu_clients (client_id, last) VALUES (?, ?) ON CONFLICT (client_id) DO UPDATE SET last = CASE WHEN excluded.last > mizu_clients.last THEN excluded.last ELSE mizu_clients.last END"
    ),
    recordScope: db.prepare(
      "INSERT INTO mizu_client_scopes (client_id, scope, last) VALUES (?, ?, ?) ON CONFLICT (client_id, scope) DO UPDATE SET last = CASE WHEN excluded.last > mizu_client_scopes.last THEN excluded.last ELSE mizu_client_scopes.last END"
    ),
    lastForScope: db.prepare<[string, string], { last: number }>(
      "SELECT last FROM mizu_client_scopes WHERE client_id = ? AND scope = ?"
    ),
    page: db.prepare<[string, number, number], { cursor: number; entity: string; id: string; op: string; data: string | null; ts: string }>(
      "SELECT cursor, entity, id, op, data, ts FROM mizu_changes WHERE scope = ? AND cursor > ? ORDER BY cursor LIMIT ?"
    )
  }
  const savepoint = db.prepare("SAVEPOINT m")
  const release = db.prepare("RELEASE SAVEPOINT m")
  const rollbackTo = db.prepare("ROLLBACK TO SAVEPOINT m")




  const headOf = (scope: string) => st.head.get(scope)?.head ?? 0

  const push = db.transaction((clientId: string, mutations: ReadonlyArray<Mutation>) => {
    let last = st.lastId.get(clientId)?.last ?? 0
    const results: Array<Record<string, unknown>> = []
    for (let i = 0; i < mutations.length; i++) {
      const m = mutations[i]
      const scope = m.scope ?? "_default"
      if (m.id <= last) {
        results.push({ id: m.id, ok: true, duplicate: true, cursor: headOf(scope) })
        continue
      }
      if (m.id > last + 1) {
        for (const rest of mutations.slice(i)) {
          results.push({
            id: rest.id,
            ok: false,
            cursor: headOf(rest.scope ?? "_default"),
            error: { code: "out_of_order", message: `expected mutation id ${last + 1}`, expected: last + 1 }
          })
        }
        break
      }
      savepoint.run()
      let result: Record<string, unknown>
      const args = m.args
      if (m.name !== "todo/create") {
        result = { id: m.id, ok: false, cursor: headOf(scope), error: { code: "unknown_mutation", message: `unknown mutation ${m.name}` } }
      } else if (args === undefined || !isStr(args.id, 64) || !isStr(args.title, 500)) {
        result = { id: m.id, ok: false, cursor: headOf(scope), error: { code: "invalid_args", message: "bad args" } }
      } else if (st.getEntity.get(scope, "todo", args.id) !== undefined) {
        rollbackTo.run()
        result = { id: m.id, ok: false, cursor: headOf(scope), error: { code: "rejected", message: `todo ${args.id} already exists` } }
      } else {
        const data = JSON.stringify({ id: args.id, title: args.title, completed: false })
        st.putEntity.run(scope, "todo", args.id, data)
        const head = (st.bumpHead.get(scope, 1) as { head: number }).head
        st.insertChange.run(scope, head, "todo", args.id, "create", data, new Date().toISOString())
        result = { id: m.id, ok: true, cursor: head }
      }
      st.recordClient.run(clientId, m.id)
      st.recordScope.run(clientId, scope, m.id)
      release.run()
      results.push(result)
      last = m.id
    }
    return results
  })

  const pull = db.transaction((scope: string, cursor: number, limit: number, clientId: string | undefined) => {
    const row = st.head.get(scope)
    const head = row?.head ?? 0
    const floor = row?.floor ?? 0
    if (cursor > head) return { status: 409, body: { error: { code: "cursor_ahead", message: "cursor ahead", details: { head } } } }
    if (cursor < floor) return { status: 410, body: { error: { code: "cursor_too_old", message: "too old", details: { floor } } } }
    const rows = st.page.all(scope, cursor, limit + 1)
    const hasMore = rows.length > limit
    const changes = (hasMore ? rows.slice(0, limit) : rows).map((r) => {
      const base = { cursor: r.cursor, scope, entity: r.entity, id: r.id, op: r.op, ts: r.ts }
      return r.data === null ? base : { ...base, data: JSON.parse(r.data) as unknown }
    })
    const body: Record<string, unknown> = {
      changes,
      cursor: changes.length === 0 ? cursor : changes[changes.length - 1].cursor,
      has_more: hasMore
    }
    if (clientId !== undefined) body["last_mutation_id"] = st.lastForScope.get(clientId, scope)?.last ?? 0
    return { status: 200, body }
  })

  return { push, pull, close: () => db.close() }
}
