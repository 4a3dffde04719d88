/**
 * The change log compaction job (`RETENTION_MODE=compact`): instead of
 * trimming a scope's log past `RETENTION_CHANGES` (which sends readers
 * behind the floor to a snapshot), older changes of the same row are folded
 * into its latest (`ChangeLog.compact`), so a reader far behind pulls fewer
 * changes and never resets. Its view after the compacted log equals the
 * snapshot at the same cursor; the checksums do not move.
 *
 * - Bounded work per run: at most `maxScopes` scopes, each compacted over at
 *   most `maxScan` cursors in a transaction of its own.
 * - Safe from several processes at once (Postgres: one compactor per scope at
 *   a time, by a transaction-scoped advisory lock; appends never wait on it).
 * - Counted by `mizu_log_compactions_total` and `mizu_log_compacted_changes_total`.
 *
 * @since 0.1.0
 */
import type * as ConfigError from "effect/ConfigError"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import type { ChangeLog } from "./ChangeLog.js"
import * as internal from "./internal/logCompaction.js"
import type { StorageError } from "./StorageError.js"

/**
 * Options of the job.
 *
 * @since 0.1.0
 * @category options
 */
export interface Options {
  /** Compact a scope once it has more than this many uncompacted changes; the newest ~90% of it stay as they are. */
  readonly maxChanges: number
  /** Between runs; 1 minute by default. */
  readonly interval?: Duration.DurationInput | undefined
  /** Scopes per run; 100 by default. */
  readonly maxScopes?: number | undefined
  /** Cursors looked at per scope per run; 10,000 by default. */
  readonly maxScan?: number | undefined
}

/**
 * One run: compact the scopes due (see the module header); how many scopes and changes removed.
 *
 * @since 0.1.0
 * @category jobs
 */
export const runOnce: (options: Options) => Effect.Effect<{ readonly scopes: number; readonly removed: number }, StorageError, ChangeLog> =
  internal.runOnce

/**
 * Run the job every `interval` while the layer's scope is open (failures are logged and retried next time).
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: (options: Options) => Layer.Layer<never, never, ChangeLog> = internal.layer

/**
 * The job from configuration: on only with `RETENTION_MODE=compact`, which
 * needs `RETENTION_CHANGES` (the threshold; a start without it fails naming
 * it); `COMPACTION_INTERVAL` optional.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig: (options?: Partial<Options>) => Layer.Layer<never, ConfigError.ConfigError, ChangeLog> = internal.layerConfig
