/**
 * The migrations of the SQL storage family: each table spelled once for
 * both dialects, the migrator's failures (also its defects) turned into a
 * `StorageError`, and the Postgres run serialized across processes by a
 * session-level advisory lock held on one reserved connection.
 *
 * @internal
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as Migrator from "@effect/sql/Migrator"
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as PgMigrator from "@effect/sql-pg/PgMigrator"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as SqliteMigrator from "@effect/sql-sqlite-node/SqliteMigrator"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Checksum from "../../../protocol/Checksum.js"
import * as StorageError from "../../StorageError.js"

/**
 * The name of the table where `@effect/sql` records applied migrations.
 */
export const table = "effect_sql_migrations" as const

/**
 * The key of the advisory lock `runPg` holds while migrating (an arbitrary
 * constant: "mizu" in ASCII). Other tools should not use it.
 */
const advisoryLockKey = 0x6d697a75

/**
 * How the tables are spelled in each dialect: Postgres keys are `COLLATE "C"`
 * text (bytewise, as SQLite's default) and counters `BIGINT`; SQLite tables
 * are `WITHOUT ROWID` (every one has a text primary key).
 */
interface Dialect {
  /** The type of a text column that is part of a key. */
  readonly key: string
  /** The type of a cursor, id or counter column. */
  readonly int: string
  /** What follows a table's column list. */
  readonly suffix: string
}

const pgDialect: Dialect = { key: `TEXT COLLATE "C"`, int: "BIGINT", suffix: "" }
const sqliteDialect: Dialect = { key: "TEXT", int: "INTEGER", suffix: " WITHOUT ROWID" }

/** The tables of `0001_init` in one dialect. */
const initTables = ({ int, key, suffix }: Dialect): ReadonlyArray<string> => [
  `CREATE TABLE mizu_heads (
    scope ${key} PRIMARY KEY,
    head ${int} NOT NULL,
    floor ${int} NOT NULL DEFAULT 0
  )${suffix}`,
  `CREATE TABLE mizu_changes (
    scope ${key} NOT NULL,
    cursor ${int} NOT NULL,
    entity TEXT NOT NULL,
    id TEXT NOT NULL,
    op TEXT NOT NULL,
    data TEXT,
    ts TEXT NOT NULL,
    PRIMARY KEY (scope, cursor)
  )${suffix}`,
  `CREATE TABLE mizu_entities (
    scope ${key} NOT NULL,
    entity ${key} NOT NULL,
    id ${key} NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (scope, entity, id)
  )${suffix}`,
  `CREATE TABLE mizu_clients (
    client_id ${key} PRIMARY KEY,
    last ${int} NOT NULL
  )${suffix}`,
  `CREATE TABLE mizu_client_scopes (
    client_id ${key} NOT NULL,
    scope ${key} NOT NULL,
    last ${int} NOT NULL,
    PRIMARY KEY (client_id, scope)
  )${suffix}`
]

/** The dialect of the client in context (anything but Postgres is spelled as SQLite). */
const dialect: Effect.Effect<Dialect, never, SqlClient.SqlClient> = Effect.map(
  SqlClient.SqlClient,
  (sql) => sql.onDialectOrElse({ pg: () => pgDialect, orElse: () => sqliteDialect })
)

/** Run DDL statements in order. */
const runAll = (statements: ReadonlyArray<string>): Effect.Effect<void, SqlError, SqlClient.SqlClient> =>
  Effect.flatMap(SqlClient.SqlClient, (sql) => Effect.forEach(statements, (statement) => sql.unsafe(statement), { discard: true }))

/** `0001_init`: every table of the storage family, in the dialect of the client. */
const init: Effect.Effect<void, SqlError, SqlClient.SqlClient> = Effect.flatMap(dialect, (d) => runAll(initTables(d)))

/**
 * `0002_client_owner`: `mizu_clients.owner`, the principal a client id belongs
 * to. Existing rows get `NULL` (unowned): the next named principal that pushes
 * with such a client id claims it, so clients from before the migration keep
 * working; until then a pull or snapshot naming it is answered as before.
 */
const clientOwner: Effect.Effect<void, SqlError, SqlClient.SqlClient> = Effect.flatMap(
  dialect,
  ({ key }) => runAll([`ALTER TABLE mizu_clients ADD COLUMN owner ${key}`])
)

/**
 * `0003_client_failures`: `mizu_client_failures`, the outcome (code and
 * message) of each client's last failed mutations. Starts empty: a
 * duplicate of a mutation that failed before the migration answers `ok`, as
 * every duplicate did until then.
 */
const clientFailures: Effect.Effect<void, SqlError, SqlClient.SqlClient> = Effect.flatMap(dialect, ({ int, key, suffix }) =>
  runAll([
    `CREATE TABLE mizu_client_failures (
    client_id ${key} NOT NULL,
    id ${int} NOT NULL,
    code TEXT NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (client_id, id)
  )${suffix}`
  ]))

/**
 * `0004_client_expiry`: `mizu_clients.seen` (epoch ms of the client's last
 * push; the migration's time for the clients it finds, so none expires
 * before a full TTL from now) and `mizu_expired_clients`, what is kept of a
 * client whose record expired: its last id and owner, so that a mutation it
 * had pushed before is still a duplicate when it comes back.
 */
const clientExpiry: Effect.Effect<void, SqlError, SqlClient.SqlClient> = Effect.gen(function*() {
  const { int, key, suffix } = yield* dialect
  const now = yield* Effect.clockWith((c) => c.currentTimeMillis)
  yield* runAll([
    `ALTER TABLE mizu_clients ADD COLUMN seen ${int}`,
    `UPDATE mizu_clients SET seen = ${Math.floor(now)}`,
    `CREATE TABLE mizu_expired_clients (
    client_id ${key} PRIMARY KEY,
    last ${int} NOT NULL,
    owner ${key},
    expired ${int} NOT NULL
  )${suffix}`
  ])
})

/**
 * `0005_checksums`: per scope the checksum of its live rows
 * (`mizu_heads.checksum`, `Checksum`), computed here for the rows that
 * exist; per change the checksum after it (`mizu_changes.checksum`, NULL for
 * the changes from before: a pull page ending on one carries no checksum);
 * and the compaction mark of each scope (`compacted`: changes at or below
 * it may have been folded into later ones; `compacted_at`: when).
 */
const checksums: Effect.Effect<void, SqlError, SqlClient.SqlClient> = Effect.gen(function*() {
  const { int } = yield* dialect
  const sql = yield* SqlClient.SqlClient
  yield* runAll([
    `ALTER TABLE mizu_heads ADD COLUMN checksum ${int} NOT NULL DEFAULT 0`,
    `ALTER TABLE mizu_heads ADD COLUMN compacted ${int} NOT NULL DEFAULT 0`,
    `ALTER TABLE mizu_heads ADD COLUMN compacted_at ${int}`,
    `ALTER TABLE mizu_changes ADD COLUMN checksum ${int}`
  ])
  const rows = yield* sql.unsafe<{ readonly scope: string; readonly entity: string; readonly id: string; readonly data: string }>(
    "SELECT scope, entity, id, data FROM mizu_entities"
  )
  const sums = new Map<string, number>()
  for (const row of rows) sums.set(row.scope, Checksum.add(sums.get(row.scope) ?? 0, Checksum.rowHash(row.entity, row.id, JSON.parse(row.data))))
  for (const [scope, sum] of sums) yield* sql`UPDATE mizu_heads SET checksum = ${sum} WHERE scope = ${scope}`
})

/**
 * Every migration of the storage family, in order. New ones are appended, never edited.
 */
export const migrations = {
  "0001_init": init,
  "0002_client_owner": clientOwner,
  "0003_client_failures": clientFailures,
  "0004_client_expiry": clientExpiry,
  "0005_checksums": checksums
} as const

/**
 * The migrations as `@effect/sql`'s migrators load them.
 */
export const loader: Migrator.Loader = Migrator.fromRecord(migrations)

const toStorageError = (e: Migrator.MigrationError | SqlError): StorageError.StorageError =>
  StorageError.fromCause(`migrations failed: ${e.message}`)(e)

/**
 * The migrator dies (a defect) when a migration itself fails; turn that, and
 * its typed errors, into a `StorageError`.
 */
const guard = <A, R>(self: Effect.Effect<A, Migrator.MigrationError | SqlError, R>): Effect.Effect<A, StorageError.StorageError, R> =>
  self.pipe(
    Effect.catchAllDefect((defect) =>
      defect instanceof Migrator.MigrationError ? Effect.fail(defect) : Effect.die(defect)
    ),
    Effect.mapError(toStorageError)
  )

/**
 * Bring a SQLite database up to date. Idempotent; a run that finds the
 * database current does nothing.
 */
export const runSqlite: Effect.Effect<void, StorageError.StorageError, SqliteClient.SqliteClient | SqlClient.SqlClient> =
  SqliteMigrator.run({ loader, table }).pipe(
    Effect.provide(NodeContext.layer),
    guard,
    Effect.asVoid,
    Effect.withSpan("Migrations.runSqlite")
  )

/**
 * Bring a Postgres database up to date. Idempotent, and safe to run from any
 * number of processes at once, even on an empty database: the whole run holds
 * a session-level advisory lock (`advisoryLockKey`) on a reserved connection.
 */
export const runPg: Effect.Effect<void, StorageError.StorageError, PgClient.PgClient | SqlClient.SqlClient> = Effect.gen(
  function*() {
    const sql = yield* SqlClient.SqlClient
    const connection = yield* sql.reserve
    yield* connection.executeRaw("SELECT pg_advisory_lock($1)", [advisoryLockKey])
    yield* Effect.addFinalizer(() => Effect.ignore(connection.executeRaw("SELECT pg_advisory_unlock($1)", [advisoryLockKey])))
    yield* PgMigrator.run({ loader, table }).pipe(Effect.provide(NodeContext.layer))
  }
).pipe(
  Effect.scoped,
  guard,
  Effect.withSpan("Migrations.runPg")
)

/**
 * Runs `runSqlite` when built.
 */
export const layerSqlite: Layer.Layer<never, StorageError.StorageError, SqliteClient.SqliteClient | SqlClient.SqlClient> =
  Layer.effectDiscard(runSqlite)

/**
 * Runs `runPg` when built (safe from several processes at once).
 */
export const layerPg: Layer.Layer<never, StorageError.StorageError, PgClient.PgClient | SqlClient.SqlClient> = Layer
  .effectDiscard(runPg)
