/**
 * The compaction job (`LogCompaction`): every interval, the scopes with more
 * than `maxChanges` uncompacted changes, each compacted in a transaction of
 * its own, bounded per run.
 *
 * @internal
 */
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Metrics from "../../Metrics.js"
import { ChangeLog } from "../ChangeLog.js"
import type { Options } from "../LogCompaction.js"

/** The options with their defaults; dies (a configuration bug) on values out of range. */
const resolve = (options: Options) =>
  Effect.suspend(() => {
    const { maxChanges } = options
    const interval = Duration.decode(options.interval ?? Duration.minutes(1))
    const maxScopes = options.maxScopes ?? 100
    const maxScan = options.maxScan ?? 10_000
    const positive = (name: string, n: number) => Number.isSafeInteger(n) && n >= 1 ? undefined : `LogCompaction: ${name} must be a positive integer, got ${n}`
    const wrong = positive("maxChanges", maxChanges) ?? positive("maxScopes", maxScopes) ?? positive("maxScan", maxScan)
    if (wrong !== undefined) return Effect.dieMessage(wrong)
    if (Duration.toMillis(interval) <= 0) return Effect.dieMessage("LogCompaction: interval must be positive")
    // as trim: keep the newest 90% of maxChanges as they are, so a run is due once every ~maxChanges / 10 changes
    const keep = Math.max(1, maxChanges - Math.floor(maxChanges / 10))
    return Effect.succeed({ maxChanges, keep, interval, maxScopes, maxScan })
  })

export const runOnce = (options: Options) =>
  Effect.gen(function*() {
    const { keep, maxChanges, maxScan, maxScopes } = yield* resolve(options)
    const log = yield* ChangeLog
    const candidates = yield* log.compactionCandidates(maxChanges, maxScopes)
    let removed = 0
    for (const candidate of candidates) {
      const done = yield* log.compact(candidate.scope, candidate.head - keep, maxScan)
      removed += done.removed
    }
    if (candidates.length > 0) {
      yield* Metric.incrementBy(Metrics.compactions, candidates.length)
      yield* Metric.incrementBy(Metrics.compactedChanges, removed)
    }
    return { scopes: candidates.length, removed }
  }).pipe(Effect.withSpan("LogCompaction.run", { captureStackTrace: false }))

export const layer = (options: Options): Layer.Layer<never, never, ChangeLog> =>
  Layer.scopedDiscard(Effect.gen(function*() {
    const { interval } = yield* resolve(options)
    const run = runOnce(options).pipe(
      Effect.catchAllCause((cause) => Effect.logWarning("log compaction failed; retried at the next interval", cause))
    )
    yield* Effect.forkScoped(Effect.repeat(Effect.delay(run, interval), Schedule.forever))
  }))

/** `RETENTION_MODE`: `trim` (the default) or `compact`. */
export const mode: Config.Config<"trim" | "compact"> = Config.literal("trim", "compact")("RETENTION_MODE").pipe(
  Config.withDefault("trim" as const)
)

export const layerConfig = (options: Partial<Options> = {}) =>
  Layer.unwrapEffect(Effect.gen(function*() {
    const retention = yield* mode
    const maxChanges = yield* Config.option(Config.integer("RETENTION_CHANGES"))
    const interval = yield* Config.option(Config.duration("COMPACTION_INTERVAL"))
    const max = options.maxChanges ?? Option.getOrUndefined(maxChanges)
    if (retention !== "compact") return Layer.empty
    if (max === undefined) {
      return yield* Effect.fail(ConfigError.MissingData(["RETENTION_CHANGES"], "RETENTION_MODE=compact needs RETENTION_CHANGES (the number of changes past which a scope is compacted)"))
    }
    yield* Effect.logInfo(`log compaction: scopes over ${max} changes are compacted (RETENTION_MODE=compact)`)
    return layer({ ...options, maxChanges: max, interval: options.interval ?? Option.getOrUndefined(interval) })
  }))
