/**
 * The schema of the SQL storage family, as `@effect/sql` migrations, and how
 * to run them safely on SQLite and PostgreSQL.
 *
 * Tables (all prefixed `mizu_` so they can live beside an app's own tables):
 * - `mizu_heads (scope PK, head, floor)`: one row per scope; `head` is the
 *   scope's last cursor, `floor` the highest trimmed cursor. Appending locks
 *   this row until the transaction ends, which is what makes cursors gap-free.
 * - `mizu_changes (scope, cursor, entity, id, op, data, ts)`, primary key
 *   `(scope, cursor)`: the change log; `since` is a range read on that key.
 *   `data` is JSON text, `NULL` for a delete; `ts` is ISO-8601 text.
 * - `mizu_entities (scope, entity, id, data)`, primary key `(scope, entity, id)`.
 * - `mizu_clients (client_id PK, last, owner)` and
 *   `mizu_client_scopes (client_id, scope, last)`, primary key both: the dedupe ledger.
 *   `owner` (from `0002_client_owner`) is the principal id the client id
 *   belongs to, `NULL` while unowned: rows from before that migration, and ids
 *   only the anonymous principal used, are claimed by the next named
 *   principal that pushes with them (see `Clients`).
 * - `mizu_client_failures (client_id, id, code, message)`, primary key
 *   `(client_id, id)` (from `0003_client_failures`): each client's last
 *   failed mutations (`Clients`' window, 100 by default), so that a retry of
 *   one answers its failure again. Only failures are written.
 *
 * Text keys compare bytewise on both databases (SQLite's default `BINARY`,
 * `COLLATE "C"` on Postgres), so `list` orders ids the same everywhere.
 *
 * Running migrations from several processes at once:
 * - Postgres: `@effect/sql`'s migrator locks its table (`LOCK TABLE … ACCESS
 *   EXCLUSIVE`) only once the table exists; creating that table on an empty
 *   database is unguarded, and two processes racing there fail with a unique
 *   violation (reproduced: 5 of 5 rounds failed). `runPg` therefore holds a
 *   session-level `pg_advisory_lock` on one reserved connection around the
 *   whole run, so concurrent runs go one after the other and the later ones
 *   find nothing to do.
 * - SQLite: the migrator's table is created with `IF NOT EXISTS` and its run
 *   is one transaction; the client's busy timeout makes a second process wait.
 *
 * @since 0.1.0
 */
import type * as Migrator from "@effect/sql/Migrator"
import type * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import type * as PgClient from "@effect/sql-pg/PgClient"
import type * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import type * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import type * as StorageError from "../StorageError.js"
import * as internal from "./internal/migrations.js"

/**
 * The name of the table where `@effect/sql` records applied migrations.
 *
 * @since 0.1.0
 * @category constants
 */
export const table: "effect_sql_migrations" = internal.table

/**
 * Every migration of the storage family, in order. New ones are appended, never edited.
 *
 * @since 0.1.0
 * @category constants
 */
export const migrations: Readonly<
  Record<"0001_init" | "0002_client_owner" | "0003_client_failures", Effect.Effect<void, SqlError, SqlClient.SqlClient>>
> = internal.migrations

/**
 * The migrations as `@effect/sql`'s migrators load them.
 *
 * @since 0.1.0
 * @category constants
 */
export const loader: Migrator.Loader = internal.loader

/**
 * Bring a SQLite database up to date. Idempotent; a run that finds the
 * database current does nothing.
 *
 * @since 0.1.0
 * @category constructors
 */
export const runSqlite: Effect.Effect<void, StorageError.StorageError, SqliteClient.SqliteClient | SqlClient.SqlClient> =
  internal.runSqlite

/**
 * Bring a Postgres database up to date. Idempotent, and safe to run from any
 * number of processes at once, even on an empty database: the whole run holds
 * a session-level advisory lock on a reserved connection.
 *
 * @since 0.1.0
 * @category constructors
 */
export const runPg: Effect.Effect<void, StorageError.StorageError, PgClient.PgClient | SqlClient.SqlClient> = internal.runPg

/**
 * Runs `runSqlite` when built.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerSqlite: Layer.Layer<never, StorageError.StorageError, SqliteClient.SqliteClient | SqlClient.SqlClient> =
  internal.layerSqlite

/**
 * Runs `runPg` when built (safe from several processes at once).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerPg: Layer.Layer<never, StorageError.StorageError, PgClient.PgClient | SqlClient.SqlClient> = internal.layerPg
