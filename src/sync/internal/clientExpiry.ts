/**
 * The client expiry job (`ClientExpiry`): batches of `Clients.expire`, each
 * its own `SyncStorage` transaction, every interval.
 *
 * @internal
 */
import * as Config from "effect/Config"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Metrics from "../../Metrics.js"
import type { Options } from "../ClientExpiry.js"
import { Clients } from "../Clients.js"
import { SyncStorage } from "../SyncStorage.js"

export const DEFAULT_TTL: Duration.Duration = Duration.days(30)

/** The options with their defaults; dies (a configuration bug) on values out of range. */
const resolve = (options: Options) =>
  Effect.suspend(() => {
    const ttl = Duration.decode(options.ttl ?? DEFAULT_TTL)
    const interval = options.interval === undefined
      ? Duration.min(Duration.unsafeDivide(ttl, 10), Duration.hours(1))
      : Duration.decode(options.interval)
    const batchSize = options.batchSize ?? 500
    const maxBatches = options.maxBatches ?? 10
    if (!Duration.isFinite(ttl) || Duration.toMillis(ttl) <= 0) return Effect.dieMessage("ClientExpiry: ttl must be a positive, finite duration")
    if (Duration.toMillis(interval) <= 0) return Effect.dieMessage("ClientExpiry: interval must be positive")
    if (!Number.isSafeInteger(batchSize) || batchSize < 1) return Effect.dieMessage(`ClientExpiry: batchSize must be a positive integer, got ${batchSize}`)
    if (!Number.isSafeInteger(maxBatches) || maxBatches < 1) return Effect.dieMessage(`ClientExpiry: maxBatches must be a positive integer, got ${maxBatches}`)
    return Effect.succeed({ ttl: Duration.toMillis(ttl), interval, batchSize, maxBatches })
  })

export const runOnce = (options: Options = {}) =>
  Effect.gen(function*() {
    const { batchSize, maxBatches, ttl } = yield* resolve(options)
    const storage = yield* SyncStorage
    const clients = yield* Clients
    let removed = 0
    for (let i = 0; i < maxBatches; i++) {
      const now = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
      const n = yield* storage.transaction(clients.expire(now - ttl, batchSize, now))
      removed += n
      if (n < batchSize) break
    }
    if (removed > 0) {
      yield* Metric.incrementBy(Metrics.clientsExpired, removed)
      yield* Effect.logInfo(`client expiry: ${removed} client record(s) expired`)
    }
    const counts = yield* clients.counts
    yield* Metric.set(Metrics.clientRecords, counts.clients)
    return removed
  }).pipe(Effect.withSpan("ClientExpiry.run", { captureStackTrace: false }))

export const layer = (options: Options = {}): Layer.Layer<never, never, SyncStorage | Clients> =>
  Layer.scopedDiscard(Effect.gen(function*() {
    const { interval } = yield* resolve(options)
    const run = runOnce(options).pipe(
      Effect.catchAllCause((cause) => Effect.logWarning("client expiry failed; retried at the next interval", cause))
    )
    yield* Effect.forkScoped(Effect.repeat(Effect.delay(run, interval), Schedule.forever))
  }))

export const layerConfig = (options: Options = {}) =>
  Layer.unwrapEffect(Effect.gen(function*() {
    const ttl = yield* Config.option(Config.duration("CLIENT_TTL"))
    const interval = yield* Config.option(Config.duration("CLIENT_EXPIRY_INTERVAL"))
    return layer({
      ...options,
      ttl: options.ttl ?? Option.getOrUndefined(ttl),
      interval: options.interval ?? Option.getOrUndefined(interval)
    })
  }))
