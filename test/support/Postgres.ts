/**
 * Test infrastructure for Postgres: a fresh database per test file on the
 * local server, dropped afterwards.
 *
 * - The server is 127.0.0.1:5432 (or MIZU_TEST_PG_HOST / MIZU_TEST_PG_PORT),
 *   database `test`, trust auth, user `postgres` (falling back to `root`). It is probed once, when this module
 *   is imported (top-level await), so test files can decide at collection
 *   time whether to run their Postgres suites.
 * - `PgDatabase` is an `Effect.Service` whose scoped acquire creates a
 *   database with a random name and whose release drops it (`WITH (FORCE)`).
 * - `describePostgres(name, body)` runs `body` with layers over ONE such
 *   database shared by the whole block (the storage suites build their layer
 *   once per `layer(...)` block; sharing the database keeps that cheap). When
 *   the server is unreachable the block is skipped with one console line, or
 *   fails if `CI=true`.
 */
import { afterAll, describe, it } from "@effect/vitest"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import type { Operator } from "../../src/sync/Operator.js"
import * as SqlStorage from "../../src/sync/sql/SqlStorage.js"
import type * as SyncStorage from "../../src/sync/SyncStorage.js"

/** Where the test server is expected (override with MIZU_TEST_PG_HOST / MIZU_TEST_PG_PORT). */
export const host = process.env.MIZU_TEST_PG_HOST ?? "127.0.0.1"
export const port = Number(process.env.MIZU_TEST_PG_PORT ?? 5432)
/** The database every probe and admin statement connects to. */
export const adminDatabase = "test"
const users = ["postgres", "root"] as const

/** The URL of a database on the test server. */
export const urlFor = (username: string, database: string): string =>
  `postgres://${encodeURIComponent(username)}@${host}:${port}/${encodeURIComponent(database)}`

/**
 * The client config of a database on the test server. The connect timeout is
 * generous: on a loaded machine (parallel test files, child processes) a
 * connection can take seconds, and a missing server is refused at once anyway.
 */
export const configFor = (username: string, database: string): PgClient.PgClientConfig => ({
  url: Redacted.make(urlFor(username, database)),
  connectTimeout: "30 seconds",
  applicationName: "mizu-tests"
})

const tryUser = (username: string) =>
  Layer.build(PgClient.layer({ ...configFor(username, adminDatabase), connectTimeout: "5 seconds" })).pipe(
    Effect.scoped,
    Effect.as(username)
  )

/**
 * The user that can connect to the test server, or why none can. Never fails.
 */
export const probe: Effect.Effect<Either.Either<string, string>> = Effect.firstSuccessOf(users.map(tryUser)).pipe(
  Effect.map(Either.right),
  Effect.catchAll((error) =>
    Effect.succeed(Either.left(`no server at ${host}:${port} (db "${adminDatabase}", users ${users.join("/")}: ${error.message}${
      error.cause instanceof Error ? `: ${error.cause.message}` : ""
    })`))
  )
)

/** The probe's result for this process: `Right(user)` or `Left(reason)`. */
export const server: Either.Either<string, string> = await Effect.runPromise(probe)

/** Whether Postgres tests must fail rather than skip when the server is missing. */
export const required = process.env.CI === "true"

/** A database on the test server: its name, the user, how to connect. */
export interface Database {
  readonly name: string
  readonly username: string
  readonly url: string
  readonly config: PgClient.PgClientConfig
}

/** Test databases older than this, with nobody connected, are leftovers of killed runs. */
const staleAfterMs = 60 * 60 * 1000

/**
 * Drop leftover test databases (a run killed before its finalizers ran):
 * names carry their creation time, `mizu_test_<pid>_<base36 ms>_<random>`.
 * Best effort; never fails.
 */
const dropStale = (sql: SqlClient.SqlClient): Effect.Effect<void> =>
  Effect.gen(function*() {
    const rows = yield* sql<{ readonly datname: string }>`SELECT datname FROM pg_database d
      WHERE datname LIKE 'mizu_test_%'
      AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)`
    const now = Date.now()
    const stale = rows.map((row) => row.datname).filter((name) => {
      const created = parseInt(name.split("_")[3] ?? "", 36)
      return Number.isFinite(created) && now - created > staleAfterMs
    })
    yield* Effect.forEach(stale, (name) => Effect.ignore(sql`DROP DATABASE IF EXISTS ${sql(name)} WITH (FORCE)`), {
      discard: true
    })
  }).pipe(Effect.ignore)

/**
 * Create an empty database with a random name; drop it (`WITH (FORCE)`, so
 * open pools do not block it) when the scope closes. Dies if the server is
 * unavailable.
 */
export const freshDatabase: Effect.Effect<Database, never, Scope.Scope> = Effect.gen(function*() {
  const username = yield* Either.match(server, {
    onLeft: (reason) => Effect.dieMessage(`Postgres unavailable: ${reason}`),
    onRight: Effect.succeed
  })
  const name = `mizu_test_${process.pid}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`
  const admin = yield* Layer.build(PgClient.layer(configFor(username, adminDatabase)))
  const sql = yield* Effect.provide(SqlClient.SqlClient, admin)
  yield* dropStale(sql)
  yield* sql`CREATE DATABASE ${sql(name)}`
  yield* Effect.addFinalizer(() => Effect.ignore(sql`DROP DATABASE IF EXISTS ${sql(name)} WITH (FORCE)`))
  return { name, username, url: urlFor(username, name), config: configFor(username, name) }
}).pipe(Effect.orDie)

/** A fresh database on the test server, dropped when the service's scope closes. */
export class PgDatabase extends Effect.Service<PgDatabase>()("test/support/PgDatabase", {
  scoped: freshDatabase
}) {}

/** What a Postgres block gets: layers over the block's one database. */
export interface Shared {
  /** The block's database (built once, dropped after the block). */
  readonly database: Layer.Layer<PgDatabase>
  /** SQL storage (and its `Operator`) on the block's database, migrated. Each build is a new pool on the same data. */
  readonly storage: (options?: SqlStorage.Options) => Layer.Layer<SyncStorage.Services | Operator, unknown>
}

let announced = false

/**
 * A `describe` block of Postgres tests. With a server: `body` gets layers over
 * one fresh database for the block. Without: under `CI=true` the block fails
 * with the reason; otherwise it is skipped, and the reason is printed once.
 */
export const describePostgres = (name: string, body: (shared: Shared) => void): void => {
  if (Either.isLeft(server)) {
    const reason = server.left
    if (required) {
      describe(name, () => {
        it("has a Postgres server", () => {
          throw new Error(`Postgres is required (CI=true): ${reason}`)
        })
      })
      return
    }
    if (!announced) {
      announced = true
      console.log(`skipping Postgres suites: ${reason} (set CI=true to make this a failure)`)
    }
    const unavailable = Layer.die(new Error(reason))
    // Skipped on purpose: no Postgres server here and CI is not set (the reason is printed once, above).
    describe.skip(name, () => body({ database: unavailable, storage: () => unavailable })) // skipped: no Postgres and CI is not set
    return
  }
  describe(name, () => {
    const runtime = ManagedRuntime.make(PgDatabase.Default)
    afterAll(() => runtime.dispose())
    const database: Layer.Layer<PgDatabase> = Layer.effectContext(Effect.map(runtime.runtimeEffect, (rt) => rt.context))
    body({
      database,
      storage: (options = {}) =>
        Layer.unwrapEffect(Effect.map(PgDatabase, (db) => SqlStorage.layerPg({ ...db.config, ...options }))).pipe(
          Layer.provide(database)
        )
    })
  })
}
