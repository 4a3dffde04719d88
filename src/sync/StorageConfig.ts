/**
 * Choose the storage family from configuration (Effect `Config`, so from
 * the environment by default):
 *
 * - `DATABASE_URL`
 *   - `memory`: the memory layers (nothing survives a restart);
 *   - `postgres://…` or `postgresql://…`: PostgreSQL (several servers may share it);
 *   - `sqlite:<path>`, `sqlite::memory:` or a plain file path: SQLite;
 *   - unset: SQLite at `./data/mizu.db` (the directory is created).
 *   Any other `scheme://` is a configuration error, so a typo never silently
 *   becomes a file name.
 * - `RETENTION_CHANGES` (optional, a positive integer): keep at most that many
 *   changes per scope; once an append takes a scope past it, the oldest are
 *   trimmed to 90% of it (in the append's transaction). Readers behind the
 *   trimmed part get `cursor_too_old` and reset from a snapshot. Unset: keep
 *   everything.
 * - `SQLITE_SYNCHRONOUS` (`NORMAL`, the default, or `FULL`): on SQLite, what
 *   an acknowledged push survives. `NORMAL`: a crash of the process (WAL);
 *   `FULL`: also a crash of the machine or a power loss (the WAL is synced
 *   at every commit; with group commit that is once per group of pushes).
 *   SECURITY.md states what each promises.
 *
 * @since 0.1.0
 */
import type * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import type * as Either from "effect/Either"
import type * as Layer from "effect/Layer"
import type * as Redacted from "effect/Redacted"
import * as internal from "./internal/storageConfig.js"
import type { Operator } from "./Operator.js"
import type { StorageError } from "./StorageError.js"
import type * as SyncStorage from "./SyncStorage.js"

/**
 * A parsed `DATABASE_URL`.
 *
 * @since 0.1.0
 * @category models
 */
export type Target =
  | { readonly _tag: "Memory" }
  | { readonly _tag: "Sqlite"; readonly filename: string }
  | { readonly _tag: "Postgres"; readonly url: Redacted.Redacted }

/**
 * Parse a `DATABASE_URL` (see the module header); `Left` carries why it is
 * not one. Pure: touches neither the file system nor the network.
 *
 * @since 0.1.0
 * @category conversions
 */
export const parseDatabaseUrl: (input: string) => Either.Either<Target, string> = internal.parseDatabaseUrl

/**
 * The `DATABASE_URL` config, parsed (see the module header); defaults to
 * `./data/mizu.db`. An invalid value fails naming the variable.
 *
 * @since 0.1.0
 * @category constructors
 */
export const databaseTarget: Config.Config<Target> = internal.databaseTarget

/**
 * Wrap a storage family so that its `ChangeLog.append` applies the retention
 * rule of `RETENTION_CHANGES` (one extra `floor` read per append). The SQL
 * layers do this natively (`SqlStorage.Options.maxChangesPerScope`) without
 * the extra read; this is for the others, such as memory. Whatever else
 * the family provides (its `Operator`) is kept as it is.
 *
 * @since 0.1.0
 * @category layers
 */
export const withRetention: (maxChanges: number) => <A, E, R>(
  storage: Layer.Layer<SyncStorage.Services | A, E, R>
) => Layer.Layer<SyncStorage.Services | A, E, R> = internal.withRetention

/**
 * The storage family chosen by `DATABASE_URL`, with `RETENTION_CHANGES`
 * applied, and its `Operator` view. Fails at start with a `ConfigError` naming the variable when a
 * value is invalid, or a `StorageError` when the database cannot be opened,
 * reached or migrated.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig: Layer.Layer<SyncStorage.Services | Operator, ConfigError.ConfigError | StorageError> = internal.layerConfig
