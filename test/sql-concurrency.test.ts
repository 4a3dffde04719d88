/**
 * Postgres across processes, with real OS processes:
 * (a) 4 processes push 500 changes each into one scope while a puller reads
 *     behind them: the log ends as exactly 1..2000, and the puller never sees
 *     a cursor it skipped get filled in behind it (each cursor it receives is
 *     the one after the last it saw).
 * (b) Two processes migrate the same empty databases at the same moment:
 *     both succeed, each database migrated once (all five migrations).
 */
import * as ChildProcess from "node:child_process"
import * as NodeUrl from "node:url"
import { assert, layer } from "@effect/vitest"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import { ChangeLog } from "../src/sync/ChangeLog.js"
import * as SqlStorage from "../src/sync/sql/SqlStorage.js"
import { describePostgres, freshDatabase, PgDatabase } from "./support/Postgres.js"
import { freshScope, range } from "./suites/util.js"

const fixture = (name: string) => NodeUrl.fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url))

interface Child {
  readonly process: ChildProcess.ChildProcessWithoutNullStreams
  /** Resolves with the first stdout line satisfying `test`. */
  readonly line: (test: (line: string) => boolean) => Effect.Effect<string>
  /** The exit code and everything written to stdout/stderr, once the process ends. */
  readonly exit: Effect.Effect<{ readonly code: number | null; readonly stdout: string; readonly stderr: string }>
}

/** Run a fixture as `node --conditions=source --import tsx <script> …args`; killed if still running when the scope closes. */
const spawnFixture = (script: string, args: ReadonlyArray<string>): Effect.Effect<Child, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync((): Child => {
      const child = ChildProcess.spawn(process.execPath, ["--conditions=source", "--import", "tsx", fixture(script), ...args], {
        cwd: process.cwd(),
        stdio: ["pipe", "pipe", "pipe"]
      })
      let stdout = ""
      let stderr = ""
      const waiters: Array<{ test: (line: string) => boolean; resolve: (line: string) => void }> = []
      child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
        stdout += chunk
        for (const line of stdout.split("\n")) {
          for (const waiter of waiters.splice(0)) {
            if (waiter.test(line)) waiter.resolve(line)
            else waiters.push(waiter)
          }
        }
      })
      child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk))
      const exited = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
        child.on("close", (code) => resolve({ code, stdout, stderr }))
      )
      return {
        process: child,
        line: (test) =>
          Effect.promise(() => {
            const found = stdout.split("\n").find(test)
            return found !== undefined
              ? Promise.resolve(found)
              : Promise.race([
                new Promise<string>((resolve) => waiters.push({ test, resolve })),
                exited.then(({ code }) => Promise.reject(new Error(`${script} exited (${code}) before the line: ${stderr}`)))
              ])
          }),
        exit: Effect.promise(() => exited)
      }
    }),
    (child) => Effect.sync(() => child.process.exitCode === null && child.process.kill("SIGKILL"))
  )

/** Child processes start slowly on a loaded machine (tsx transpiles at start); vitest's default 60 s is too tight there. */
const processTimeout = 240_000

describePostgres("Postgres across OS processes", ({ database }) => {
  layer(database, { timeout: 120_000, excludeTestServices: true })((it) => {
    it.effect("4 processes x 500 pushes into one scope: cursors exactly 1..2000, and a puller never sees a gap filled", () =>
      Effect.gen(function*() {
        const db = yield* PgDatabase
        const scope = freshScope("race")
        const context = yield* Layer.build(SqlStorage.layerPg({ ...db.config }))
        const log = yield* Effect.provide(ChangeLog, context)
        const sql = yield* Effect.provide(SqlClient.SqlClient, context)
        // Commits need not wait for the disk here: visibility and row locks, what this test is about, are unchanged.
        yield* sql`ALTER DATABASE ${sql(db.name)} SET synchronous_commit = off`

        const children = yield* Effect.forEach(["p1", "p2", "p3", "p4"], (tag) =>
          spawnFixture("pg-pusher.ts", [db.url, scope, tag, "500", "2"]))

        let done = false
        let seen = 0
        let polls = 0
        const puller = Effect.gen(function*() {
          for (;;) {
            const finished = done
            const page = yield* log.since(scope, seen, 100)
            polls++
            for (const change of page.changes) {
              // The protocol's promise: nothing can appear at or below a cursor a reader has seen.
              assert.strictEqual(change.cursor, seen + 1, `after cursor ${seen} the puller got ${change.cursor}`)
              seen = change.cursor
            }
            if (finished && !page.hasMore) return
            if (page.changes.length === 0) yield* Effect.sleep("5 millis")
          }
        })
        const pulling = yield* Effect.fork(puller)

        const results = yield* Effect.forEach(children, (child) => child.exit, { concurrency: "unbounded" })
        done = true
        for (const result of results) assert.strictEqual(result.code, 0, result.stderr)
        yield* pulling.await.pipe(Effect.flatten)

        assert.strictEqual(seen, 2000)
        assert.isAbove(polls, 5, "the puller ran alongside the writers")
        assert.strictEqual(yield* log.head(scope), 2000)
        const all = yield* log.since(scope, 0, 5000)
        assert.deepStrictEqual(all.changes.map((c) => c.cursor), range(2000))
        assert.strictEqual(new Set(all.changes.map((c) => c.id)).size, 2000)
        // Each process got 500 distinct cursors back, and together they are the log.
        const returned = results.flatMap((result) => {
          const line = result.stdout.split("\n").find((l) => l.startsWith("{"))
          return line === undefined ? [] : (JSON.parse(line) as { cursors: Array<number> }).cursors
        })
        assert.deepStrictEqual([...returned].sort((a, b) => a - b), range(2000))
      }).pipe(Effect.scoped), processTimeout)

    it.effect("two processes migrating the same empty databases at once both succeed", () =>
      Effect.gen(function*() {
        const databases = yield* Effect.forEach(range(4), () => freshDatabase, { concurrency: 4 })
        const urls = databases.map((d) => d.url)
        const a = yield* spawnFixture("pg-migrate.ts", urls)
        const b = yield* spawnFixture("pg-migrate.ts", urls)
        yield* Effect.all([a.line((l) => l === "ready"), b.line((l) => l === "ready")], { concurrency: 2 })
        const go = `go ${Date.now() + 200}\n`
        a.process.stdin.write(go)
        b.process.stdin.write(go)
        const [ra, rb] = yield* Effect.all([a.exit, b.exit], { concurrency: 2 })
        assert.strictEqual(ra.code, 0, ra.stderr)
        assert.strictEqual(rb.code, 0, rb.stderr)
        for (const db of databases) {
          const migrated = yield* Effect.gen(function*() {
            const sql = yield* SqlClient.SqlClient
            const rows = yield* sql<{ readonly name: string }>`SELECT name FROM effect_sql_migrations ORDER BY migration_id`
            const tables = yield* sql<{ readonly n: string }>`SELECT count(*) AS n FROM pg_tables WHERE tablename LIKE 'mizu_%'`
            return { names: rows.map((r) => r.name), tables: Number(tables[0]?.n) }
          }).pipe(Effect.provide(PgClient.layer({ url: Redacted.make(db.url) })))
          assert.deepStrictEqual(migrated, { names: ["init", "client_owner", "client_failures", "client_expiry", "checksums"], tables: 7 })
        }
      }).pipe(Effect.scoped), processTimeout)
  })
})
