/**
 * Opening WebSocket sessions: ours against a plain `ws` server, and where the
 * time goes (the investigation of "opening a session is ~6x slower than on a
 * plain ws server under concurrency 50").
 *
 * Processes: servers (each a child), one client process (ws-clients.ts).
 *
 * A. Open 500 sessions, 50 at a time, each JOINing a scope (what a client
 *    does): wall time, sessions/s, server CPU per session, ours / baseline.
 *    `--patch=a.diff,b.diff` adds ours with those experimental patches of
 *    bench/patches/ applied to a temporary copy of src/ (never to src/
 *    itself), in A and C.
 * B. Where the time goes (current src/, 400 sessions without JOIN, 50 at a
 *    time): upgrade paths side by side in one server process —
 *      direct    handleUpgrade called in the route handler (least Effect can do)
 *      platform  HttpServerRequest.upgrade + socket.runRaw (the platform's path)
 *      own-wss   our WebSocketServer (maxPayload) + Socket.fromWebSocket + runRaw
 *      ours      the real route: LiveHttp + Session
 *    — CPU per session, heap per session (after GC), time from the `upgrade`
 *    event to `handleUpgrade` (when the 101 is written), event-loop
 *    utilization, and the server main thread's time on a CPU / waiting for a
 *    CPU / off CPU (Linux schedstat).
 * C. Growth: 3 batches of 400 sessions without closing (0 → 1,200), then the
 *    server's CPU while the 1,200 sessions sit idle.
 * D. Other suspects at 300 sessions: the HttpApp tracer (tracing: false) and
 *    permessage-deflate offered by the client or not.
 *
 * Usage: npm run bench -- ws-open [--quick] [--patch=…]
 */
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import * as Child from "./lib/child.js"
import * as Db from "./lib/db.js"
import * as Patched from "./lib/patched.js"
import { printTable, writeResult } from "./lib/results.js"
import { fmt, median, ratio, round, type Summary } from "./lib/stats.js"

const quick = process.argv.includes("--quick")
const config = {
  sessions: 500,
  concurrency: 50,
  rounds: quick ? 1 : 2,
  decompositionSessions: 400,
  growthBatches: quick ? 2 : 3,
  growthBatchSessions: quick ? 250 : 400,
  suspectSessions: 300,
  idleMeasureMs: 3000,
  fdLimit: 65536
}
const { patches, tree: patchedTree } = Patched.fromArgv()

const tmp = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "mizu-bench-"))
process.on("exit", () => {
  NodeFs.rmSync(tmp, { recursive: true, force: true })
})
setTimeout(() => {
  console.error("ws-open: global timeout (6 min), giving up")
  process.exit(2)
}, 6 * 60_000).unref()

type Kind = "ours" | "ours+patch" | "baseline"
const kinds: ReadonlyArray<Kind> = patchedTree === undefined ? ["ours", "baseline"] : ["ours", "ours+patch", "baseline"]
const label: Record<Kind, string> = {
  ours: "ours (src/ as is)",
  "ours+patch": `ours + ${patches.join(" + ")}`,
  baseline: "baseline ws"
}

let dbCounter = 0
const startServer = async (kind: Kind, extra: Record<string, unknown> = {}, nodeFlags: ReadonlyArray<string> = []) => {
  if (kind === "baseline") return Child.start("servers/baseline-ws.ts", {}, { nodeFlags, fdLimit: config.fdLimit })
  const filename = NodePath.join(tmp, `db-${++dbCounter}.sqlite`)
  await Db.migrate(filename)
  const root = kind === "ours+patch" ? patchedTree?.benchDir : undefined
  return Child.start("servers/mizu.ts", { filename, ...extra }, { nodeFlags, fdLimit: config.fdLimit, ...(root === undefined ? {} : { root }) })
}

interface OpenResult {
  readonly opened: number
  readonly failed: number
  readonly firstError?: string
  readonly elapsedMs: number
  readonly perSecond: number
  readonly totalMs: Summary
}
interface Loop {
  readonly wallMs: number
  readonly cpuMs: number
  readonly cpuShare: number
  readonly loopUtilization: number
  readonly mainRunMs: number
  readonly mainRunqueueMs: number
  readonly mainOffCpuMs: number
}
interface Heap {
  readonly heapUsed: number
}

const clients = await Child.start("clients/ws-clients.ts", {}, { fdLimit: config.fdLimit })

/** Open n sessions on a server, measuring the server's CPU and loop meanwhile. */
const openMeasured = async (server: Child.Child, n: number, options: { scope?: string; path?: string; perMessageDeflate?: boolean } = {}) => {
  await server.call("loop-start")
  const r = await clients.call<OpenResult>(
    "open",
    { port: server.ready["port"], n, concurrency: config.concurrency, ...options },
    180_000
  )
  const loop = await server.call<Loop>("loop-stop")
  if (r.failed > 0) console.error(`  ${r.failed} sessions failed: ${r.firstError}`)
  return { ...r, loop, cpuPerSessionMs: loop.cpuMs / Math.max(1, r.opened) }
}

const closeAll = async () => {
  await clients.call("close", {}, 120_000)
  await new Promise((r) => setTimeout(r, 1000))
}

/** Open and close 100 sessions, so the first measurement on a fresh server is not its JIT warm-up. */
const warmUp = async (server: Child.Child) => {
  await clients.call("open", { port: server.ready["port"], n: 100, concurrency: config.concurrency, scope: "warm" }, 60_000)
  await closeAll()
}

// --- A. open 500 (JOIN), ours three ways vs baseline -----------------------------------------

console.log(`ws-open: ${config.sessions} sessions, ${config.concurrency} at a time, each JOINs a scope; ${config.rounds} round(s)`)
const servers = {} as Record<Kind, Child.Child>
for (const kind of kinds) servers[kind] = await startServer(kind)
for (const kind of kinds) await warmUp(servers[kind])
const openRuns: Record<Kind, Array<{ elapsedMs: number; cpuPerSessionMs: number; p50: number }>> = {
  ours: [],
  "ours+patch": [],
  baseline: []
}
for (let round_ = 0; round_ < config.rounds; round_++) {
  const order = round_ % 2 === 0 ? kinds : [...kinds].reverse()
  for (const kind of order) {
    const r = await openMeasured(servers[kind], config.sessions, { scope: "room" })
    openRuns[kind].push({ elapsedMs: round(r.elapsedMs, 0), cpuPerSessionMs: round(r.cpuPerSessionMs, 2), p50: r.totalMs.p50 })
    console.log(`  round ${round_ + 1} ${label[kind].padEnd(30)} ${fmt(r.elapsedMs).padStart(6)} ms  server CPU ${r.cpuPerSessionMs.toFixed(2)} ms/session  open+JOIN p50 ${r.totalMs.p50} ms`)
    await closeAll()
  }
}
for (const kind of kinds) await servers[kind].stop()
const openMedian = (kind: Kind) => ({
  elapsedMs: round(median(openRuns[kind].map((r) => r.elapsedMs)), 0),
  cpuPerSessionMs: round(median(openRuns[kind].map((r) => r.cpuPerSessionMs)), 2),
  p50: round(median(openRuns[kind].map((r) => r.p50)), 1)
})
const rowsA: Array<Array<string>> = [["server", "wall ms (median)", "sessions/s", "server CPU ms/session", "open+JOIN p50 ms", "wall / baseline", "CPU / baseline"]]
const base = openMedian("baseline")
const partA: Record<string, unknown> = {}
for (const kind of kinds) {
  const m = openMedian(kind)
  rowsA.push([
    label[kind],
    fmt(m.elapsedMs),
    fmt((config.sessions / m.elapsedMs) * 1000),
    m.cpuPerSessionMs.toFixed(2),
    String(m.p50),
    ratio(m.elapsedMs, base.elapsedMs).toFixed(2),
    ratio(m.cpuPerSessionMs, base.cpuPerSessionMs).toFixed(2)
  ])
  partA[kind] = { median: m, ratio_wall: ratio(m.elapsedMs, base.elapsedMs), ratio_cpu: ratio(m.cpuPerSessionMs, base.cpuPerSessionMs), runs: openRuns[kind] }
}
console.log(`\nA. Open ${config.sessions} sessions (${config.concurrency} at a time, with JOIN):`)
printTable(rowsA)

// --- B. decomposition ------------------------------------------------------------------

const variants = [
  { name: "direct", path: "/bench/direct" },
  { name: "platform", path: "/bench/platform" },
  { name: "own-wss", path: "/bench/own-wss" },
  { name: "ours", path: "/_live/websocket" }
] as const
const nB = config.decompositionSessions
const instrumented = await startServer("ours", { variants: true }, ["--expose-gc"])
const plain = await startServer("baseline", {}, ["--expose-gc"])
const rowsB: Array<Array<string>> = [["path", "wall ms", "CPU ms/session", "heap KiB/session", "upgrade->101 p50 ms", "loop util", "main on-CPU ms", "main waiting for CPU ms", "main off-CPU ms"]]
const partB: Record<string, unknown> = {}
// warm up every path once
for (const v of variants) {
  await clients.call("open", { port: instrumented.ready["port"], n: 100, concurrency: config.concurrency, path: v.path }, 60_000)
  await closeAll()
}
await instrumented.call("upgrade-stats")
for (const v of [...variants, { name: "baseline ws", path: "/_live/websocket" }]) {
  const server = v.name === "baseline ws" ? plain : instrumented
  const before = await server.call<Heap>("heap")
  const r = await openMeasured(server, nB, { path: v.path })
  const after = await server.call<Heap>("heap")
  const upgrade = v.name === "baseline ws" ? undefined : await server.call<Summary>("upgrade-stats")
  const heapKiB = round((after.heapUsed - before.heapUsed) / r.opened / 1024, 1)
  rowsB.push([
    v.name,
    fmt(r.elapsedMs),
    r.cpuPerSessionMs.toFixed(2),
    String(heapKiB),
    upgrade === undefined ? "-" : String(upgrade.p50),
    r.loop.loopUtilization.toFixed(2),
    fmt(r.loop.mainRunMs),
    fmt(r.loop.mainRunqueueMs),
    fmt(r.loop.mainOffCpuMs)
  ])
  partB[v.name] = { elapsedMs: round(r.elapsedMs, 0), cpuPerSessionMs: round(r.cpuPerSessionMs, 2), heapKiBPerSession: heapKiB, upgradeToHandleUpgradeMs: upgrade, loop: r.loop }
  await closeAll()
}
await instrumented.stop()
await plain.stop()
console.log(`\nB. Where the time goes: ${fmt(nB)} sessions, no JOIN, ${config.concurrency} at a time (current src/):`)
printTable(rowsB)

// --- C. growth and idle cost ---------------------------------------------------------------

const rowsC: Array<Array<string>> = [["server", ...Array.from({ length: config.growthBatches }, (_, i) => `batch ${i + 1}: wall ms (CPU ms/session)`), "idle CPU, cores"]]
const partC: Record<string, unknown> = {}
for (const kind of kinds) {
  const server = await startServer(kind)
  await warmUp(server)
  const batches: Array<{ elapsedMs: number; cpuPerSessionMs: number }> = []
  for (let b = 0; b < config.growthBatches; b++) {
    const r = await openMeasured(server, config.growthBatchSessions, { scope: "room" })
    batches.push({ elapsedMs: round(r.elapsedMs, 0), cpuPerSessionMs: round(r.cpuPerSessionMs, 2) })
  }
  await new Promise((r) => setTimeout(r, 1000))
  await server.call("loop-start")
  await new Promise((r) => setTimeout(r, config.idleMeasureMs))
  const idle = await server.call<Loop>("loop-stop")
  rowsC.push([label[kind], ...batches.map((b) => `${fmt(b.elapsedMs)} (${b.cpuPerSessionMs.toFixed(2)})`), idle.cpuShare.toFixed(3)])
  partC[kind] = { batches, idleCpuCores: round(idle.cpuShare, 3), sessions: config.growthBatchSessions * config.growthBatches }
  await closeAll()
  await server.stop()
}
console.log(`\nC. Growth: ${config.growthBatches} batches of ${config.growthBatchSessions} (JOIN) without closing, then CPU while ${fmt(config.growthBatchSessions * config.growthBatches)} sessions sit idle for ${config.idleMeasureMs} ms:`)
printTable(rowsC)

// --- D. other suspects ------------------------------------------------------------------------

const rowsD: Array<Array<string>> = [["variant (current src/)", "wall ms", "CPU ms/session"]]
const partD: Record<string, unknown> = {}
const traced = await startServer("ours")
const untraced = await startServer("ours", { tracing: false })
await warmUp(traced)
await warmUp(untraced)
for (const [name, server, perMessageDeflate] of [
  ["tracing on, client offers permessage-deflate", traced, true],
  ["tracing: false", untraced, true],
  ["client without permessage-deflate", traced, false]
] as const) {
  const r = await openMeasured(server, config.suspectSessions, { scope: "room", perMessageDeflate })
  rowsD.push([name, fmt(r.elapsedMs), r.cpuPerSessionMs.toFixed(2)])
  partD[name] = { elapsedMs: round(r.elapsedMs, 0), cpuPerSessionMs: round(r.cpuPerSessionMs, 2) }
  await closeAll()
}
await traced.stop()
await untraced.stop()
console.log(`\nD. Other suspects, ${config.suspectSessions} sessions with JOIN:`)
printTable(rowsD)

await clients.stop()
const file = writeResult(patches.length === 0 ? "ws-open" : "ws-open-patched", { config, patches, open: partA, decomposition: partB, growth: partC, suspects: partD })
console.log(`\nwrote ${NodePath.relative(process.cwd(), file)}`)
process.exit(0)
