/**
 * The load script of issue #9: many WebSocket sessions on one server process
 * while pushes stream in, and one session that never reads.
 *
 * Default (the issue's figures): 10,000 sessions, each JOINed to one of 100
 * scopes (100 sessions per scope); pushes of one mutation at 1,000/s, spread
 * round robin over the 100 scopes (10/s per scope), for 60 s; each push's
 * POKE goes to the 100 sessions of its scope (up to 100,000 POKE frames/s,
 * fewer when conflated). Also running the whole time: ephemeral traffic, a
 * publisher sending 8 KiB EVENTs at 50/s on a topic "firehose" that one
 * reading "witness" session follows.
 *
 * Phases, on one server process (after a 10 s warm-up under the same load):
 *   A. steady: the load above, for `duration`.
 *   B. the same, plus one session that JOINs "firehose" and 99 of the scopes
 *      and then never reads (its socket paused). The server must close it as a
 *      slow consumer (CLOSE slow_consumer, code 4008, cut 5 s later), and the
 *      others' poke p99 must stay within 1.2x of phase A's.
 *
 * A phase's schedule ends with its duration: a server that falls behind gets
 * fewer pushes sent (counted as not sent, and the phase marked saturated), so
 * phases keep their length.
 *
 * At 10,000 sessions our heap is ~400-900 MB, and a major GC of it (0.4-0.9 s
 * of marking on these cores) sets the p99 of whichever phase it falls in: the
 * server's event-loop delay and heap are reported per phase so that shows.
 * (Forcing full GCs before each phase was tried: V8 then shrinks its limits
 * and collects again early in the phase, which is worse.)
 *
 * Poke latency: for every (session, push) pair, from the push's due time
 * (open loop: pushes are due at a fixed rate whether or not the server keeps
 * up, see clients/load-pusher.ts) to the arrival of the first POKE covering
 * the push's cursor at that session. Read in different processes on one
 * clock (CLOCK_MONOTONIC through process.hrtime). "missing" = pairs never
 * covered by a poke (must be 0: pokes are conflated, never lost).
 *
 * Errors (must be 0): pushes not answered 200 ok (non-duplicate; a request
 * that fails with a connection reset before any answer — a keep-alive socket
 * closed by the server as it was reused — is sent again, same mutation id,
 * and counted as a retry), sessions
 * that failed to open, sessions closed by the server (other than the slow
 * one), ERROR/CLOSE frames received, missing pokes.
 *
 * Baseline, same run and same load (phase A only; it has no slow-consumer
 * policy): the plain `ws` server (servers/baseline-ws.ts), whose `POST /poke`
 * sends the POKE to the scope's subscribers without storing anything; ours
 * commits each push to SQLite (a file, WAL) first.
 *
 * Processes: the server; `clients` processes holding the sessions
 * (clients/load-clients.ts); one pusher (clients/load-pusher.ts).
 *
 * Usage: npm run bench -- load [--quick] [--sessions=N] [--rate=N] [--duration=S] [--scopes=N] [--no-baseline] [--no-slow]
 */
import { execSync } from "node:child_process"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import * as Child from "./lib/child.js"
import * as Db from "./lib/db.js"
import { printTable, writeResult } from "./lib/results.js"
import { fmt, percentile, ratio, round } from "./lib/stats.js"

const argValue = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3)
const quick = process.argv.includes("--quick")
const config = {
  sessions: Number(argValue("sessions") ?? (quick ? 1000 : 10_000)),
  scopes: Number(argValue("scopes") ?? (quick ? 20 : 100)),
  rate: Number(argValue("rate") ?? (quick ? 200 : 1000)),
  durationS: Number(argValue("duration") ?? (quick ? 15 : 60)),
  warmupS: quick ? 5 : 10,
  lanes: 4,
  clientProcesses: 2,
  openConcurrency: 50,
  firehose: { topic: "firehose", bytes: 8192, perSec: 50 },
  drainMs: 3000,
  fdLimit: 65536,
  baseline: !process.argv.includes("--no-baseline"),
  /** `--no-slow`: phase B without the never-reading session (a control: A then A again) */
  slow: !process.argv.includes("--no-slow")
}

const tmp = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "mizu-load-"))
process.on("exit", () => NodeFs.rmSync(tmp, { recursive: true, force: true }))
const globalTimeoutMin = 8 + Math.ceil((config.durationS * 3) / 60)
setTimeout(() => {
  console.error(`load: global timeout (${globalTimeoutMin} min), giving up`)
  process.exit(2)
}, globalTimeoutMin * 60_000).unref()

const now = () => Number(process.hrtime.bigint()) / 1e6
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const softLimit = execSync("ulimit -n", { shell: "/bin/sh", encoding: "utf8" }).trim()
console.log(
  `load: ${fmt(config.sessions)} sessions over ${config.scopes} scopes, ${fmt(config.rate)} pushes/s for ${config.durationS} s per phase; ` +
    `firehose ${config.firehose.bytes} B x ${config.firehose.perSec}/s; fd limit ${softLimit}`
)

type Kind = "ours" | "baseline"

interface Histogram {
  readonly counts: Map<number, number>
  bucketMs: number
}
const percentiles = (h: Histogram) => {
  const entries = [...h.counts.entries()].sort((a, b) => a[0] - b[0])
  const total = entries.reduce((n, [, c]) => n + c, 0)
  const at = (p: number) => {
    const rank = Math.ceil((p / 100) * total)
    let seen = 0
    for (const [bucket, c] of entries) {
      seen += c
      if (seen >= rank) return round((bucket + 1) * h.bucketMs, 1)
    }
    return Number.NaN
  }
  return { n: total, p50: at(50), p90: at(90), p99: at(99), max: total === 0 ? Number.NaN : round((entries[entries.length - 1][0] + 1) * h.bucketMs, 1) }
}

interface ClientStatus {
  readonly open: number
  readonly unexpectedCloses: number
  readonly firstUnexpectedClose: string | null
  readonly errorFrames: number
  readonly firstErrorFrame: string | null
}
interface PhaseReport extends ClientStatus {
  readonly deliveries: number
  readonly missing: number
  readonly sessionsMissing: number
  readonly histogram: Array<[number, number]>
  readonly bucketMs: number
}
interface PushResult {
  readonly retries: number
  readonly scheduled: number
  readonly notSent: number
  readonly pushes: number
  readonly errors: number
  readonly firstError: string | null
  readonly achievedPerSec: number
  readonly maxWaiting: number
  readonly responseMs: { p50: number; p99: number; max: number }
  readonly t0: Record<string, Array<number | null>>
}
interface Mem {
  readonly rss: number
  readonly heapUsed: number
  readonly external: number
}

const scopeName = (i: number) => `load-${i}`
const MiB = (b: number) => round(b / 1024 / 1024, 1)

const metric = async (port: number, name: string): Promise<number | undefined> => {
  const res = await fetch(`http://127.0.0.1:${port}/_sync/metrics`)
  const text = await res.text()
  const line = text.split("\n").find((l) => l.startsWith(name) && !l.startsWith("#"))
  return line === undefined ? undefined : Number(line.split(" ").at(-1))
}

const runKind = async (kind: Kind) => {
  // LOAD_SERVER_FLAGS adds node flags to the server (for investigations, e.g. --trace-gc)
  const nodeFlags = ["--expose-gc", ...(process.env["LOAD_SERVER_FLAGS"]?.split(" ").filter((f) => f !== "") ?? [])]
  let server: Child.Child
  if (kind === "baseline") {
    server = await Child.start("servers/baseline-ws.ts", {}, { nodeFlags, fdLimit: config.fdLimit })
  } else {
    const filename = NodePath.join(tmp, "load.sqlite")
    await Db.migrate(filename)
    server = await Child.start("servers/mizu.ts", { filename }, { nodeFlags, fdLimit: config.fdLimit })
  }
  const port = server.ready["port"] as number
  const clients = await Promise.all(
    Array.from({ length: config.clientProcesses }, () => Child.start("clients/load-clients.ts", {}, { fdLimit: config.fdLimit }))
  )
  const pusher = await Child.start("clients/load-pusher.ts", {})
  const label = kind === "ours" ? "ours" : "baseline ws"
  try {
    const heapBefore = await server.call<Mem>("heap")
    const cpuBefore = await server.call<{ totalMs: number }>("cpu")
    const t0 = now()
    const per = Math.ceil(config.sessions / clients.length)
    const opened = await Promise.all(clients.map((c, i) =>
      c.call<{ opened: number; failed: number; firstError?: string }>("open", {
        port,
        from: i * per,
        to: Math.min(config.sessions, (i + 1) * per),
        scopes: config.scopes,
        prefix: "load-",
        concurrency: config.openConcurrency
      }, 600_000)
    ))
    const openMs = now() - t0
    const openCpuMs = (await server.call<{ totalMs: number }>("cpu")).totalMs - cpuBefore.totalMs
    const openFailed = opened.reduce((n, o) => n + o.failed, 0)
    const openedCount = opened.reduce((n, o) => n + o.opened, 0)
    if (openFailed > 0) console.error(`  ${label}: ${openFailed} sessions failed to open: ${opened.find((o) => o.failed > 0)?.firstError}`)
    await sleep(500)
    const heapOpen = await server.call<Mem>("heap")
    console.log(
      `  ${label}: ${fmt(openedCount)} sessions open in ${fmt(openMs / 1000, 1)} s (server CPU ${fmt(openCpuMs / openedCount, 2)} ms/session); ` +
        `heap ${MiB(heapOpen.heapUsed)} MiB, rss ${MiB(heapOpen.rss)} MiB`
    )

    await clients[0].call("firehose-start", { port, ...config.firehose })
    await clients[clients.length - 1].call("witness", { port, topic: config.firehose.topic })

    const heads: Record<string, number> = Object.fromEntries(Array.from({ length: config.scopes }, (_, i) => [scopeName(i), 0]))
    const push = (seconds: number) =>
      pusher.call<PushResult>("run", {
        port,
        scopes: config.scopes,
        prefix: "load-",
        rate: config.rate,
        durationMs: seconds * 1000,
        lanes: config.lanes,
        baseline: kind === "baseline",
        heads
      }, (seconds + 300) * 1000)
    // Warm-up (not measured): the same load for a short while, so phase A does not pay for the JIT.
    const warm = await push(config.warmupS)
    for (const [scope, list] of Object.entries(warm.t0)) heads[scope] = (heads[scope] ?? 0) + list.length
    await sleep(config.drainMs)
    console.log(`  ${label}: warm-up ${config.warmupS} s, ${fmt(warm.pushes)} pushes, ${warm.errors} errors`)
    const phases: Record<string, unknown> = {}
    const phaseNames = kind === "ours" ? (["A", "B"] as const) : (["A"] as const)
    for (const phase of phaseNames) {
      let slowBefore: number | undefined
      let sessionsBefore: number | undefined
      if (phase === "B" && config.slow) {
        slowBefore = await metric(port, "mizu_slow_consumer_closes_total")
        sessionsBefore = await server.call<number>("sessions")
        const scopes = [config.firehose.topic, ...Array.from({ length: Math.min(99, config.scopes) }, (_, i) => scopeName(i))]
        await clients[0].call("slow-open", { port, scopes })
      }
      const phaseStart = now()
      await Promise.all(clients.map((c) => c.call("phase-start", { heads, phaseStart })))
      const cpu0 = await server.call<{ totalMs: number }>("cpu")
      await server.call("loop-start")
      const loadCpu0 = await Promise.all([...clients, pusher].map((c) => c.call<{ totalMs: number }>("cpu")))
      const samples: Array<Mem> = []
      let sampling = true
      const sampler = (async () => {
        while (sampling) {
          samples.push(await server.call<Mem>("mem"))
          await sleep(1000)
        }
      })()
      const pushed = await push(config.durationS)
      await sleep(config.drainMs)
      sampling = false
      await sampler
      const cpuMs = (await server.call<{ totalMs: number }>("cpu")).totalMs - cpu0.totalMs
      const loop = await server.call<{ loopDelayP99Ms: number; loopDelayMaxMs: number; loopUtilization: number }>("loop-stop")
      const wallMs = now() - phaseStart
      const loadCpu1 = await Promise.all([...clients, pusher].map((c) => c.call<{ totalMs: number }>("cpu")))
      const loadCpuMs = loadCpu1.reduce((n, c, i) => n + c.totalMs - loadCpu0[i].totalMs, 0)
      const saturated = pushed.notSent > 0 || pushed.achievedPerSec < config.rate * 0.97
      const reports = await Promise.all(clients.map((c) => c.call<PhaseReport>("phase-report", { t0: pushed.t0 }, 300_000)))
      for (const [scope, list] of Object.entries(pushed.t0)) heads[scope] = (heads[scope] ?? 0) + list.length
      const histogram: Histogram = { counts: new Map(), bucketMs: reports[0].bucketMs }
      for (const r of reports) for (const [b, c] of r.histogram) histogram.counts.set(b, (histogram.counts.get(b) ?? 0) + c)
      const poke = percentiles(histogram)
      const sum = (f: (r: PhaseReport) => number) => reports.reduce((n, r) => n + f(r), 0)
      const missing = sum((r) => r.missing)
      const unexpectedCloses = sum((r) => r.unexpectedCloses)
      const errorFrames = sum((r) => r.errorFrames)
      const rss = samples.map((s) => s.rss).sort((a, b) => a - b)
      const heapUsed = samples.map((s) => s.heapUsed).sort((a, b) => a - b)
      const witness = await clients[clients.length - 1].call<{ received: number; open: boolean } | null>("witness-status")
      const result: Record<string, unknown> = {
        pushes_scheduled: pushed.scheduled,
        pushes_not_sent: pushed.notSent,
        pushes: pushed.pushes,
        push_errors: pushed.errors,
        push_retries_after_connection_reset: pushed.retries,
        first_push_error: pushed.firstError,
        achieved_pushes_per_sec: round(pushed.achievedPerSec, 1),
        push_max_waiting: pushed.maxWaiting,
        push_response_ms: pushed.responseMs,
        poke_ms: poke,
        deliveries: sum((r) => r.deliveries),
        missing,
        sessions_missing: sum((r) => r.sessionsMissing),
        unexpected_closes: unexpectedCloses,
        first_unexpected_close: reports.find((r) => r.firstUnexpectedClose !== null)?.firstUnexpectedClose ?? null,
        error_frames: errorFrames,
        first_error_frame: reports.find((r) => r.firstErrorFrame !== null)?.firstErrorFrame ?? null,
        sessions_open_at_end: sum((r) => r.open),
        server_cpu_cores: round(cpuMs / wallMs, 2),
        load_generator_cpu_cores: round(loadCpuMs / wallMs, 2),
        server_event_loop: { delay_p99_ms: round(loop.loopDelayP99Ms, 1), delay_max_ms: round(loop.loopDelayMaxMs, 1), utilization: round(loop.loopUtilization, 2) },
        machine_loadavg_1m: round(NodeOs.loadavg()[0], 2),
        saturated,
        server_rss_mib: { p50: MiB(percentile(rss, 50)), max: MiB(rss.at(-1) ?? Number.NaN) },
        server_heap_used_mib: { p50: MiB(percentile(heapUsed, 50)), max: MiB(heapUsed.at(-1) ?? Number.NaN) },
        witness_broadcasts: witness?.received ?? null,
        errors: pushed.errors + unexpectedCloses + errorFrames + missing + openFailed + (phase === "A" ? warm.errors : 0)
      }
      if (phase === "B" && config.slow) {
        await sleep(6000) // past the 5 s grace after CLOSE
        const slowAfter = await metric(port, "mizu_slow_consumer_closes_total")
        const sessionsAfter = await server.call<number>("sessions")
        const slow = await clients[0].call<{ closeCode: number | null; closeFrame: string | null; readyState: number }>("slow-status", { resume: true })
        await sleep(500)
        const slowResumed = await clients[0].call<{ closeCode: number | null; closeFrame: string | null; readyState: number }>("slow-status", {})
        result["slow_consumer"] = {
          closes_metric_delta: (slowAfter ?? 0) - (slowBefore ?? 0),
          server_sessions_before: sessionsBefore,
          server_sessions_after: sessionsAfter,
          client_ready_state_before_resume: slow.readyState,
          client_after_resume: slowResumed
        }
      }
      phases[phase] = result
      console.log(
        `  ${label} phase ${phase}: ${fmt(pushed.pushes)} pushes (${fmt(pushed.achievedPerSec, 0)}/s, ${pushed.errors} errors, response p50 ${pushed.responseMs.p50} ms p99 ${pushed.responseMs.p99} ms); ` +
          `poke p50 ${poke.p50} ms p99 ${poke.p99} ms max ${poke.max} ms over ${fmt(poke.n)} deliveries, missing ${missing}; ` +
          `closes ${unexpectedCloses}, error frames ${errorFrames}; server ${result["server_cpu_cores"]} cores, rss max ${MiB(rss.at(-1) ?? 0)} MiB, ` +
          `event loop delay p99 ${round(loop.loopDelayP99Ms, 1)} ms max ${round(loop.loopDelayMaxMs, 1)} ms`
      )
      if (saturated) {
        console.log(
          `  ${label} phase ${phase}: SATURATED — the pushes fell behind their schedule (${fmt(pushed.achievedPerSec, 0)}/s of ${fmt(config.rate)}; ` +
            `up to ${fmt(pushed.maxWaiting)} waited for a lane, ${fmt(pushed.notSent)} were still waiting at the end and not sent): latencies include that backlog. Server ${result["server_cpu_cores"]} cores, ` +
            `load generators ${result["load_generator_cpu_cores"]} cores, load average ${result["machine_loadavg_1m"]} on ${NodeOs.cpus().length} cores`
        )
      }
      if (phase === "B" && config.slow) console.log(`  ${label} slow consumer: ${JSON.stringify(result["slow_consumer"])}`)
    }
    const firehoseSent = await clients[0].call<{ sent: number }>("firehose-stop")
    return {
      sessions: openedCount,
      open_failed: openFailed,
      open_s: round(openMs / 1000, 1),
      open_server_cpu_ms_per_session: round(openCpuMs / openedCount, 2),
      heap_per_session_kib: round((heapOpen.heapUsed - heapBefore.heapUsed) / openedCount / 1024, 1),
      heap_after_open_mib: MiB(heapOpen.heapUsed),
      rss_after_open_mib: MiB(heapOpen.rss),
      firehose_sent: firehoseSent.sent,
      phases
    }
  } finally {
    await Promise.all(clients.map(async (c) => {
      await c.call("close", {}, 120_000).catch(() => undefined)
      await c.stop()
    }))
    await pusher.stop()
    await server.stop()
  }
}

const runs: Partial<Record<Kind, Awaited<ReturnType<typeof runKind>>>> = {}
if (config.baseline) runs.baseline = await runKind("baseline")
runs.ours = await runKind("ours")

// --- report ------------------------------------------------------------------------------

type Phase = {
  achieved_pushes_per_sec: number
  push_response_ms: { p50: number; p99: number }
  poke_ms: { n: number; p50: number; p99: number; max: number }
  missing: number
  errors: number
  server_cpu_cores: number
  load_generator_cpu_cores: number
  server_rss_mib: { max: number }
  saturated: boolean
}
const rows: Array<Array<string>> = [[
  "server",
  "phase",
  "pushes/s",
  "push resp p50 / p99 ms",
  "poke p50 ms",
  "poke p99 ms",
  "poke max ms",
  "deliveries",
  "missing",
  "errors",
  "cores: server / load gen",
  "rss max MiB",
  "saturated"
]]
for (const kind of ["ours", "baseline"] as const) {
  const run = runs[kind]
  if (run === undefined) continue
  for (const [name, p] of Object.entries(run.phases) as Array<[string, Phase]>) {
    rows.push([
      kind === "ours" ? "ours (SQLite)" : "baseline ws",
      name === "A" ? "A steady" : "B + never-reading session",
      fmt(p.achieved_pushes_per_sec),
      `${p.push_response_ms.p50} / ${p.push_response_ms.p99}`,
      String(p.poke_ms.p50),
      String(p.poke_ms.p99),
      String(p.poke_ms.max),
      fmt(p.poke_ms.n),
      String(p.missing),
      String(p.errors),
      `${p.server_cpu_cores} / ${p.load_generator_cpu_cores}`,
      String(p.server_rss_mib.max),
      p.saturated ? "yes" : "no"
    ])
  }
}
console.log(`\nLoad: ${fmt(config.sessions)} sessions, ${config.scopes} scopes, ${fmt(config.rate)} pushes/s target, ${config.durationS} s per phase`)
printTable(rows)
const ours = runs.ours as NonNullable<typeof runs.ours>
const a = ours.phases["A"] as Phase
const b = ours.phases["B"] as Phase & { slow_consumer?: { closes_metric_delta: number } }
const slowRatio = ratio(b.poke_ms.p99, a.poke_ms.p99)
console.log(`\nours: heap ${ours.heap_per_session_kib} KiB/session at ${fmt(ours.sessions)} sessions; open ${ours.open_server_cpu_ms_per_session} ms server CPU/session`)
if (runs.baseline !== undefined) {
  const base = runs.baseline.phases["A"] as Phase
  console.log(
    `ours / baseline, phase A: poke p50 ${ratio(a.poke_ms.p50, base.poke_ms.p50)}x, p99 ${ratio(a.poke_ms.p99, base.poke_ms.p99)}x; ` +
      `heap/session ${ratio(ours.heap_per_session_kib, runs.baseline.heap_per_session_kib)}x (${runs.baseline.heap_per_session_kib} KiB)`
  )
}
const slowClosed = !config.slow || b.slow_consumer?.closes_metric_delta === 1
console.log(
  config.slow
    ? `never-reading session: others' poke p99 B / A = ${slowRatio}x (limit 1.2); closed as slow consumer: ${slowClosed ? "yes" : "NO"}`
    : `control run (--no-slow, B is A again): poke p99 B / A = ${slowRatio}x`
)
const errors = Object.values(ours.phases).reduce((n: number, p) => n + (p as Phase).errors, 0)
console.log(`errors (ours, both phases): ${errors}`)

// The figures go to load.json; other shapes to a file of their own.
const isDefault = config.sessions === 10_000 && config.rate === 1000 && config.scopes === 100 && config.durationS === 60
const file = writeResult((isDefault ? "load" : `load-${config.sessions}-sessions-${config.rate}-per-s`) + (config.slow ? "" : "-control"), { config, ratio_slow_b_over_a_p99: slowRatio, runs })
console.log(`\nwrote ${NodePath.relative(process.cwd(), file)}`)
process.exit(errors === 0 && slowClosed ? 0 : 1)
