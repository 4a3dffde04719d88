/**
 * The server's metrics (Effect `Metric`s) and their Prometheus text
 * exposition at `GET {prefix}/metrics`.
 *
 * | metric | type | what |
 * | --- | --- | --- |
 * | `mizu_push_requests_total` | counter | push requests answered 200 |
 * | `mizu_mutations_total{result}` | counter | mutations by result: ok, duplicate, rejected, unknown_mutation, invalid_args, out_of_order |
 * | `mizu_pull_pages_total` | counter | pull pages served |
 * | `mizu_snapshots_total` | counter | snapshots served |
 * | `mizu_repair_ranges_total` | counter | range checksums served to clients repairing a checksum mismatch (`POST /_sync/ranges`) |
 * | `mizu_repair_rows_total` | counter | rows served to repair ranges that differ (`POST /_sync/rows`) |
 * | `mizu_repair_mismatches_total` | counter | whole-scope range requests: a client's checksum differed from the server's |
 * | `mizu_log_compactions_total` | counter | scope compactions run (`LogCompaction`, `RETENTION_MODE=compact`) |
 * | `mizu_log_compacted_changes_total` | counter | changes folded into later changes of the same row |
 * | `mizu_storage_errors_total` | counter | requests answered 503 |
 * | `mizu_pokes_sent_total` | counter | POKE frames written to sessions |
 * | `mizu_live_sessions` | gauge | open live sessions on this process |
 * | `mizu_slow_consumer_closes_total` | counter | sessions closed as slow consumers |
 * | `mizu_clients_expired_total` | counter | client records removed by the expiry job (`ClientExpiry`) |
 * | `mizu_clients` | gauge | client records in the ledger, as the expiry job or the operator metrics job last counted them |
 * | `mizu_scopes` | gauge | scopes with a log, as the operator metrics job (`OperatorMetrics`) last counted them |
 * | `mizu_rows` | gauge | live rows of all scopes, as the operator metrics job last counted them |
 * | `mizu_log_changes` | gauge | changes kept in the logs of all scopes, as the operator metrics job last counted them |
 * | `mizu_pubsub_dropped_total{reason}` | counter | live messages (pokes, broadcasts, presence) this process did not hand to the Redis / Postgres pub/sub: `queue_full` (the publish queue was full), `publish_failed` (the pub/sub failed or did not answer in time), `too_large` (over the transport's limit) |
 *
 * Every value is this process's own since it started (nothing is shared
 * between processes), and a series first appears when it is first updated.
 * The storage gauges (`mizu_clients`, `mizu_scopes`, `mizu_rows`,
 * `mizu_log_changes`) are read from storage, so they count every process's
 * data. There are no per-scope or per-client series: their number would
 * grow without bound with the data (the operator view, `AdminHttp`, lists
 * them instead).
 *
 * @since 0.1.0
 */
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as MetricState from "effect/MetricState"

/**
 * `mizu_push_requests_total`: push requests answered 200, whatever their
 * mutations' results.
 *
 * @since 0.1.0
 * @category metrics
 */
export const pushRequests = Metric.counter("mizu_push_requests_total", { description: "push requests answered 200" })
/**
 * `mizu_mutations_total{result}`: mutations of answered pushes by result (`ok`,
 * `duplicate`, or the error code); a retry counts as `duplicate`, not again
 * as its first result. Updated through `mutationResult`.
 *
 * @since 0.1.0
 * @category metrics
 */
export const mutations = Metric.counter("mizu_mutations_total", { description: "mutations by result" })
/**
 * `mizu_pull_pages_total`: pull pages read for a request (one per pull, not
 * per change).
 *
 * @since 0.1.0
 * @category metrics
 */
export const pullPages = Metric.counter("mizu_pull_pages_total", { description: "pull pages served" })
/**
 * `mizu_snapshots_total`: scope snapshots read for a request.
 *
 * @since 0.1.0
 * @category metrics
 */
export const snapshots = Metric.counter("mizu_snapshots_total", { description: "snapshots served" })
/**
 * `mizu_repair_ranges_total`: ranges whose checksum was served for a repair
 * (a client found its checksum differs from the server's; a top-level
 * request, without `from` and `to`, is one mismatch).
 *
 * @since 0.1.0
 * @category metrics
 */
export const repairRanges = Metric.counter("mizu_repair_ranges_total", { description: "range checksums served for repairs" })
/**
 * `mizu_repair_mismatches_total`: repairs started (a ranges request over a
 * whole scope: a client's checksum differed from the server's).
 *
 * @since 0.1.0
 * @category metrics
 */
export const repairMismatches = Metric.counter("mizu_repair_mismatches_total", { description: "checksum mismatches reported by repairing clients" })
/**
 * `mizu_repair_rows_total`: rows served to repair the ranges that differ.
 *
 * @since 0.1.0
 * @category metrics
 */
export const repairRows = Metric.counter("mizu_repair_rows_total", { description: "rows served for repairs" })
/**
 * `mizu_log_compactions_total`: scope compactions run by the job (`LogCompaction`).
 *
 * @since 0.1.0
 * @category metrics
 */
export const compactions = Metric.counter("mizu_log_compactions_total", { description: "scope compactions run" })
/**
 * `mizu_log_compacted_changes_total`: changes folded into later changes of the same row by compaction.
 *
 * @since 0.1.0
 * @category metrics
 */
export const compactedChanges = Metric.counter("mizu_log_compacted_changes_total", { description: "changes removed by compaction" })
/**
 * `mizu_storage_errors_total`: push, pull and snapshot requests that met a
 * storage failure, answered `503 unavailable`.
 *
 * @since 0.1.0
 * @category metrics
 */
export const storageErrors = Metric.counter("mizu_storage_errors_total", { description: "requests answered 503" })
/**
 * `mizu_pokes_sent_total`: POKE frames written to sessions of this process;
 * conflated pokes (a newer one replacing one not yet sent) count once.
 *
 * @since 0.1.0
 * @category metrics
 */
export const pokesSent = Metric.counter("mizu_pokes_sent_total", { description: "POKE frames written to sessions" })
/**
 * `mizu_live_sessions`: live sessions open on this process now (a gauge:
 * up at the upgrade, down when the session ends).
 *
 * @since 0.1.0
 * @category metrics
 */
export const sessionsOpen = Metric.gauge("mizu_live_sessions", { description: "open live sessions on this process" })
/**
 * `mizu_slow_consumer_closes_total`: sessions closed with
 * `CLOSE {reason: "slow_consumer"}` (code 4008).
 *
 * @since 0.1.0
 * @category metrics
 */
export const slowConsumerCloses = Metric.counter("mizu_slow_consumer_closes_total", {
  description: "sessions closed as slow consumers"
})

/**
 * `mizu_clients_expired_total`: client records this process's expiry job
 * removed (each leaves a tombstone; see `Clients`).
 *
 * @since 0.1.0
 * @category metrics
 */
export const clientsExpired = Metric.counter("mizu_clients_expired_total", { description: "client records removed by the expiry job" })
/**
 * `mizu_clients`: client records in the ledger (all processes' clients: it
 * is read from storage), as the expiry job last counted them.
 *
 * @since 0.1.0
 * @category metrics
 */
export const clientRecords = Metric.gauge("mizu_clients", { description: "client records in the ledger" })
/**
 * `mizu_scopes`: scopes with a log (read from storage by `OperatorMetrics`).
 *
 * @since 0.1.0
 * @category metrics
 */
export const scopes = Metric.gauge("mizu_scopes", { description: "scopes with a log" })
/**
 * `mizu_rows`: live rows of all scopes (read from storage by `OperatorMetrics`).
 *
 * @since 0.1.0
 * @category metrics
 */
export const rows = Metric.gauge("mizu_rows", { description: "live rows of all scopes" })
/**
 * `mizu_log_changes`: changes kept in the logs of all scopes, above their
 * floors (read from storage by `OperatorMetrics`).
 *
 * @since 0.1.0
 * @category metrics
 */
export const logChanges = Metric.gauge("mizu_log_changes", { description: "changes kept in the logs of all scopes" })
/**
 * `mizu_pubsub_dropped_total{reason}`: live messages this process did not hand
 * to the pub/sub (`queue_full`, `publish_failed`, `too_large`): no session
 * gets them (a missed poke is caught up by the next pull). Updated through
 * `pubsubDrop`.
 *
 * @since 0.1.0
 * @category metrics
 */
export const pubsubDropped = Metric.counter("mizu_pubsub_dropped_total", {
  description: "live messages not handed to the pub/sub, by reason"
})

/**
 * Count `n` live messages dropped on their way to the pub/sub, under `reason`.
 *
 * @since 0.1.0
 * @category metrics
 */
export const pubsubDrop = (reason: "queue_full" | "publish_failed" | "too_large", n = 1) =>
  Metric.incrementBy(Metric.tagged(pubsubDropped, "reason", reason), n)

/**
 * Count one mutation result under `mizu_mutations_total{result}`.
 *
 * @since 0.1.0
 * @category metrics
 */
export const mutationResult = (result: string) => Metric.increment(Metric.tagged(mutations, "result", result))

const escapeLabel = (value: string) => value.replace(/\\/g, "\\\\").replace(/"/g, "\\\"").replace(/\n/g, "\\n")
const metricName = (name: string) => name.replace(/[^a-zA-Z0-9_:]/g, "_")

/**
 * Every metric of the process (Effect's own `effect_fiber_*` too) in the
 * Prometheus text format, version 0.0.4: counters, gauges and histograms;
 * other metric kinds are left out.
 *
 * @since 0.1.0
 * @category metrics
 */
export const prometheus: Effect.Effect<string> = Effect.map(Metric.snapshot, (pairs) => {
  const families = new Map<string, { type: string; help: string | undefined; lines: Array<string> }>()
  for (const pair of pairs) {
    const name = metricName(pair.metricKey.name)
    const labels = pair.metricKey.tags.map((t) => `${metricName(t.key)}="${escapeLabel(t.value)}"`)
    const fmt = (suffix: string, extra: ReadonlyArray<string>, value: number | bigint) => {
      const all = [...labels, ...extra]
      return `${name}${suffix}${all.length === 0 ? "" : `{${all.join(",")}}`} ${String(value)}`
    }
    const state = pair.metricState
    let type: string
    const lines: Array<string> = []
    if (MetricState.isCounterState(state)) {
      type = "counter"
      lines.push(fmt("", [], state.count))
    } else if (MetricState.isGaugeState(state)) {
      type = "gauge"
      lines.push(fmt("", [], state.value))
    } else if (MetricState.isHistogramState(state)) {
      type = "histogram"
      for (const [bound, count] of state.buckets) lines.push(fmt("_bucket", [`le="${bound === Infinity ? "+Inf" : bound}"`], count))
      lines.push(fmt("_sum", [], state.sum), fmt("_count", [], state.count))
    } else {
      continue
    }
    const family = families.get(name) ?? { type, help: pair.metricKey.description._tag === "Some" ? pair.metricKey.description.value : undefined, lines: [] }
    family.lines.push(...lines)
    families.set(name, family)
  }
  const out: Array<string> = []
  for (const [name, family] of families) {
    if (family.help !== undefined) out.push(`# HELP ${name} ${family.help}`)
    out.push(`# TYPE ${name} ${family.type}`, ...family.lines)
  }
  return out.join("\n") + "\n"
})

/**
 * `GET {prefix}/metrics` (default `/_sync/metrics`): `prometheus` as
 * `text/plain; version=0.0.4`. Unauthenticated: do not expose it publicly.
 *
 * @since 0.1.0
 * @category constructors
 */
export const router = (prefix: `/${string}` = "/_sync") =>
  HttpRouter.empty.pipe(
    HttpRouter.get(
      `${prefix}/metrics`,
      Effect.map(prometheus, (text) => HttpServerResponse.text(text, { contentType: "text/plain; version=0.0.4; charset=utf-8" }))
    )
  )
