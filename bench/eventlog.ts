/**
 * Writes/s and delivery to another connected client: ours against the
 * Effect-native peer, Effect's own `EventLogServer` (`@effect/experimental`
 * 0.61.1), measured in the same run (issue #17, item 5).
 *
 * Processes (each on 127.0.0.1; the servers and the two client processes are
 * children of this one, which only coordinates):
 * - the peer: `servers/eventlog-server.ts`, `EventLogServer.makeHandlerHttp`
 *   with `SqlEventLogServer.layerStorageSubtle` on SQLite (a file, WAL,
 *   `synchronous = NORMAL`, `busy_timeout = 5000`: our `layerSqlite`'s
 *   settings), and `clients/eventlog-peer.ts`: Effect's `EventLogRemote`
 *   WebSocket client, one connection per writer plus one reader, all one
 *   `Identity`;
 * - ours: `servers/mizu.ts` (`Server.layer`, `SqlStorage.layerSqlite` on a
 *   file, WAL, `synchronous = NORMAL`, memory pub/sub, allow-all), with
 *   `tracing: false` unless `--tracing`, and `clients/eventlog-mizu.ts`: the
 *   shared HTTP load generator for the writers and one `ws` reader that JOINs
 *   the scope and pulls on POKE.
 *
 * What each side does per write:
 * - the peer: the client encodes the payload (MsgPack), builds an `Entry`,
 *   encrypts it (AES-GCM) and sends one `WriteEntries` frame; the server
 *   decodes the frame and stores the opaque entry (`INSERT … ON CONFLICT DO
 *   NOTHING` into the identity's table, then a `SELECT` of it by entry id for
 *   its sequence; autocommitted, no explicit transaction), offers it to the
 *   identity's PubSub, answers `Ack`, and sends a `Changes` frame with the
 *   entry to the reader's connection. No handler or mutator runs on the
 *   server, there is no domain table, no dedupe ledger per client, no
 *   authorization; the server never decrypts.
 * - ours: one `POST /_sync/push` with `client_id` and one `todo/create`
 *   mutation; the server decodes and validates the body, then in one SQLite
 *   transaction checks the client's ledger (exactly once), runs the mutator
 *   (a read and a write of the `todo` row in the domain table), appends the
 *   change to the scope's log at the next gap-free cursor and updates the
 *   ledger, commits, answers the results, and POKEs the scope's sessions;
 *   the reader, on POKE, sends `POST /_sync/pull` and gets the change.
 *
 * Load: `writers` (32) concurrent writers on each side, one write in flight
 * each (the next is sent when the last is acknowledged: the peer's `Ack`, our
 * 200 with `ok: true`). The two sides are measured in short slices, alternating
 * (the machine is shared and noisy); each side's writes/s is the median slice,
 * the ratio is ours / peer of the medians. Delivery latency: write sent →
 * the other connected client holds it (the peer: the reader's mailbox yields
 * the decrypted entry; ours: the reader's pull response containing the change
 * is parsed), timed in the client process that sends and reads, pooled over
 * the measured slices; after each slice the reader gets up to `settleMs` to
 * catch up, and anything still missing is counted as undelivered. Also
 * reported: the write's acknowledgement latency, the server's CPU per
 * write (process CPU time over the slice / writes), and the client process's
 * CPU / wall time (near 1.0 means the clients, not the server, set the pace).
 *
 * Usage: npm run bench -- eventlog [--quick] [--tracing]
 */
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import * as Child from "./lib/child.js"
import { printTable, writeResult } from "./lib/results.js"
import { fmt, median, ratio, round, type Summary, summarize } from "./lib/stats.js"

const quick = process.argv.includes("--quick")
const tracing = process.argv.includes("--tracing")
const config = {
  writers: 32,
  warmupMs: quick ? 1_000 : 2_000,
  sliceMs: quick ? 4_000 : 6_000,
  slices: quick ? 3 : 5,
  settleMs: 5_000,
  tracing
}

const tmp = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "mizu-bench-eventlog-"))
process.on("exit", () => NodeFs.rmSync(tmp, { recursive: true, force: true }))
// Bounded in time whatever happens (run.ts stops it at 6 min too).
setTimeout(() => {
  console.error("eventlog: global timeout (5 min), giving up")
  process.exit(2)
}, 5 * 60_000).unref()

type Side = "peer" | "ours"
const sides: ReadonlyArray<Side> = ["peer", "ours"]
const label: Record<Side, string> = {
  peer: "peer: Effect EventLogServer + SqlEventLogServer (SQLite)",
  ours: `ours: Server.layer + SqlStorage.layerSqlite (tracing ${tracing ? "on" : "off"})`
}

interface SliceResult {
  readonly writes: number
  readonly errors: number
  readonly firstError: string | undefined
  readonly elapsedMs: number
  readonly writesPerSec: number
  readonly ack: Summary
  readonly delivery: Summary
  readonly deliverySamples: ReadonlyArray<number>
  readonly undelivered: number
  readonly received: number
}

interface Measured extends Omit<SliceResult, "deliverySamples"> {
  readonly serverCpuMsPerWrite: number
  /** The side's client process (writers and reader): CPU time / wall time of the slice. */
  readonly clientCpuShare: number
}

console.log(
  `eventlog: ${config.writers} writers per side, one write in flight each; ${config.slices} alternating slices of ${config.sliceMs} ms per side after ${config.warmupMs} ms warm-up; ours with tracing ${tracing ? "on" : "off"}`
)

const [peerServer, oursServer] = await Promise.all([
  Child.start("servers/eventlog-server.ts", { filename: NodePath.join(tmp, "peer.sqlite") }),
  Child.start("servers/mizu.ts", { filename: NodePath.join(tmp, "ours.sqlite"), tracing })
])
const [peerClient, oursClient] = await Promise.all([
  Child.start("clients/eventlog-peer.ts", {}),
  Child.start("clients/eventlog-mizu.ts", {})
])
const servers: Record<Side, Child.Child> = { peer: peerServer, ours: oursServer }
const clients: Record<Side, Child.Child> = { peer: peerClient, ours: oursClient }

const pragmas = await peerServer.call<{ journal_mode: string; synchronous: number }>("pragmas")
console.log(`  peer's SQLite: journal_mode=${pragmas.journal_mode}, synchronous=${pragmas.synchronous} (1 = NORMAL)`)
if (pragmas.journal_mode !== "wal" || pragmas.synchronous !== 1) throw new Error(`peer's SQLite settings differ from ours: ${JSON.stringify(pragmas)}`)

const peerUrl = `ws://127.0.0.1:${peerServer.ready["port"] as number}${peerServer.ready["path"] as string}`
await peerClient.call("connect", { url: peerUrl, writers: config.writers })
await oursClient.call("connect", { port: oursServer.ready["port"] as number })

const cpuMs = async (child: Child.Child) => (await child.call<{ totalMs: number }>("cpu")).totalMs

const runSlice = async (side: Side, ms: number): Promise<SliceResult & Omit<Measured, keyof SliceResult>> => {
  const [server0, client0] = await Promise.all([cpuMs(servers[side]), cpuMs(clients[side])])
  const t0 = performance.now()
  const r = await clients[side].call<SliceResult>("slice", { ms, writers: config.writers, settleMs: config.settleMs }, ms + config.settleMs + 60_000)
  const wallMs = performance.now() - t0
  const [server1, client1] = await Promise.all([cpuMs(servers[side]), cpuMs(clients[side])])
  if (r.errors > 0) console.error(`  ${side}: ${r.errors} errors, first: ${r.firstError}`)
  if (r.undelivered > 0) console.error(`  ${side}: ${r.undelivered} writes not at the reader ${config.settleMs} ms after the slice`)
  return {
    ...r,
    serverCpuMsPerWrite: round((server1 - server0) / Math.max(1, r.writes), 4),
    clientCpuShare: round((client1 - client0) / wallMs, 2)
  }
}

for (const side of sides) await runSlice(side, config.warmupMs)

const slices: Record<Side, Array<Measured>> = { peer: [], ours: [] }
const samples: Record<Side, Array<number>> = { peer: [], ours: [] }
for (let i = 0; i < config.slices; i++) {
  const order = i % 2 === 0 ? sides : [...sides].reverse()
  for (const side of order) {
    const { deliverySamples, ...r } = await runSlice(side, config.sliceMs)
    slices[side].push({ ...r, writesPerSec: round(r.writesPerSec, 0) })
    for (const x of deliverySamples) samples[side].push(x)
  }
}

await Promise.all([...sides.map((s) => clients[s].stop()), ...sides.map((s) => servers[s].stop())])

const summary = (side: Side) => {
  const all = slices[side]
  const m = median(all.map((s) => s.writesPerSec))
  const nearest = all.reduce((best, s) => (Math.abs(s.writesPerSec - m) < Math.abs(best.writesPerSec - m) ? s : best))
  return {
    writesPerSec: round(m, 0),
    /** The median slice's acknowledgement latency (ms). */
    ack: nearest.ack,
    /** Delivery latency over every measured slice (ms). */
    delivery: summarize(samples[side]),
    serverCpuMsPerWrite: round(median(all.map((s) => s.serverCpuMsPerWrite)), 4),
    clientCpuShare: round(median(all.map((s) => s.clientCpuShare)), 2),
    writes: all.reduce((n, s) => n + s.writes, 0),
    errors: all.reduce((n, s) => n + s.errors, 0),
    undelivered: all.reduce((n, s) => n + s.undelivered, 0)
  }
}
const peer = summary("peer")
const ours = summary("ours")
const sliceRatios = slices.ours.map((s, i) => ratio(s.writesPerSec, slices.peer[i].writesPerSec))

for (const side of sides) {
  console.log(`  ${side.padEnd(5)} slices writes/s: ${slices[side].map((s) => fmt(s.writesPerSec)).join(", ")}`)
}
console.log("")
const rows: Array<Array<string>> = [
  ["figure", "peer (EventLogServer)", `ours (tracing ${tracing ? "on" : "off"})`, "ours/peer"],
  ["writes/s acknowledged (median slice)", fmt(peer.writesPerSec), fmt(ours.writesPerSec), ratio(ours.writesPerSec, peer.writesPerSec).toFixed(2)],
  ["  ours/peer per slice pair", "", "", `${Math.min(...sliceRatios).toFixed(2)}..${Math.max(...sliceRatios).toFixed(2)}`],
  ["delivery to the other client p50 ms", fmt(peer.delivery.p50, 1), fmt(ours.delivery.p50, 1), ratio(ours.delivery.p50, peer.delivery.p50).toFixed(2)],
  ["delivery to the other client p99 ms", fmt(peer.delivery.p99, 1), fmt(ours.delivery.p99, 1), ratio(ours.delivery.p99, peer.delivery.p99).toFixed(2)],
  ["write acknowledged p50 ms", fmt(peer.ack.p50, 1), fmt(ours.ack.p50, 1), ratio(ours.ack.p50, peer.ack.p50).toFixed(2)],
  ["write acknowledged p99 ms", fmt(peer.ack.p99, 1), fmt(ours.ack.p99, 1), ratio(ours.ack.p99, peer.ack.p99).toFixed(2)],
  ["server CPU per write ms", fmt(peer.serverCpuMsPerWrite, 3), fmt(ours.serverCpuMsPerWrite, 3), ratio(ours.serverCpuMsPerWrite, peer.serverCpuMsPerWrite).toFixed(2)],
  ["client process CPU / wall (writers + reader)", fmt(peer.clientCpuShare, 2), fmt(ours.clientCpuShare, 2), ""],
  ["writes / errors / undelivered", `${fmt(peer.writes)} / ${peer.errors} / ${peer.undelivered}`, `${fmt(ours.writes)} / ${ours.errors} / ${ours.undelivered}`, ""]
]
printTable(rows)
console.log(`  (delivery: write sent → the other connected client holds it; ${fmt(peer.delivery.n)} / ${fmt(ours.delivery.n)} samples)`)

const file = writeResult("eventlog", {
  config,
  peer_sqlite: pragmas,
  sides: label,
  peer,
  ours,
  ratio: {
    writes_per_sec: ratio(ours.writesPerSec, peer.writesPerSec),
    delivery_p50: ratio(ours.delivery.p50, peer.delivery.p50),
    delivery_p99: ratio(ours.delivery.p99, peer.delivery.p99),
    ack_p50: ratio(ours.ack.p50, peer.ack.p50),
    ack_p99: ratio(ours.ack.p99, peer.ack.p99),
    server_cpu_per_write: ratio(ours.serverCpuMsPerWrite, peer.serverCpuMsPerWrite)
  },
  slice_ratios: sliceRatios,
  slices
})
console.log(`\nwrote ${NodePath.relative(process.cwd(), file)}`)
process.exit(0)
