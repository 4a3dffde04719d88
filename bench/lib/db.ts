/**
 * Database setup for the benchmarks: migrate a file with our SQL layer (so
 * every server, ours and the baseline, runs on exactly the schema the
 * migrations create), and bulk-load change rows directly with better-sqlite3.
 */
import Database from "better-sqlite3"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as SqlStorage from "../../src/sync/sql/SqlStorage.js"

/** Create (or bring up to date) the database file through `SqlStorage.layerSqlite` (WAL). */
export const migrate = (filename: string): Promise<void> =>
  Effect.runPromise(Effect.scoped(Layer.build(SqlStorage.layerSqlite({ filename }))).pipe(Effect.asVoid))

/**
 * Append `rows` todo changes to `scope` (cursors head+1 …) and a client whose
 * last mutation touched the scope, in one transaction, through prepared
 * statements. (No entity rows: pull never reads them.)
 */
export const bulkLoad = (filename: string, scope: string, rows: number, clientId = "bulk-client"): void => {
  const db = new Database(filename)
  db.pragma("journal_mode = WAL")
  db.pragma("synchronous = NORMAL")
  const insertChange = db.prepare(
    "INSERT INTO mizu_changes (scope, cursor, entity, id, op, data, ts) VALUES (?, ?, 'todo', ?, 'create', ?, ?)"
  )
  const load = db.transaction(() => {
    const head = (db.prepare("SELECT head FROM mizu_heads WHERE scope = ?").get(scope) as { head: number } | undefined)?.head ?? 0
    const ts = new Date().toISOString()
    for (let i = 1; i <= rows; i++) {
      const id = `t${head + i}`
      const data = JSON.stringify({ id, title: `buy milk ${head + i}`, completed: false })
      insertChange.run(scope, head + i, id, data, ts)
    }
    db.prepare(
      "INSERT INTO mizu_heads (scope, head, floor) VALUES (?, ?, 0) ON CONFLICT (scope) DO UPDATE SET head = excluded.head"
    ).run(scope, head + rows)
    db.prepare("INSERT OR REPLACE INTO mizu_clients (client_id, last) VALUES (?, ?)").run(clientId, 1)
    db.prepare("INSERT OR REPLACE INTO mizu_client_scopes (client_id, scope, last) VALUES (?, ?, ?)").run(clientId, scope, 1)
  })
  load()
  db.pragma("wal_checkpoint(TRUNCATE)")
  db.close()
}
