/**
 * End to end: a push reaches another client. Against a hand-written
 * push/pull/poke server measured in the same run.
 *
 * Servers (each a child process on 127.0.0.1 with a fresh database file
 * migrated by our SQL layer, side by side, each idle while another is
 * measured):
 * - ours: bench/servers/mizu.ts (`Server.layer` on SQLite, memory pub/sub,
 *   allow-all) with `tracing: false`, and with tracing on (the default);
 * - baseline: bench/servers/baseline-sync.ts (`node:http` + better-sqlite3
 *   doing bench/lib/baseline-sql.ts's transaction, and a plain `ws` server on
 *   the same port sending POKE after each commit).
 *
 * The probe (this process) holds, per server, a reader — a WebSocket JOINed
 * to scope `e2e` with its cursor from the REPLY, and a keep-alive HTTP
 * connection for its pulls — and a writer with its own keep-alive connection
 * and client_id. One sample, one at a time: t0 = the writer sends a push of
 * one `todo/create` to `e2e`; the reader, on a POKE beyond its cursor, pulls
 * from its cursor (with its client_id) and again while a newer POKE is beyond
 * what it has; t1 = the pull response that holds the change (found by the
 * todo's id). Latency = t1 - t0, on this process's clock; the push's response
 * time and t0 → first POKE are kept too. Every sample also checks that the
 * push was applied (ok, not a duplicate). A sample with no change after 5 s
 * counts as missing.
 *
 * Two loads: idle (nothing else), and with 4 background pushers
 * (bench/clients/e2e-pushers.ts, a process of its own: closed loop, one
 * mutation per push, each its own client_id and its own scope of the same
 * server, never `e2e`).
 *
 * The machine is shared and noisy, so the servers are measured in rounds: in
 * each round every server (in alternating order) takes a chunk of idle
 * samples, then a chunk under load (the pushers started on it, a warm-up,
 * the samples, the pushers stopped). Reported per server and load: p50 / p90
 * / p99 over every sample, the ratio ours / baseline, and the ratio of each
 * round's p50s (its spread shows the noise).
 *
 * Usage: npm run bench -- e2e [--quick]
 */
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import * as Child from "./lib/child.js"
import * as Db from "./lib/db.js"
import * as Live from "./lib/live.js"
import * as Load from "./lib/load.js"
import { printTable, writeResult } from "./lib/results.js"
import { fmt, median, ratio, round, type Summary, summarize } from "./lib/stats.js"

const quick = process.argv.includes("--quick")
const config = {
  rounds: quick ? 3 : 10,
  /** samples per (round, server, load): rounds × this per configuration */
  chunk: quick ? 25 : 50,
  warmupSamples: quick ? 30 : 60,
  gapMs: 5,
  backgroundPushers: 4,
  /** after starting the pushers, before the first sample */
  loadWarmupMs: 300,
  /** after stopping them, before the next chunk */
  settleMs: 250,
  sampleTimeoutMs: 5000,
  scope: "e2e"
}

const tmp = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "mizu-bench-"))
process.on("exit", () => NodeFs.rmSync(tmp, { recursive: true, force: true }))
// Bounded in time whatever happens (run.ts stops it at 6 min).
setTimeout(() => {
  console.error("e2e: global timeout (5 min), giving up")
  process.exit(2)
}, 5 * 60_000).unref()

type Kind = "ours-notrace" | "ours" | "baseline"
const kinds: ReadonlyArray<Kind> = ["ours-notrace", "ours", "baseline"]
const label: Record<Kind, string> = {
  "ours-notrace": "ours (tracing: false)",
  ours: "ours (tracing on)",
  baseline: "baseline node:http + better-sqlite3 + ws"
}
type LoadKind = "idle" | "loaded"
const loads: ReadonlyArray<LoadKind> = ["idle", "loaded"]
const loadLabel: Record<LoadKind, string> = { idle: "idle", loaded: `${config.backgroundPushers} background pushers` }

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

// --- the probe ------------------------------------------------------------------

interface Sample {
  /** push sent → the pull response holding the change */
  readonly e2eMs: number
  /** push sent → its response */
  readonly pushMs: number
  /** push sent → the first POKE beyond the reader's cursor */
  readonly pokeMs: number
  /** pulls the reader sent for this sample */
  readonly pulls: number
}

interface Active {
  readonly todoId: string
  readonly t0: number
  pokeAt: number | undefined
  seenAt: number | undefined
  pushAt: number | undefined
  pulls: number
  problem: string | undefined
  readonly done: () => void
}

interface PullBody {
  readonly changes: ReadonlyArray<{ readonly cursor: number; readonly id: string }>
  readonly cursor: number
  readonly has_more: boolean
}

/** POST with up to 3 attempts: a keep-alive socket the server closed while idle fails before anything was read. */
const postRetrying = async (http: ReturnType<typeof Load.client>, path: string, body: string): Promise<Load.Response> => {
  for (let attempt = 1; ; attempt++) {
    try {
      return await http.post(path, body)
    } catch (e) {
      if (attempt >= 3) throw e
    }
  }
}

/** One server's reader and writer. */
const openProbe = async (kind: Kind, port: number) => {
  const scope = config.scope
  const writerId = `e2e-writer-${kind}`
  const readerId = `e2e-reader-${kind}`
  const writer = Load.client(port, 1)
  const readerHttp = Load.client(port, 1)
  let nextMutation = 0
  /** the reader's cursor in `scope`, and the highest cursor it was poked to */
  let have = 0
  let poked = 0
  let pulling = false
  let active: Active | undefined

  const pull = async (): Promise<void> => {
    if (pulling) return
    pulling = true
    try {
      while (poked > have) {
        if (active !== undefined) active.pulls++
        const response = await postRetrying(readerHttp, "/_sync/pull", JSON.stringify({ scope, cursor: have, limit: 100, client_id: readerId }))
        const at = performance.now()
        if (response.status !== 200) throw new Error(`pull: HTTP ${response.status}: ${response.body.slice(0, 200)}`)
        const body = JSON.parse(response.body) as PullBody
        if (active !== undefined && active.seenAt === undefined && body.changes.some((c) => c.id === active?.todoId)) {
          active.seenAt = at
          if (active.pushAt !== undefined) active.done()
        }
        have = body.cursor
        // a page that is not the last: the head is beyond it
        if (body.has_more && poked <= have) poked = have + 1
      }
    } catch (e) {
      if (active !== undefined) {
        active.problem ??= String(e)
        active.done()
      } else console.error(`  ${kind}: ${String(e)}`)
    } finally {
      pulling = false
    }
  }

  const { cursor: joinedAt, ws } = await Live.joinScope(port, scope, (frame, at, text) => {
    if (frame.type === 11 && frame.payload["scope"] === scope) {
      const cursor = frame.payload["cursor"] as number
      if (cursor <= have) return
      if (active !== undefined && active.pokeAt === undefined) active.pokeAt = at
      if (cursor > poked) poked = cursor
      void pull()
    } else if (frame.type === 8 || frame.type === 10) {
      console.error(`  ${kind}: reader got ${text}`)
    }
  })
  have = joinedAt
  poked = have
  ws.on("error", (e) => console.error(`  ${kind}: reader socket error: ${String(e)}`))
  ws.on("close", () => {
    if (active !== undefined) {
      active.problem ??= "reader socket closed"
      active.done()
    }
  })

  /** One push → POKE → pull; the reason when the sample is missing. */
  const sample = async (): Promise<Sample | string> => {
    const id = ++nextMutation
    const todoId = `${writerId}-${id}`
    let done: () => void = () => {}
    const finished = new Promise<void>((resolve) => (done = resolve))
    const t0 = performance.now()
    const a: Active = { todoId, t0, pokeAt: undefined, seenAt: undefined, pushAt: undefined, pulls: 0, problem: undefined, done }
    active = a
    const body = JSON.stringify({
      client_id: writerId,
      mutations: [{ id, name: "todo/create", scope, args: { id: todoId, title: `e2e ${id}` } }]
    })
    postRetrying(writer, "/_sync/push", body).then(
      (response) => {
        a.pushAt = performance.now()
        const result = response.status === 200
          ? (JSON.parse(response.body) as { results: Array<{ ok: boolean; duplicate?: boolean }> }).results[0]
          : undefined
        if (result === undefined || !result.ok || result.duplicate === true) {
          a.problem ??= `push: HTTP ${response.status}: ${response.body.slice(0, 200)}`
          done()
        } else if (a.seenAt !== undefined) done()
      },
      (e: unknown) => {
        a.problem ??= `push: ${String(e)}`
        done()
      }
    )
    let timer: ReturnType<typeof setTimeout> | undefined
    await Promise.race([finished, new Promise<void>((resolve) => (timer = setTimeout(resolve, config.sampleTimeoutMs)))])
    clearTimeout(timer)
    if (a.seenAt === undefined || a.pushAt === undefined || a.problem !== undefined) {
      // Let the push and the pulls of a failed sample finish before the next one.
      if (a.pushAt === undefined) await sleep(config.sampleTimeoutMs)
      active = undefined
      return a.problem ?? (a.pushAt === undefined ? "no push response" : a.pokeAt === undefined ? "no POKE" : "POKE but the pull did not hold the change")
    }
    active = undefined
    return {
      e2eMs: a.seenAt - t0,
      pushMs: a.pushAt - t0,
      pokeMs: (a.pokeAt ?? a.seenAt) - t0,
      pulls: a.pulls
    }
  }

  const close = () => {
    ws.terminate()
    writer.close()
    readerHttp.close()
  }
  return { sample, close }
}

// --- run ----------------------------------------------------------------------------

interface Chunk {
  readonly samples: Array<Sample>
  readonly missing: Array<string>
  readonly backgroundPushesPerSec?: number
  readonly backgroundErrors?: number
}

const takeSamples = async (probe: Awaited<ReturnType<typeof openProbe>>, n: number): Promise<Chunk> => {
  const samples: Array<Sample> = []
  const missing: Array<string> = []
  for (let i = 0; i < n; i++) {
    const s = await probe.sample()
    if (typeof s === "string") missing.push(s)
    else samples.push(s)
    await sleep(config.gapMs)
  }
  return { samples, missing }
}

interface BackgroundResult {
  readonly pushesPerSec: number
  readonly errors: number
  readonly firstError?: string
}

console.log(
  `e2e: ${config.rounds} rounds × ${config.chunk} samples per server and load (${config.rounds * config.chunk} per configuration), ` +
    `${config.gapMs} ms between samples; loaded = ${config.backgroundPushers} closed-loop pushers on other scopes`
)

const servers = {} as Record<Kind, Child.Child>
for (const kind of kinds) {
  const filename = NodePath.join(tmp, `e2e-${kind}.sqlite`)
  await Db.migrate(filename)
  servers[kind] = kind === "baseline"
    ? await Child.start("servers/baseline-sync.ts", { filename })
    : await Child.start("servers/mizu.ts", { filename, tracing: kind === "ours" })
}
const portOf = (kind: Kind) => servers[kind].ready["port"] as number
const pushers = await Child.start("clients/e2e-pushers.ts", {})
const probes = {} as Record<Kind, Awaited<ReturnType<typeof openProbe>>>
for (const kind of kinds) probes[kind] = await openProbe(kind, portOf(kind))

const loadedChunk = async (kind: Kind, n: number): Promise<Chunk> => {
  await pushers.call("start", { port: portOf(kind), workers: config.backgroundPushers, prefix: "bg" })
  await sleep(config.loadWarmupMs)
  const chunk = await takeSamples(probes[kind], n)
  const bg = await pushers.call<BackgroundResult>("stop")
  if (bg.errors > 0) console.error(`  ${kind}: ${bg.errors} background push errors, first: ${bg.firstError}`)
  await sleep(config.settleMs)
  return { ...chunk, backgroundPushesPerSec: bg.pushesPerSec, backgroundErrors: bg.errors }
}

// Warm-up: each server idle, then under load; not recorded.
for (const kind of kinds) {
  await takeSamples(probes[kind], config.warmupSamples)
  await loadedChunk(kind, Math.ceil(config.warmupSamples / 2))
}

const chunks: Record<Kind, Record<LoadKind, Array<Chunk>>> = {
  "ours-notrace": { idle: [], loaded: [] },
  ours: { idle: [], loaded: [] },
  baseline: { idle: [], loaded: [] }
}
const started = performance.now()
for (let r = 0; r < config.rounds; r++) {
  const order = r % 2 === 0 ? kinds : [...kinds].reverse()
  for (const kind of order) {
    chunks[kind].idle.push(await takeSamples(probes[kind], config.chunk))
    chunks[kind].loaded.push(await loadedChunk(kind, config.chunk))
  }
  const p50 = (kind: Kind, load: LoadKind) => summarize(chunks[kind][load][r].samples.map((s) => s.e2eMs)).p50
  console.log(
    `  round ${r + 1}/${config.rounds}: p50 idle ${kinds.map((k) => p50(k, "idle")).join(" / ")} ms, ` +
      `loaded ${kinds.map((k) => p50(k, "loaded")).join(" / ")} ms (${kinds.join(" / ")})`
  )
}
const measuredMs = performance.now() - started
for (const kind of kinds) probes[kind].close()
await pushers.stop()
for (const kind of kinds) await servers[kind].stop()

// --- report -------------------------------------------------------------------------

interface Figures {
  readonly samples: number
  readonly missing: number
  readonly firstMissing?: string
  readonly e2eMs: Summary
  readonly pushResponseMs: Summary
  readonly firstPokeMs: Summary
  readonly pullsPerSample: number
  readonly roundP50Ms: ReadonlyArray<number>
  readonly backgroundPushesPerSec?: number
  readonly backgroundErrors?: number
}

const figures = (kind: Kind, load: LoadKind): Figures => {
  const cs = chunks[kind][load]
  const all = cs.flatMap((c) => c.samples)
  const missing = cs.flatMap((c) => c.missing)
  const bg = cs.map((c) => c.backgroundPushesPerSec).filter((x): x is number => x !== undefined)
  return {
    samples: all.length,
    missing: missing.length,
    ...(missing.length === 0 ? {} : { firstMissing: missing[0] }),
    e2eMs: summarize(all.map((s) => s.e2eMs)),
    pushResponseMs: summarize(all.map((s) => s.pushMs)),
    firstPokeMs: summarize(all.map((s) => s.pokeMs)),
    pullsPerSample: round(all.reduce((n, s) => n + s.pulls, 0) / Math.max(1, all.length), 2),
    roundP50Ms: cs.map((c) => summarize(c.samples.map((s) => s.e2eMs)).p50),
    ...(bg.length === 0
      ? {}
      : { backgroundPushesPerSec: round(median(bg), 0), backgroundErrors: cs.reduce((n, c) => n + (c.backgroundErrors ?? 0), 0) })
  }
}

const results: Record<string, Record<string, unknown>> = {}
const rows: Array<Array<string>> = [[
  "load",
  "server",
  "n",
  "p50 ms",
  "p90 ms",
  "p99 ms",
  "p50 ours/base",
  "p99 ours/base",
  "round p50 ratios",
  "push resp p50",
  "POKE p50",
  "bg pushes/s",
  "missing"
]]
for (const load of loads) {
  const base = figures("baseline", load)
  results[load] = { baseline: base }
  for (const kind of kinds) {
    const f = kind === "baseline" ? base : figures(kind, load)
    const roundRatios = f.roundP50Ms.map((p, i) => ratio(p, base.roundP50Ms[i]))
    if (kind !== "baseline") {
      results[load][kind.replace("-", "_")] = f
      results[load][`ratio_${kind.replace("-", "_")}`] = {
        p50: ratio(f.e2eMs.p50, base.e2eMs.p50),
        p99: ratio(f.e2eMs.p99, base.e2eMs.p99),
        round_p50: roundRatios
      }
    }
    rows.push([
      loadLabel[load],
      label[kind],
      String(f.samples),
      String(f.e2eMs.p50),
      String(f.e2eMs.p90),
      String(f.e2eMs.p99),
      kind === "baseline" ? "1.00" : ratio(f.e2eMs.p50, base.e2eMs.p50).toFixed(2),
      kind === "baseline" ? "1.00" : ratio(f.e2eMs.p99, base.e2eMs.p99).toFixed(2),
      kind === "baseline" ? "" : `${Math.min(...roundRatios).toFixed(2)}..${Math.max(...roundRatios).toFixed(2)}`,
      String(f.pushResponseMs.p50),
      String(f.firstPokeMs.p50),
      f.backgroundPushesPerSec === undefined ? "" : fmt(f.backgroundPushesPerSec),
      String(f.missing)
    ])
  }
}
console.log(`\nEnd to end, push sent → POKE → the pull response holding the change (${fmt(measuredMs / 1000, 1)} s of rounds):`)
printTable(rows)
const anyMissing = kinds.some((k) => loads.some((l) => figures(k, l).missing > 0))
if (anyMissing) console.error("\nsome samples are missing (see `missing` and `firstMissing` in the results)")

const file = writeResult("e2e", { config, measured_s: round(measuredMs / 1000, 1), ...results })
console.log(`\nwrote ${NodePath.relative(process.cwd(), file)}`)
process.exit(anyMissing ? 1 : 0)
