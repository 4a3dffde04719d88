/**
 * Where the push p99 over HTTP comes from (issue #17 item 3): our server at
 * a git revision (`--rev=`, default the tree before group commit) and today
 * side by side, 32 clients in flight pushing 1 mutation per request for a few
 * seconds each, in alternating rounds; per server the latency percentiles,
 * and for the slow requests (over 10× the p50) when in the run they happened
 * and how many were in flight on the server then.
 *
 * Usage: npm run bench -- push-tail [--rev=<commit>] [--batch=<mutations per push, default 1>] [--quick]
 */
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import * as Child from "./lib/child.js"
import * as Db from "./lib/db.js"
import * as Load from "./lib/load.js"
import * as Patched from "./lib/patched.js"
import { printTable, writeResult } from "./lib/results.js"
import { summarize } from "./lib/stats.js"

const quick = process.argv.includes("--quick")
const rev = process.argv.find((a) => a.startsWith("--rev="))?.slice(6) ?? "cd4aa4f"
const batch = Number(process.argv.find((a) => a.startsWith("--batch="))?.slice(8) ?? 1)
const config = { workers: 32, batch, ms: quick ? 2000 : 4000, rounds: quick ? 2 : 3 }

const tmp = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "mizu-bench-"))
const old = Patched.prepare([], rev)
process.on("exit", () => {
  NodeFs.rmSync(tmp, { recursive: true, force: true })
  old.remove()
})
setTimeout(() => {
  console.error("push-tail: global timeout (4 min), giving up")
  process.exit(2)
}, 4 * 60_000).unref()

let n = 0
const freshDb = async () => {
  const filename = NodePath.join(tmp, `db-${++n}.sqlite`)
  await Db.migrate(filename)
  return filename
}
const servers = {
  before: await Child.start("servers/mizu.ts", { filename: await freshDb(), tracing: false }, { root: old.benchDir }),
  // from source, as the older copy runs: the same loader on both sides
  after: await Child.start("servers/mizu.ts", { filename: await freshDb(), tracing: false }, { source: true }),
  baseline: await Child.start("servers/baseline-http.ts", { filename: await freshDb() })
}

interface Sample {
  readonly start: number
  readonly end: number
}

/**
 * 32 closed-loop clients for `ms`; every request's start and end. `warm`:
 * each client's connection is opened (one pull answered) before the clock
 * starts; cold: the first push of each client opens it, as in push-pull.
 */
const run = async (port: number, ms: number, round: number, label: string, warm: boolean): Promise<Array<Sample>> => {
  const http = Load.client(port, config.workers)
  const samples: Array<Sample> = []
  if (warm) {
    await Promise.all(Array.from({ length: config.workers }, () => http.post("/_sync/pull", JSON.stringify({ scope: "warm", cursor: 0 }))))
  }
  const t0 = performance.now()
  const deadline = t0 + ms
  await Promise.all(Array.from({ length: config.workers }, async (_, w) => {
    const clientId = `${label}-r${round}-c${w}`
    for (let id = 1; performance.now() < deadline; id += config.batch) {
      const body = JSON.stringify({
        client_id: clientId,
        mutations: Array.from({ length: config.batch }, (_, k) => ({
          id: id + k,
          name: "todo/create",
          scope: "bench",
          args: { id: `${clientId}-${id + k}`, title: `buy milk ${id + k}` }
        }))
      })
      const start = performance.now()
      const response = await http.post("/_sync/push", body)
      if (response.status !== 200) throw new Error(`HTTP ${response.status}: ${response.body.slice(0, 200)}`)
      samples.push({ start: start - t0, end: performance.now() - t0 })
    }
  }))
  http.close()
  return samples
}

/**
 * The slow requests (over 10× the p50, at least 50 ms): how many other
 * requests completed while each was waiting. Many: it was overtaken (queued
 * unfairly behind later ones); none: the whole server stalled (GC, a blocked
 * event loop).
 */
const slowOnes = (samples: ReadonlyArray<Sample>) => {
  const lat = samples.map((s) => s.end - s.start)
  const p50 = summarize(lat).p50
  const threshold = Math.max(50, 10 * p50)
  const ends = samples.map((s) => s.end).sort((a, b) => a - b)
  const completedIn = (a: number, b: number) => {
    let lo = 0
    let hi = ends.length
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if (ends[mid] <= a) lo = mid + 1
      else hi = mid
    }
    let count = 0
    for (let i = lo; i < ends.length && ends[i] < b; i++) count++
    return count
  }
  const slow = samples.filter((s) => s.end - s.start > threshold)
  const overtaken = slow.map((s) => completedIn(s.start, s.end))
  return {
    threshold_ms: Math.round(threshold),
    count: slow.length,
    overtaken_median: overtaken.length === 0 ? 0 : [...overtaken].sort((a, b) => a - b)[Math.floor(overtaken.length / 2)],
    overtaken_min: overtaken.length === 0 ? 0 : Math.min(...overtaken),
    worst: slow.sort((a, b) => (b.end - b.start) - (a.end - a.start)).slice(0, 5).map((s) => ({
      at_ms: Math.round(s.start),
      took_ms: Math.round(s.end - s.start),
      completed_meanwhile: completedIn(s.start, s.end)
    }))
  }
}

const kinds = ["before", "after", "baseline"] as const
const names = { before: `ours before (${rev})`, after: "ours (this tree)", baseline: "baseline node:http + better-sqlite3" }
const modes = ["cold", "warm"] as const
type Key = `${(typeof kinds)[number]} ${(typeof modes)[number]}`
const all = {} as Record<Key, Array<Sample>>
const perRound: Record<string, unknown> = {}
for (const kind of kinds) await run(servers[kind].ready["port"] as number, 500, 0, `warm-${kind}`, true)
for (let round = 1; round <= config.rounds; round++) {
  const order = round % 2 === 1 ? kinds : [...kinds].reverse()
  for (const mode of modes) {
    for (const kind of order) {
      const key: Key = `${kind} ${mode}`
      const samples = await run(servers[kind].ready["port"] as number, config.ms, round, `${kind}-${mode}`, mode === "warm")
      ;(all[key] ??= []).push(...samples)
      const slow = slowOnes(samples)
      perRound[`${key} ${round}`] = { requests: samples.length, ...summarize(samples.map((s) => s.end - s.start)), slow }
      console.log(
        `  round ${round} ${key.padEnd(14)} ${(samples.length / config.ms * 1000).toFixed(0)} req/s, slow (> ${slow.threshold_ms} ms): ${slow.count}, ` +
          `others completed meanwhile: median ${slow.overtaken_median}, min ${slow.overtaken_min}; worst ${JSON.stringify(slow.worst.slice(0, 2))}`
      )
    }
  }
}
for (const kind of kinds) await servers[kind].stop()

const rows: Array<Array<string>> = [["server", "connections", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms"]]
const summary: Record<string, unknown> = {}
for (const key of Object.keys(all) as Array<Key>) {
  const [kind, mode] = key.split(" ") as [(typeof kinds)[number], string]
  const s = summarize(all[key].map((x) => x.end - x.start))
  const lat = all[key].map((x) => x.end - x.start).sort((a, b) => a - b)
  const p999 = lat[Math.min(lat.length - 1, Math.floor(lat.length * 0.999))]
  summary[key] = { ...s, p999, max: lat[lat.length - 1], reqPerSec: all[key].length / (config.ms * config.rounds) * 1000 }
  rows.push([
    names[kind],
    mode === "warm" ? "opened first" : "opened by the first push",
    (all[key].length / (config.ms * config.rounds) * 1000).toFixed(0),
    String(s.p50),
    String(s.p99),
    p999.toFixed(1),
    lat[lat.length - 1].toFixed(1)
  ])
}
console.log(`\npush, ${config.batch} mutation(s) per request, ${config.workers} in flight, ${config.rounds} rounds of ${config.ms} ms per server:`)
printTable(rows)
const file = writeResult(config.batch === 1 ? "push-tail" : `push-tail-${config.batch}`, { config, rev, summary, rounds: perRound })
console.log(`wrote ${NodePath.relative(process.cwd(), file)}`)
process.exit(0)
