/**
 * The operator metrics job (`OperatorMetrics`): `Operator.totals` into the
 * storage gauges, every interval, one sample at a time.
 *
 * @internal
 */
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Metrics from "../../Metrics.js"
import { Operator, type Totals } from "../Operator.js"
import type { Options } from "../OperatorMetrics.js"
import type { StorageError } from "../StorageError.js"

export const DEFAULT_INTERVAL: Duration.Duration = Duration.seconds(60)

/** The options with their defaults; dies (a configuration bug) on values out of range. */
const resolve = (options: Options) =>
  Effect.suspend(() => {
    const interval = Duration.decode(options.interval ?? DEFAULT_INTERVAL)
    const timeout = options.timeout === undefined ? Duration.min(interval, Duration.seconds(30)) : Duration.decode(options.timeout)
    if (!Duration.isFinite(interval) || Duration.toMillis(interval) <= 0) {
      return Effect.dieMessage("OperatorMetrics: interval must be a positive, finite duration")
    }
    if (Duration.toMillis(timeout) <= 0) return Effect.dieMessage("OperatorMetrics: timeout must be positive")
    return Effect.succeed({ interval, timeout })
  })

export const runOnce: Effect.Effect<Totals | undefined, StorageError> = Effect.gen(function*() {
  const operator = yield* Effect.serviceOption(Operator)
  if (Option.isNone(operator)) return undefined
  const totals = yield* operator.value.totals
  yield* Metric.set(Metrics.scopes, totals.scopes)
  yield* Metric.set(Metrics.rows, totals.rows)
  yield* Metric.set(Metrics.logChanges, totals.changes)
  yield* Metric.set(Metrics.clientRecords, totals.clients)
  return totals
}).pipe(Effect.withSpan("OperatorMetrics.run", { captureStackTrace: false }))

export const layer = (options: Options = {}): Layer.Layer<never> =>
  Layer.scopedDiscard(Effect.gen(function*() {
    const { interval, timeout } = yield* resolve(options)
    const run = runOnce.pipe(
      Effect.timeoutFail({ duration: timeout, onTimeout: () => `no answer within ${Duration.format(timeout)}` }),
      Effect.catchAllCause((cause) => Effect.logWarning("operator metrics sample failed; retried at the next interval", cause))
    )
    yield* Effect.forkScoped(Effect.repeat(run, Schedule.spaced(interval)))
  }))

export const layerConfig = (options: Options = {}): Layer.Layer<never, ConfigError.ConfigError> =>
  Layer.unwrapEffect(Effect.gen(function*() {
    const interval = yield* Config.option(Config.duration("OPERATOR_METRICS_INTERVAL"))
    return layer({ ...options, interval: options.interval ?? Option.getOrUndefined(interval) })
  }))
