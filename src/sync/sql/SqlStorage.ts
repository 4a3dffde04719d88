/**
 * The SQL storage family: `SyncStorage`, `ChangeLog`, `Store` and `Clients`
 * written once over `@effect/sql`'s `SqlClient`, running on SQLite
 * (`@effect/sql-sqlite-node`) and PostgreSQL (`@effect/sql-pg`).
 *
 * Invariants (each implementation module states how it keeps them):
 * - **Gap-free cursors across processes**: an append locks its scope's head
 *   row until the transaction ends, so cursors become visible in commit
 *   order and a reader never sees a gap fill in behind it.
 * - **Per-client serialization and ownership**: in a transaction,
 *   `Clients.claim` locks the client's row, so concurrent pushes of one
 *   client run one after the other, and of two principals claiming a fresh
 *   id exactly one becomes its owner.
 * - **Transactions**: all or nothing; a nested one is a savepoint that is
 *   released on success, so a request of many mutations stays linear.
 *   `readConsistent` is one snapshot (REPEATABLE READ, READ ONLY on
 *   Postgres). On SQLite transactions of different fibers are serialized on
 *   the one connection, never interleaved.
 * - **Few statements per operation**: an append is one statement on
 *   Postgres, two on SQLite; recording a push's ids one on Postgres, two
 *   (four with failures) on SQLite; inside a transaction statements run
 *   straight on its connection.
 * - **Errors**: every database error is a `StorageError` (`conflict` when a
 *   retry of the whole transaction may cure it, `invalid` when the database
 *   refused a value, `unavailable` otherwise), a failed COMMIT included;
 *   unreadable stored data is `corrupt`, never a defect.
 * - JSON is stored as text, so the same code runs on both databases.
 *
 * @since 0.1.0
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import type * as PgClient from "@effect/sql-pg/PgClient"
import type * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import type * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import type * as Clients from "../Clients.js"
import type { Operator } from "../Operator.js"
import type * as StorageError from "../StorageError.js"
import type { Services } from "../SyncStorage.js"
import * as internal from "./internal/sqlStorage.js"

/**
 * Options of the SQL storage family (with `Clients.Options`: how many failed
 * mutations per client are remembered).
 *
 * @since 0.1.0
 * @category options
 */
export interface Options extends Clients.Options {
  /**
   * Keep at most this many changes per scope: past it, an append trims the
   * oldest in its own transaction (`ChangeLog.retentionTrimPoint`). Readers
   * behind the trimmed part get `cursor_too_old` and reset from a snapshot.
   * Unset (the default): keep everything.
   */
  readonly maxChangesPerScope?: number | undefined
}

/**
 * Build the four storage services (and the `Operator` view) over the
 * `SqlClient` in context (the `sqlite` and `pg` dialects; another dies). The schema of `Migrations`
 * must be in place. Dies on options out of range (a configuration bug).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: (options?: Options) => Effect.Effect<Context.Context<Services | Operator>, never, SqlClient.SqlClient> =
  internal.make

/**
 * The four storage services (and the `Operator` view) over the `SqlClient` in context. The schema
 * must already be migrated (`Migrations.runSqlite` / `Migrations.runPg`;
 * `layerSqlite` and `layerPg` do it).
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: (options?: Options) => Layer.Layer<Services | Operator, never, SqlClient.SqlClient> = internal.layer

/**
 * Options of `layerSqlite`.
 *
 * @since 0.1.0
 * @category options
 */
export interface SqliteOptions extends Options {
  /** A file path (its directory is created if missing) or `":memory:"`. */
  readonly filename: string
  /** How long a write waits for another process's lock before failing (default 5 seconds). */
  readonly busyTimeout?: Duration.DurationInput | undefined
  /**
   * `PRAGMA synchronous`. `NORMAL` (the default): an acknowledged push
   * survives a crash of the process, not necessarily of the machine (the
   * WAL is synced at checkpoints). `FULL`: it also survives a power loss
   * (the WAL is synced at every commit: once per group of pushes). See
   * SECURITY.md.
   */
  readonly synchronous?: "OFF" | "NORMAL" | "FULL" | "EXTRA" | undefined
}

/**
 * SQLite storage: opens the database (WAL journal, `synchronous = NORMAL`,
 * a busy timeout), migrates it, and provides the four storage services (and
 * the `Operator` view) plus the `SqlClient` / `SqliteClient` they run on. One process per database
 * file (use Postgres to run several servers); fails with a `StorageError`
 * when the file cannot be opened, configured or migrated.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerSqlite: (
  options: SqliteOptions
) => Layer.Layer<Services | Operator | SqlClient.SqlClient | SqliteClient.SqliteClient, StorageError.StorageError> =
  internal.layerSqlite

/**
 * Options of `layerPg`: the `PgClient` options, and the family's own.
 *
 * @since 0.1.0
 * @category options
 */
export interface PgOptions extends PgClient.PgClientConfig, Options {}

/**
 * Postgres storage: connects a pool, migrates (safe from several processes
 * at once), and provides the four storage services (and the `Operator`
 * view) plus the `SqlClient` / `PgClient` they run on. Fails with a `StorageError` naming the URL with
 * its password as `***` when the database cannot be reached; a connection
 * attempt gives up after `connectTimeout` (10 seconds unless given), so
 * requests during an outage answer `503 unavailable` instead of waiting.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerPg: (
  options: PgOptions
) => Layer.Layer<Services | Operator | SqlClient.SqlClient | PgClient.PgClient, StorageError.StorageError> = internal.layerPg
