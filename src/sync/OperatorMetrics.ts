/**
 * The job that samples the storage-wide gauges of the operator view
 * (`Operator.totals`) into the metrics: `mizu_scopes`, `mizu_rows`,
 * `mizu_log_changes` and `mizu_clients` (see `Metrics`). Aggregates only:
 * no per-scope or per-client series, whose number would grow without bound.
 *
 * Bounded work: one read (one statement of five `COUNT(*)`s on the SQL
 * families) per interval, never two at once (the next run starts an
 * interval after the previous one ended), each given at most `timeout`.
 * A run counts whole tables, so keep the interval long on big databases.
 *
 * Configuration: `OPERATOR_METRICS_INTERVAL` (an Effect duration such as
 * `60 seconds`; default `DEFAULT_INTERVAL`). Without an `Operator` in
 * context (a storage family of an app's own) the job does nothing.
 *
 * @since 0.1.0
 */
import type * as ConfigError from "effect/ConfigError"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import * as internal from "./internal/operatorMetrics.js"
import type { Totals } from "./Operator.js"
import type { StorageError } from "./StorageError.js"

/**
 * How often the gauges are sampled by default: 60 seconds.
 *
 * @since 0.1.0
 * @category constants
 */
export const DEFAULT_INTERVAL: Duration.Duration = internal.DEFAULT_INTERVAL

/**
 * Options of the job.
 *
 * @since 0.1.0
 * @category options
 */
export interface Options {
  /** How often the gauges are sampled. Default `DEFAULT_INTERVAL`. */
  readonly interval?: Duration.DurationInput | undefined
  /** How long one sample may take before it is given up (and logged). Default: the interval, at most 30 seconds. */
  readonly timeout?: Duration.DurationInput | undefined
}

/**
 * One sample: read `Operator.totals` and set the gauges; the totals read,
 * or `undefined` when no `Operator` is in context (nothing is set then).
 *
 * @since 0.1.0
 * @category constructors
 */
export const runOnce: Effect.Effect<Totals | undefined, StorageError> = internal.runOnce

/**
 * The job as a scoped fiber: a sample at start, then one every `interval`
 * after the previous ended, until the layer is released. A failed or timed
 * out sample is logged and the gauges keep their last values; it never
 * stops the job.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: (options?: Options) => Layer.Layer<never> = internal.layer

/**
 * `layer` with `OPERATOR_METRICS_INTERVAL` read from `Config` (the `options` given win).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig: (options?: Options) => Layer.Layer<never, ConfigError.ConfigError> = internal.layerConfig
