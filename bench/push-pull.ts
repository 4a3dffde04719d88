/**
 * Push and pull through the real HTTP server, against a hand-written baseline
 * measured in the same run.
 *
 * Servers (each a child process on 127.0.0.1, one core to itself; the load
 * generator runs in this process, on the other core):
 * - ours: `Server.layer` on `NodeHttpServer`, SQLite file (WAL), tracing on
 *   (the default) and tracing off;
 * - baseline: `node:http` + `better-sqlite3` doing the same transaction
 *   (bench/servers/baseline-http.ts).
 * Every server gets a fresh database file, migrated by our SQL layer, with a
 * pre-loaded scope of changes to pull from.
 *
 * Workloads (same generator, same bodies, for every server):
 * - push-1: 32 clients in flight, each its own client_id numbering 1, 2, 3 …,
 *   one `todo/create` per request;
 * - push-50: the same with 50 mutations per request;
 * - pull: 32 in flight, 100-change pages at random cursors of a 10k-change scope.
 * The three servers run side by side; each workload is measured in short
 * slices alternating between them (the machine is shared and noisy), and the
 * median slice is reported with the ratio ours / baseline.
 *
 * Every slice opens its 32 keep-alive connections before its clock starts
 * (one pull each), so it measures the steady state; `push-tail` measures
 * connections opened under load, where the first request of a late
 * connection waits up to ~1 s on either server. `http-floor` is our HTTP
 * path (routes, body read, Schema decode, encode) over an engine that costs
 * nothing: what no engine work can beat.
 *
 * Then pull latency (one request at a time) for a 100-change page at random
 * cursors, with 1k and with 1M changes in the log (separate database files,
 * bulk-loaded with better-sqlite3), round robin over ours and the baseline on
 * both files: p50/p99 and the ratio 1M / 1k, which should be ~1 (an indexed
 * range read).
 *
 * Usage: npm run bench -- push-pull [--quick]
 */
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import * as Child from "./lib/child.js"
import * as Db from "./lib/db.js"
import * as Load from "./lib/load.js"
import { printTable, writeResult } from "./lib/results.js"
import { fmt, median, ratio, round, summarize } from "./lib/stats.js"

const quick = process.argv.includes("--quick")
const config = {
  workers: 32,
  warmupMs: quick ? 500 : 1000,
  sliceMs: quick ? 1000 : 1200,
  slices: 3,
  pullScopeRows: 10_000,
  latencyPulls: quick ? 300 : 600,
  latencyWarmup: 100,
  bigRows: quick ? 200_000 : 1_000_000,
  smallRows: 1_000
}

type Kind = "ours" | "ours-notrace" | "ours-full" | "http-floor" | "baseline"
const kinds: ReadonlyArray<Kind> = ["ours", "ours-notrace", "ours-full", "http-floor", "baseline"]
const label: Record<Kind, string> = {
  ours: "ours (tracing on)",
  "ours-notrace": "ours (tracing: false)",
  "ours-full": "ours (tracing: false, synchronous FULL)",
  "http-floor": "our HTTP path over a free engine (floor)",
  baseline: "baseline node:http + better-sqlite3"
}
/** The floor answers pushes only (its engine stores nothing to pull). */
const kindsFor = (w: Workload): ReadonlyArray<Kind> => w === "pull" ? kinds.filter((k) => k !== "http-floor") : kinds

const tmp = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "mizu-bench-"))
process.on("exit", () => NodeFs.rmSync(tmp, { recursive: true, force: true }))
// Bounded in time whatever happens.
setTimeout(() => {
  console.error("push-pull: global timeout (6 min), giving up")
  process.exit(2)
}, 6 * 60_000).unref()

const startServer = (kind: Kind, filename: string) =>
  kind === "baseline"
    ? Child.start("servers/baseline-http.ts", { filename })
    : kind === "http-floor"
    ? Child.start("servers/http-floor.ts", {})
    : Child.start("servers/mizu.ts", { filename, tracing: kind === "ours", ...(kind === "ours-full" ? { synchronous: "FULL" } : {}) })

let dbCounter = 0
const freshDb = async (pullRows: number) => {
  const filename = NodePath.join(tmp, `db-${++dbCounter}.sqlite`)
  await Db.migrate(filename)
  if (pullRows > 0) Db.bulkLoad(filename, "pull", pullRows)
  return filename
}

// --- workloads ----------------------------------------------------------------

let runCounter = 0

/** Every connection opened before a slice's clock starts (one pull each): the slices measure the steady state. */
const connectionWarmup = { path: "/_sync/pull", body: JSON.stringify({ scope: "warm", cursor: 0 }) }

const pushLoad = (port: number, batch: number, durationMs: number) => {
  const run = ++runCounter
  const bodies = (w: number, seq: number) => {
    const clientId = `r${run}-c${w}`
    const mutations = Array.from({ length: batch }, (_, k) => {
      const id = seq * batch + k + 1
      return { id, name: "todo/create", scope: "bench", args: { id: `${clientId}-${id}`, title: `buy milk ${id}` } }
    })
    return JSON.stringify({ client_id: clientId, mutations })
  }
  return Load.run({
    port,
    path: "/_sync/push",
    workers: config.workers,
    maxPerWorker: 1_000_000,
    durationMs,
    body: bodies,
    warmup: connectionWarmup,
    check: (response) => {
      const results = (JSON.parse(response.body) as { results: Array<{ ok: boolean; duplicate?: boolean }> }).results
      if (results.length !== batch) return `expected ${batch} results, got ${results.length}`
      const bad = results.find((r) => !r.ok || r.duplicate === true)
      return bad === undefined ? undefined : `unexpected result ${JSON.stringify(bad)}`
    }
  })
}

const pullBody = (rows: number, clientId = "bulk-client") => () =>
  JSON.stringify({ scope: "pull", cursor: Math.floor(Math.random() * (rows - 100)), limit: 100, client_id: clientId })

const checkPage = (response: Load.Response) => {
  const body = JSON.parse(response.body) as { changes: Array<unknown>; has_more: boolean; last_mutation_id?: number }
  return body.changes.length === 100 && body.last_mutation_id === 1 ? undefined : `bad page: ${response.body.slice(0, 200)}`
}

const pullLoad = (port: number, durationMs: number, workers = config.workers) =>
  Load.run({
    port,
    path: "/_sync/pull",
    workers,
    maxPerWorker: 1_000_000,
    durationMs,
    body: pullBody(config.pullScopeRows),
    warmup: connectionWarmup,
    check: checkPage
  })

interface Throughput {
  readonly reqPerSec: number
  readonly mutPerSec: number
  readonly p50Ms: number
  readonly p99Ms: number
  readonly requests: number
  readonly errors: number
}

const toThroughput = (r: Load.LoadResult, perRequest: number): Throughput => {
  const s = summarize(r.latencies)
  if (r.errors > 0) console.error(`  ${r.errors} errors, first: ${r.firstError}`)
  return {
    reqPerSec: round(r.reqPerSec, 0),
    mutPerSec: round(r.reqPerSec * perRequest, 0),
    p50Ms: s.p50,
    p99Ms: s.p99,
    requests: r.requests,
    errors: r.errors
  }
}

// --- throughput -----------------------------------------------------------------
//
// The machine is shared and noisy, so the servers run side by side (each idle
// while another is measured) and are measured in short alternating slices;
// each figure is the median slice, and the ratio is taken between medians.

type Workload = "push-1" | "push-50" | "pull"
const workloads: ReadonlyArray<Workload> = ["push-1", "push-50", "pull"]
const perRequest: Record<Workload, number> = { "push-1": 1, "push-50": 50, pull: 100 }

const runWorkload = (w: Workload, port: number, ms: number) =>
  w === "pull" ? pullLoad(port, ms) : pushLoad(port, w === "push-1" ? 1 : 50, ms)

console.log(
  `push-pull: ${config.workers} in flight; per workload ${config.slices} alternating slices of ${config.sliceMs} ms per server after ${config.warmupMs} ms warm-up`
)
const servers = {} as Record<Kind, Child.Child>
for (const kind of kinds) servers[kind] = await startServer(kind, await freshDb(config.pullScopeRows))
const portOf = (kind: Kind) => servers[kind].ready["port"] as number

const throughput: Record<string, unknown> = {}
const rows: Array<Array<string>> = [["workload", "server", "req/s", "mutations|changes/s", "p50 ms", "p99 ms", "ours/baseline", "range over slices"]]
for (const w of workloads) {
  const these = kindsFor(w)
  for (const kind of these) await runWorkload(w, portOf(kind), config.warmupMs)
  const slices: Record<Kind, Array<Throughput>> = { ours: [], "ours-notrace": [], "ours-full": [], "http-floor": [], baseline: [] }
  for (let i = 0; i < config.slices; i++) {
    const order = i % 2 === 0 ? these : [...these].reverse()
    for (const kind of order) slices[kind].push(toThroughput(await runWorkload(w, portOf(kind), config.sliceMs), perRequest[w]))
  }
  const med = (kind: Kind): Throughput => {
    const all = slices[kind]
    const m = median(all.map((t) => t.reqPerSec))
    const nearest = all.reduce((best, t) => (Math.abs(t.reqPerSec - m) < Math.abs(best.reqPerSec - m) ? t : best))
    return { ...nearest, reqPerSec: round(m, 0), mutPerSec: round(m * perRequest[w], 0) }
  }
  // The ratio within each slice pair, to show how much the noise moves it.
  const sliceRatios = (kind: Kind) => slices[kind].map((t, i) => ratio(t.reqPerSec, slices.baseline[i].reqPerSec))
  const base = med("baseline")
  for (const kind of these) {
    const t = med(kind)
    const rs = sliceRatios(kind)
    rows.push([
      w,
      label[kind],
      fmt(t.reqPerSec),
      fmt(t.mutPerSec),
      String(t.p50Ms),
      String(t.p99Ms),
      kind === "baseline" ? "1.00" : ratio(t.reqPerSec, base.reqPerSec).toFixed(2),
      kind === "baseline" ? "" : `${Math.min(...rs).toFixed(2)}..${Math.max(...rs).toFixed(2)}`
    ])
    console.log(`  ${w.padEnd(8)} ${label[kind].padEnd(38)} slices req/s: ${slices[kind].map((t) => fmt(t.reqPerSec)).join(", ")}`)
  }
  throughput[w] = {
    ours: med("ours"),
    ours_notrace: med("ours-notrace"),
    baseline: base,
    ratio_ours: ratio(med("ours").reqPerSec, base.reqPerSec),
    ratio_ours_notrace: ratio(med("ours-notrace").reqPerSec, base.reqPerSec),
    ...(these.includes("http-floor") ? { http_floor: med("http-floor"), ratio_http_floor: ratio(med("http-floor").reqPerSec, base.reqPerSec) } : {}),
    ours_full: med("ours-full"),
    ratio_ours_full: ratio(med("ours-full").reqPerSec, base.reqPerSec),
    full_over_normal: ratio(med("ours-full").reqPerSec, med("ours-notrace").reqPerSec),
    slice_ratios: { ours: sliceRatios("ours"), ours_notrace: sliceRatios("ours-notrace"), ours_full: sliceRatios("ours-full") },
    slices
  }
}
for (const kind of kinds) await servers[kind].stop()
console.log("\nThroughput (median slice):")
printTable(rows)
for (const w of workloads) {
  const t = throughput[w] as { readonly full_over_normal: number }
  console.log(`  ${w}: synchronous FULL / NORMAL (both tracing: false) = ${t.full_over_normal.toFixed(2)}`)
}

// --- pull latency at 1k vs 1M changes -----------------------------------------------
//
// Four servers side by side (ours and the baseline, each on the 1k and on the
// 1M database); one pull at a time, round robin over the four, so each sees
// the same machine.

console.log(`\nPull latency, one request at a time, 100-change pages at random cursors (${config.latencyPulls} pulls each):`)
const small = await freshDb(config.smallRows)
const bigStart = performance.now()
const big = await freshDb(config.bigRows)
const bigSize = NodeFs.statSync(big).size
console.log(`  loaded ${fmt(config.bigRows)} changes in ${fmt(performance.now() - bigStart)} ms (${fmt(bigSize / 1024 / 1024, 1)} MiB)`)

const targets = [
  { kind: "ours" as const, size: "small" as const, rows: config.smallRows, filename: small },
  { kind: "ours" as const, size: "big" as const, rows: config.bigRows, filename: big },
  { kind: "baseline" as const, size: "small" as const, rows: config.smallRows, filename: small },
  { kind: "baseline" as const, size: "big" as const, rows: config.bigRows, filename: big }
]
const latencyServers = await Promise.all(targets.map((t) => startServer(t.kind, t.filename)))
const latencyClients = latencyServers.map((s) => Load.client(s.ready["port"] as number, 1))
const samples = targets.map(() => [] as Array<number>)
let latencyErrors = 0
for (let i = 0; i < config.latencyWarmup + config.latencyPulls; i++) {
  for (let k = 0; k < targets.length; k++) {
    const t0 = performance.now()
    const response = await latencyClients[k].post("/_sync/pull", pullBody(targets[k].rows)())
    const elapsed = performance.now() - t0
    if (response.status !== 200 || checkPage(response) !== undefined) latencyErrors++
    if (i >= config.latencyWarmup) samples[k].push(elapsed)
  }
}
for (const c of latencyClients) c.close()
await Promise.all(latencyServers.map((s) => s.stop()))
if (latencyErrors > 0) console.error(`  ${latencyErrors} bad pull responses`)

const latency: Record<string, unknown> = {}
const latRows: Array<Array<string>> = [["server", "rows in log", "p50 ms", "p99 ms", "1M/1k p50", "1M/1k p99"]]
const stat = targets.map((_, k) => summarize(samples[k]))
for (const kind of ["ours", "baseline"] as const) {
  const s = stat[targets.findIndex((t) => t.kind === kind && t.size === "small")]
  const b = stat[targets.findIndex((t) => t.kind === kind && t.size === "big")]
  latRows.push([label[kind], fmt(config.smallRows), String(s.p50), String(s.p99), "", ""])
  latRows.push([label[kind], fmt(config.bigRows), String(b.p50), String(b.p99), ratio(b.p50, s.p50).toFixed(2), ratio(b.p99, s.p99).toFixed(2)])
  latency[kind] = { small: s, big: b, ratio_p50: ratio(b.p50, s.p50), ratio_p99: ratio(b.p99, s.p99) }
}
printTable(latRows)
console.log(
  `  ours/baseline p50: ${ratio(stat[0].p50, stat[2].p50)} at ${fmt(config.smallRows)} rows, ${ratio(stat[1].p50, stat[3].p50)} at ${fmt(config.bigRows)} rows`
)

const file = writeResult("push-pull", {
  config,
  throughput,
  pull_latency: { rows_small: config.smallRows, rows_big: config.bigRows, big_db_bytes: bigSize, errors: latencyErrors, ...latency }
})
console.log(`\nwrote ${NodePath.relative(process.cwd(), file)}`)
process.exit(0)
