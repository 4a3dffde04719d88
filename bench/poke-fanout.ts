/**
 * Live fan-out and session memory, against a plain `ws` server measured in
 * the same run.
 *
 * Processes: the server under test (ours: `Server.layer` on SQLite; or the
 * baseline `ws` server, bench/servers/baseline-ws.ts), and one client process
 * (bench/clients/ws-clients.ts) holding every WebSocket and sending the
 * commits, so t0 and t1 are read on one clock.
 *
 * One server of each kind is grown in steps, so no session is opened twice:
 * 1,000 sessions (fan-out measured) → 5,000 (fan-out measured) → 10,000
 * (memory measured). Every session JOINs the scope "fan".
 *
 * 1. Poke latency: commits one at a time (30 at 1,000 subscribers, 10 at
 *    5,000: 30,000 and 50,000 deliveries). Ours: a push of one mutation
 *    (`POST /_sync/push`, with client_id) — the poke follows the commit.
 *    Baseline: `POST /poke`, which sends the same POKE frame (same bytes) to
 *    every subscriber. t0 = when the client sends the POST, t1 = when a
 *    session receives the POKE with that cursor. Reported: p50/p99 of every
 *    delivery, p50/p99 of each commit's last delivery, and the HTTP response
 *    time (for ours, the commit itself). The client is one process: the k-th
 *    delivery of a commit also waits for the client to read the k-1 before
 *    it, on both servers alike.
 * 2. Memory per idle session at 10,000 sessions: the server's heap after
 *    full GCs (`--expose-gc`), at 10k sessions minus before the first, / 10k.
 *    Also the server's CPU use while the 10k sessions sit idle.
 *
 * Ours runs with `live.tickInterval: "1 hour"`: with the default 1 s ticker
 * every idle session is woken every second (bench/ws-open.ts, part C,
 * measures that cost and a fix), which at 5-10k sessions saturates the
 * server and would make this benchmark measure the ticker instead.
 *
 * `--patch=a.diff,b.diff` adds a third server: ours with those experimental
 * patches of bench/patches/ applied to a temporary copy of src/ (never to
 * src/ itself), e.g. `--patch=session-direct-poke.diff`; its results go to
 * bench/results/poke-fanout-patched.json.
 *
 * `--rev=<commit>` adds ours at that git revision (a copy of its src/ and
 * bench/), so a change is measured before and after in one run; results go
 * to bench/results/poke-fanout-rev.json.
 *
 * Usage: npm run bench -- poke-fanout [--quick] [--patch=…] [--rev=…]
 */
import { execSync } from "node:child_process"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import * as Child from "./lib/child.js"
import * as Db from "./lib/db.js"
import * as Patched from "./lib/patched.js"
import { printTable, writeResult } from "./lib/results.js"
import { fmt, ratio, round, type Summary } from "./lib/stats.js"

const quick = process.argv.includes("--quick")
const config = {
  steps: quick ? [200, 1000, 2000] : [1000, 5000, 10_000],
  /** commits measured at each fan-out step (at 5,000 subscribers each commit takes seconds on ours) */
  commits: quick ? [20, 10] : [30, 10],
  warmupCommits: 2,
  openConcurrency: 100,
  idleMeasureMs: 3000,
  tickInterval: "1 hour",
  fdLimit: 65536
}

const { patches, rev, tree: patchedTree } = Patched.fromArgv()

const tmp = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "mizu-bench-"))
process.on("exit", () => {
  NodeFs.rmSync(tmp, { recursive: true, force: true })
})
const globalTimeoutMin = patchedTree === undefined ? 6 : 10
setTimeout(() => {
  console.error(`poke-fanout: global timeout (${globalTimeoutMin} min), giving up`)
  process.exit(2)
}, globalTimeoutMin * 60_000).unref()

const softLimit = execSync("ulimit -n", { shell: "/bin/sh", encoding: "utf8" }).trim()
const hardLimit = execSync("ulimit -Hn", { shell: "/bin/sh", encoding: "utf8" }).trim()
console.log(`poke-fanout: fd limit ${softLimit} (hard ${hardLimit}); children ask for ${config.fdLimit} (capped at the hard limit)`)

type Kind = "ours" | "ours+patch" | "baseline"
const label: Record<Kind, string> = {
  ours: "ours (tick 1 h)",
  "ours+patch": rev === undefined ? `ours + ${patches.join(" + ")}` : `ours @ ${rev}${patches.length === 0 ? "" : ` + ${patches.join(" + ")}`}`,
  baseline: "baseline ws"
}

const startServer = async (kind: Kind) => {
  const nodeFlags = ["--expose-gc"]
  if (kind === "baseline") return Child.start("servers/baseline-ws.ts", {}, { nodeFlags, fdLimit: config.fdLimit })
  const filename = NodePath.join(tmp, `fanout-${kind}.sqlite`)
  await Db.migrate(filename)
  return Child.start("servers/mizu.ts", { filename, tickInterval: config.tickInterval }, {
    nodeFlags,
    fdLimit: config.fdLimit,
    ...(kind === "ours+patch" && patchedTree !== undefined ? { root: patchedTree.benchDir } : {})
  })
}

const clients = await Child.start("clients/ws-clients.ts", {}, { fdLimit: config.fdLimit })

interface OpenResult {
  readonly opened: number
  readonly failed: number
  readonly firstError?: string
  readonly elapsedMs: number
  readonly totalMs: Summary
}

interface FanoutResult {
  readonly sessions: number
  readonly commits: number
  readonly missing: number
  readonly pokeFrameBytes: number
  readonly deliveryMs: Summary
  readonly firstDeliveryMs: Summary
  readonly lastDeliveryMs: Summary
  readonly responseMs: Summary
}

interface Heap {
  readonly heapUsed: number
  readonly external: number
  readonly arrayBuffers: number
  readonly rss: number
}
interface Loop {
  readonly cpuShare: number
  readonly loopUtilization: number
}

const openSessions = async (server: Child.Child, n: number) => {
  const r = await clients.call<OpenResult>(
    "open",
    { port: server.ready["port"], n, concurrency: config.openConcurrency, scope: "fan" },
    300_000
  )
  if (r.failed > 0) console.error(`  ${r.failed} sessions failed to open: ${r.firstError}`)
  return r
}

const fanoutOn = (server: Child.Child, kind: Kind, commits: number) =>
  clients.call<FanoutResult>("fanout", { port: server.ready["port"], commits, scope: "fan", baseline: kind === "baseline" }, 300_000)

interface Run {
  readonly fanout: Array<FanoutResult & { readonly openMs: number }>
  readonly memory: Record<string, unknown>
}

const runKind = async (kind: Kind): Promise<Run> => {
  const server = await startServer(kind)
  try {
    // Warm up the code paths (compiled code counts in the heap), then measure from a clean state.
    await openSessions(server, 200)
    await fanoutOn(server, kind, config.warmupCommits)
    await clients.call("close", {}, 60_000)
    await new Promise((r) => setTimeout(r, 1000))
    const before = await server.call<Heap>("heap")
    const fanout: Array<FanoutResult & { readonly openMs: number }> = []
    let open = 0
    let openMs = 0
    for (const [i, target] of config.steps.entries()) {
      const opened = await openSessions(server, target - open)
      open += opened.opened
      openMs += opened.elapsedMs
      console.log(`  ${label[kind]}: ${fmt(open)} sessions open (+${fmt(opened.opened)} in ${fmt(opened.elapsedMs)} ms)`)
      const commits = config.commits[i]
      if (commits === undefined) continue
      await new Promise((r) => setTimeout(r, 500))
      await fanoutOn(server, kind, config.warmupCommits)
      const r = await fanoutOn(server, kind, commits)
      fanout.push({ ...r, openMs: round(opened.elapsedMs, 0) })
      console.log(
        `  ${label[kind]}: ${fmt(r.sessions)} subscribers, ${commits} commits: delivery p50 ${r.deliveryMs.p50} ms p99 ${r.deliveryMs.p99} ms; ` +
          `last p50 ${r.lastDeliveryMs.p50} ms; frame ${r.pokeFrameBytes} bytes; missing ${r.missing}`
      )
    }
    const sessions = await server.call<number>("sessions")
    await new Promise((r) => setTimeout(r, 1000))
    await server.call("loop-start")
    await new Promise((r) => setTimeout(r, config.idleMeasureMs))
    const idle = await server.call<Loop>("loop-stop")
    const after = await server.call<Heap>("heap")
    const perSession = {
      heapKiB: round((after.heapUsed - before.heapUsed) / open / 1024, 1),
      externalKiB: round((after.external - before.external) / open / 1024, 1),
      rssKiB: round((after.rss - before.rss) / open / 1024, 1)
    }
    console.log(`  ${label[kind]}: ${fmt(open)} idle sessions: heap ${perSession.heapKiB} KiB/session; idle CPU ${idle.cpuShare.toFixed(3)} cores`)
    await clients.call("close", {}, 120_000)
    return {
      fanout,
      memory: {
        sessions: open,
        sessions_on_server: sessions,
        open_ms_total: round(openMs, 0),
        before,
        after,
        per_session: perSession,
        idle_cpu_cores: round(idle.cpuShare, 3),
        idle_loop_utilization: round(idle.loopUtilization, 3)
      }
    }
  } finally {
    await server.stop()
  }
}

const runs = {} as Partial<Record<Kind, Run>>
runs.baseline = await runKind("baseline")
runs.ours = await runKind("ours")
if (patchedTree !== undefined) runs["ours+patch"] = await runKind("ours+patch")
await clients.stop()
const measured = (["ours", "ours+patch"] as const).filter((k) => runs[k] !== undefined)
const baseRun = runs.baseline

// --- report -----------------------------------------------------------------------------

const fanout: Record<string, unknown> = {}
const rows: Array<Array<string>> = [[
  "subscribers",
  "server",
  "delivery p50",
  "delivery p99",
  "last p50",
  "last p99",
  "HTTP resp p50",
  "missing",
  "ratio p50",
  "ratio p99"
]]
for (const [i, b] of baseRun.fanout.entries()) {
  const ours = measured.map((k) => [k, (runs[k] as Run).fanout[i]] as const)
  for (const [kind, r] of [...ours, ["baseline", b] as const]) {
    rows.push([
      fmt(r.sessions),
      label[kind],
      String(r.deliveryMs.p50),
      String(r.deliveryMs.p99),
      String(r.lastDeliveryMs.p50),
      String(r.lastDeliveryMs.p99),
      String(r.responseMs.p50),
      String(r.missing),
      ratio(r.deliveryMs.p50, b.deliveryMs.p50).toFixed(2),
      ratio(r.deliveryMs.p99, b.deliveryMs.p99).toFixed(2)
    ])
  }
  const entry: Record<string, unknown> = { baseline: b }
  for (const [kind, r] of ours) {
    const key = kind === "ours" ? "ours" : "ours_patched"
    entry[key] = r
    entry[`ratio_${key}_delivery_p50`] = ratio(r.deliveryMs.p50, b.deliveryMs.p50)
    entry[`ratio_${key}_delivery_p99`] = ratio(r.deliveryMs.p99, b.deliveryMs.p99)
    entry[`ratio_${key}_last_p50`] = ratio(r.lastDeliveryMs.p50, b.lastDeliveryMs.p50)
  }
  fanout[String(b.sessions)] = entry
}
console.log(`\nPoke latency, commit (POST sent) -> POKE received, ms (ratio = ours / baseline):`)
printTable(rows)

const memRows: Array<Array<string>> = [["server", "sessions", "open wall s (all steps)", "heap KiB/session", "rss KiB/session", "idle CPU (cores)"]]
for (const kind of [...measured, "baseline" as const]) {
  const m = (runs[kind] as Run).memory as { sessions: number; open_ms_total: number; per_session: { heapKiB: number; rssKiB: number }; idle_cpu_cores: number }
  memRows.push([label[kind], fmt(m.sessions), fmt(m.open_ms_total / 1000, 1), String(m.per_session.heapKiB), String(m.per_session.rssKiB), m.idle_cpu_cores.toFixed(3)])
}
console.log(`\nMemory per idle session (server heap after GC, delta / sessions):`)
printTable(memRows)
const bm = baseRun.memory as { per_session: { heapKiB: number } }
for (const kind of measured) {
  const om = (runs[kind] as Run).memory as { per_session: { heapKiB: number } }
  console.log(`  ${label[kind]} / baseline heap per session: ${ratio(om.per_session.heapKiB, bm.per_session.heapKiB)}x (${om.per_session.heapKiB} vs ${bm.per_session.heapKiB} KiB)`)
}

// A run with patches is an experiment: keep it apart from the plain run's results.
const file = writeResult(rev !== undefined ? "poke-fanout-rev" : patches.length === 0 ? "poke-fanout" : "poke-fanout-patched", {
  config,
  fd_limit: { soft: softLimit, hard: hardLimit },
  fanout,
  patches,
  rev,
  memory: Object.fromEntries([...measured, "baseline" as const].map((k) => [k, (runs[k] as Run).memory]))
})
console.log(`\nwrote ${NodePath.relative(process.cwd(), file)}`)
process.exit(0)
