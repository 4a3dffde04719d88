/**
 * The job that garbage-collects the dedupe ledger (`Clients`): a client not
 * seen (no push naming its id) for `ttl` loses its record, and keeps a
 * tombstone of its last id and owner, so a mutation it pushed before still
 * answers `duplicate` when it comes back (exactly once holds; see `Clients`
 * for what is lost).
 *
 * Bounded work: a run removes at most `batchSize` clients per transaction
 * and at most `maxBatches` transactions; no lock is held between them. Safe
 * with any number of processes on one Postgres database (each takes other
 * rows: `FOR UPDATE SKIP LOCKED`) and on SQLite (its writers are serialized).
 *
 * Configuration: `CLIENT_TTL` (an Effect duration such as `30 days` or
 * `12 hours`; default 30 days) and `CLIENT_EXPIRY_INTERVAL` (default
 * min(TTL / 10, 1 hour)).
 *
 * @since 0.1.0
 */
import type * as ConfigError from "effect/ConfigError"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import type { Clients } from "./Clients.js"
import * as internal from "./internal/clientExpiry.js"
import type { StorageError } from "./StorageError.js"
import type { SyncStorage } from "./SyncStorage.js"

/**
 * The default inactivity period after which a client's record expires.
 *
 * @since 0.1.0
 * @category constants
 */
export const DEFAULT_TTL: Duration.Duration = internal.DEFAULT_TTL

/**
 * Options of the job.
 *
 * @since 0.1.0
 * @category options
 */
export interface Options {
  /** How long a client may stay away before its record expires. Default `DEFAULT_TTL`. */
  readonly ttl?: Duration.DurationInput | undefined
  /** How often the job runs. Default min(ttl / 10, 1 hour). */
  readonly interval?: Duration.DurationInput | undefined
  /** Clients removed per transaction (default 500). */
  readonly batchSize?: number | undefined
  /** Transactions per run (default 10). */
  readonly maxBatches?: number | undefined
}

/**
 * One run: remove the clients not seen for `ttl` (bounded as the module
 * header says), update `mizu_clients_expired_total` and `mizu_clients`, and
 * return how many were removed.
 *
 * @since 0.1.0
 * @category constructors
 */
export const runOnce: (options?: Options) => Effect.Effect<number, StorageError, SyncStorage | Clients> = internal.runOnce

/**
 * The job as a scoped fiber: a run every `interval` (the first one interval
 * after start) until the layer is released. A failed run is logged and
 * retried at the next interval; it never stops the job.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: (options?: Options) => Layer.Layer<never, never, SyncStorage | Clients> = internal.layer

/**
 * `layer` with `CLIENT_TTL` and `CLIENT_EXPIRY_INTERVAL` read from `Config`
 * (the `options` given win).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig: (options?: Options) => Layer.Layer<never, ConfigError.ConfigError, SyncStorage | Clients> =
  internal.layerConfig
