/**
 * Idle sessions on one server process (issue #17, last row of the table):
 * as many as the machine allows — a process here may open at most 20,000
 * files, so 19,000 sessions — each JOINed to one scope; heap per session
 * after full GCs; one poke to all of them, every delivery counted and timed;
 * and the heap of 50,000 sessions EXTRAPOLATED from the measured
 * per-session cost (not measured: the file limit does not allow it). The
 * same for the plain `ws` baseline in the same run, and the ratios.
 *
 * Processes: the server under test (ours: bench/servers/mizu.ts, SQLite,
 * `tracing: false`, `live.tickInterval: "1 hour"`; or
 * bench/servers/baseline-ws.ts), started with `--expose-gc` and `ulimit -n
 * 20000`; the sessions split over `clientProcesses` client processes
 * (bench/clients/ws-clients.ts, each with the same file limit), so no
 * process holds more sockets than it may open.
 *
 * 1. Heap per idle session: the server's heap after full GCs with all the
 *    sessions open and idle, minus the same before the first was opened (the
 *    code paths warmed up by 200 sessions opened and closed), / sessions.
 *    Also rss per session and the server's CPU while they sit idle.
 * 2. One poke to all of them: each client process is armed with the
 *    (scope, cursor) to come, then this process notes t0 (CLOCK_MONOTONIC)
 *    and sends the commit — ours: `POST /_sync/push` of one mutation (the
 *    POKE follows the commit); baseline: `POST /poke`, which sends the same
 *    POKE frame to every subscriber. Each session's receipt is read on the
 *    same clock in its client process. Reported: how many sessions got it
 *    (all must), p50/p99/max of delivery over every session. One warm-up
 *    poke first, then `pokes` measured ones, one at a time.
 *
 * Usage: npm run bench -- idle-sessions [--quick] [--sessions=N]
 */
import { execSync } from "node:child_process"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import * as Child from "./lib/child.js"
import * as Db from "./lib/db.js"
import * as Load from "./lib/load.js"
import { printTable, writeResult } from "./lib/results.js"
import { fmt, ratio, round, summarize, type Summary } from "./lib/stats.js"

const quick = process.argv.includes("--quick")
const sessionsArg = process.argv.find((a) => a.startsWith("--sessions="))?.slice("--sessions=".length)
const config = {
  sessions: sessionsArg !== undefined ? Number(sessionsArg) : quick ? 3000 : 19_000,
  clientProcesses: quick ? 2 : 3,
  openConcurrency: 100,
  warmupSessions: 200,
  pokes: quick ? 2 : 3,
  idleMeasureMs: 3000,
  tickInterval: "1 hour",
  /** a process here may open at most 20,000 files: the soft limit is raised to it for every child */
  fdLimit: 20_000,
  extrapolateTo: 50_000,
  scope: "idle"
}

const tmp = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "mizu-idle-"))
process.on("exit", () => {
  NodeFs.rmSync(tmp, { recursive: true, force: true })
})
const globalTimeoutMin = 8
setTimeout(() => {
  console.error(`idle-sessions: global timeout (${globalTimeoutMin} min), giving up`)
  process.exit(2)
}, globalTimeoutMin * 60_000).unref()

type Kind = "ours" | "baseline"
const label: Record<Kind, string> = { ours: "ours (tracing off, tick 1 h)", baseline: "baseline ws" }

interface Heap {
  readonly heapUsed: number
  readonly external: number
  readonly arrayBuffers: number
  readonly rss: number
}
interface OpenResult {
  readonly opened: number
  readonly failed: number
  readonly firstError?: string
  readonly elapsedMs: number
  readonly heads: Record<string, number>
}
interface Loop {
  readonly cpuShare: number
}

const monotonicMs = () => Number(process.hrtime.bigint()) / 1e6

const post = Load.postOk

const startServer = async (kind: Kind) => {
  const options = { nodeFlags: ["--expose-gc"], fdLimit: config.fdLimit }
  if (kind === "baseline") return Child.start("servers/baseline-ws.ts", {}, options)
  const filename = NodePath.join(tmp, "idle.sqlite")
  await Db.migrate(filename)
  return Child.start("servers/mizu.ts", { filename, tracing: false, tickInterval: config.tickInterval }, options)
}

const clients = await Promise.all(
  Array.from({ length: config.clientProcesses }, () => Child.start("clients/ws-clients.ts", {}, { fdLimit: config.fdLimit }))
)

/** Open `n` sessions split over the client processes, all at once; the scope's head as the REPLYs told it. */
const openSessions = async (port: number, n: number) => {
  const share = (i: number) => Math.floor(n / clients.length) + (i < n % clients.length ? 1 : 0)
  const start = performance.now()
  const results = await Promise.all(
    clients.map((c, i) =>
      c.call<OpenResult>(
        "open",
        { port, n: share(i), concurrency: Math.ceil(config.openConcurrency / clients.length), scope: config.scope },
        300_000
      )
    )
  )
  const opened = results.reduce((s, r) => s + r.opened, 0)
  const failed = results.reduce((s, r) => s + r.failed, 0)
  if (failed > 0) console.error(`  ${failed} sessions failed to open: ${results.find((r) => r.firstError !== undefined)?.firstError}`)
  const head = Math.max(0, ...results.map((r) => r.heads[config.scope] ?? 0))
  return { opened, failed, elapsedMs: performance.now() - start, head }
}

const closeAll = () => Promise.all(clients.map((c) => c.call("close", {}, 120_000)))

interface Poke {
  readonly cursor: number
  readonly open: number
  readonly received: number
  readonly missing: number
  readonly deliveryMs: Summary
  readonly responseMs: number
}

/** One commit, delivered to every open session: each session's receipt timed against t0. */
const pokeAll = async (kind: Kind, port: number, cursor: number, k: number): Promise<Poke> => {
  const armed = await Promise.all(clients.map((c) => c.call<{ open: number }>("arm", { scope: config.scope, cursor })))
  const open = armed.reduce((s, a) => s + a.open, 0)
  const clientId = `idle-${process.pid}`
  const body = kind === "baseline"
    ? JSON.stringify({ scope: config.scope, cursor })
    : JSON.stringify({ client_id: clientId, mutations: [{ id: k, name: "todo/create", scope: config.scope, args: { id: `${clientId}-${k}`, title: `buy milk ${k}` } }] })
  const t0 = monotonicMs()
  const text = await post(port, kind === "baseline" ? "/poke" : "/_sync/push", body)
  const responseMs = monotonicMs() - t0
  const committed = (JSON.parse(text) as { results: Array<{ ok: boolean; cursor: number }> }).results[0]
  if (!committed.ok || committed.cursor !== cursor) throw new Error(`commit ${k}: expected cursor ${cursor}, got ${text}`)
  const collected = await Promise.all(clients.map((c) => c.call<{ times: Array<number>; missing: number }>("collect", { timeoutMs: 20_000 }, 60_000)))
  const delivery = collected.flatMap((c) => c.times.map((t) => t - t0))
  const missing = collected.reduce((s, c) => s + c.missing, 0)
  return { cursor, open, received: delivery.length, missing, deliveryMs: summarize(delivery), responseMs: round(responseMs) }
}

interface Run {
  readonly sessions: number
  readonly sessionsOnServer: number
  readonly openMs: number
  readonly before: Heap
  readonly after: Heap
  readonly heapKiB: number
  readonly rssKiB: number
  readonly idleCpuCores: number
  readonly pokes: ReadonlyArray<Poke>
  readonly deliveryMs: Summary
  readonly missing: number
}

const runKind = async (kind: Kind): Promise<Run> => {
  const server = await startServer(kind)
  const port = server.ready["port"] as number
  try {
    // warm up the code paths (compiled code counts in the heap), then measure from a clean state
    let head = (await openSessions(port, config.warmupSessions)).head
    await pokeAll(kind, port, head + 1, 1)
    head++
    await closeAll()
    await new Promise((r) => setTimeout(r, 1000))
    const before = await server.call<Heap>("heap")
    const opened = await openSessions(port, config.sessions)
    head = Math.max(head, opened.head)
    console.log(`  ${label[kind]}: ${fmt(opened.opened)} sessions open in ${fmt(opened.elapsedMs / 1000, 1)} s`)
    const sessionsOnServer = await server.call<number>("sessions")
    await new Promise((r) => setTimeout(r, 1000))
    await server.call("loop-start")
    await new Promise((r) => setTimeout(r, config.idleMeasureMs))
    const idle = await server.call<Loop>("loop-stop")
    const after = await server.call<Heap>("heap")
    const heapKiB = round((after.heapUsed - before.heapUsed) / opened.opened / 1024, 1)
    const rssKiB = round((after.rss - before.rss) / opened.opened / 1024, 1)
    console.log(`  ${label[kind]}: heap ${heapKiB} KiB per idle session, rss ${rssKiB} KiB; idle CPU ${idle.cpuShare.toFixed(3)} cores`)
    // the pokes: one warm-up at this size, then the measured ones
    const pokes: Array<Poke> = []
    for (let k = 0; k <= config.pokes; k++) {
      head++
      const p = await pokeAll(kind, port, head, k + 2)
      console.log(
        `  ${label[kind]}: poke ${k === 0 ? "(warm-up)" : k}: ${fmt(p.received)} of ${fmt(p.open)} sessions got it (missing ${p.missing}); ` +
          `delivery p50 ${p.deliveryMs.p50} ms p99 ${p.deliveryMs.p99} ms max ${p.deliveryMs.max} ms; commit answered in ${p.responseMs} ms`
      )
      if (k > 0) pokes.push(p)
      await new Promise((r) => setTimeout(r, 200))
    }
    await closeAll()
    const p50s = pokes.map((p) => p.deliveryMs.p50)
    return {
      sessions: opened.opened,
      sessionsOnServer,
      openMs: round(opened.elapsedMs, 0),
      before,
      after,
      heapKiB,
      rssKiB,
      idleCpuCores: round(idle.cpuShare, 3),
      pokes,
      // the median poke's figures (by p50): one slow poke does not decide
      deliveryMs: [...pokes].sort((a, b) => a.deliveryMs.p50 - b.deliveryMs.p50)[Math.floor(p50s.length / 2)].deliveryMs,
      missing: pokes.reduce((s, p) => s + p.missing, 0)
    }
  } finally {
    await server.stop()
  }
}

const soft = execSync("ulimit -n; ulimit -Hn", { shell: "/bin/sh", encoding: "utf8" }).trim().split("\n")
console.log(
  `idle-sessions: ${fmt(config.sessions)} sessions over ${config.clientProcesses} client processes; fd limit here ${soft[0]} (hard ${soft[1]}), children ask for ${config.fdLimit}`
)
const runs: Record<Kind, Run> = { baseline: await runKind("baseline"), ours: await runKind("ours") }
await Promise.all(clients.map((c) => c.stop()))

// --- report -----------------------------------------------------------------------------

const extrapolated = (r: Run) => ({
  heapMiB: round((r.before.heapUsed + r.heapKiB * 1024 * config.extrapolateTo) / 2 ** 20, 0),
  rssMiB: round((r.before.rss + r.rssKiB * 1024 * config.extrapolateTo) / 2 ** 20, 0)
})
const b = runs.baseline
const o = runs.ours
const rows: Array<Array<string>> = [[
  "server",
  "sessions",
  "open s",
  "heap KiB/session",
  "rss KiB/session",
  "idle CPU",
  "poke: got it",
  "delivery p50",
  "delivery p99",
  "max",
  `${fmt(config.extrapolateTo)} extrapolated: heap / rss MiB`
]]
for (const kind of ["ours", "baseline"] as const) {
  const r = runs[kind]
  const x = extrapolated(r)
  rows.push([
    label[kind],
    fmt(r.sessions),
    fmt(r.openMs / 1000, 1),
    String(r.heapKiB),
    String(r.rssKiB),
    r.idleCpuCores.toFixed(3),
    r.pokes.map((p) => `${fmt(p.received)}/${fmt(p.open)}`).join(" "),
    `${r.deliveryMs.p50} ms`,
    `${r.deliveryMs.p99} ms`,
    `${r.deliveryMs.max} ms`,
    `${fmt(x.heapMiB)} / ${fmt(x.rssMiB)}`
  ])
}
console.log(`\nIdle sessions on one process (heap after full GCs; poke = commit sent -> POKE received, median of ${config.pokes} pokes):`)
printTable(rows)
console.log(
  `  ours / baseline: heap per session ${ratio(o.heapKiB, b.heapKiB)}x (${o.heapKiB} vs ${b.heapKiB} KiB; goal <= 30 KiB: ${o.heapKiB <= 30 ? "met" : "NOT met"}), ` +
    `delivery p50 ${ratio(o.deliveryMs.p50, b.deliveryMs.p50)}x, p99 ${ratio(o.deliveryMs.p99, b.deliveryMs.p99)}x`
)
console.log(
  `  ${fmt(config.extrapolateTo)} sessions EXTRAPOLATED (heap before + measured cost per session x ${fmt(config.extrapolateTo)}; not measured, ` +
    `the file limit allows ${fmt(config.fdLimit)}): ours ${fmt(extrapolated(o).heapMiB)} MiB heap, baseline ${fmt(extrapolated(b).heapMiB)} MiB`
)
const missing = o.missing + b.missing
if (missing > 0) console.log(`  ${missing} deliveries MISSING (ours ${o.missing}, baseline ${b.missing})`)

const file = writeResult("idle-sessions", {
  config,
  fd_limit: { soft: soft[0], hard: soft[1] },
  runs,
  extrapolated: {
    note: `${config.extrapolateTo} sessions extrapolated from the measured per-session cost, not measured`,
    ours: extrapolated(o),
    baseline: extrapolated(b)
  },
  ratios: {
    heap_per_session: ratio(o.heapKiB, b.heapKiB),
    delivery_p50: ratio(o.deliveryMs.p50, b.deliveryMs.p50),
    delivery_p99: ratio(o.deliveryMs.p99, b.deliveryMs.p99)
  },
  goal_heap_kib_met: o.heapKiB <= 30
})
console.log(`\nwrote ${NodePath.relative(process.cwd(), file)}`)
process.exit(missing === 0 ? 0 : 1)
