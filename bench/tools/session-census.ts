/**
 * What a server holds per open live session, by object kind: starts our
 * server (bench/servers/mizu.ts, ticker off so no TICK sits in the inboxes),
 * warms up, writes a heap snapshot, opens `n` sessions (each JOINs a scope;
 * or another upgrade path of servers/upgrade-variants.ts with `--path=`),
 * writes a second snapshot, and prints the per-session census (heap-census.ts).
 *
 * `--tracing=off` runs the server with `tracing: false` (as bench/idle-sessions.ts does).
 * `--keep=dir` keeps the two snapshots there (for tools/retainers.ts).
 *
 * Usage: node --conditions=source --import tsx bench/tools/session-census.ts [--n=1000] [--path=/bench/own-wss] [--rows=30] [--keep=dir] [--tracing=off]
 */
import { execFileSync } from "node:child_process"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import * as Child from "../lib/child.js"
import * as Db from "../lib/db.js"
import { benchDir } from "../lib/results.js"

const option = (name: string, fallback: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
const n = Number(option("n", "1000"))
const path = option("path", "/_live/websocket")
const rows = option("rows", "30")
const keep = option("keep", "")
const tracing = option("tracing", "on") !== "off"

const tmp = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "mizu-census-"))
const filename = NodePath.join(tmp, "census.sqlite")
await Db.migrate(filename)
const server = await Child.start("servers/mizu.ts", { filename, variants: true, tickInterval: "1 hour", tracing }, { nodeFlags: ["--expose-gc"] })
const clients = await Child.start("clients/ws-clients.ts", {})
try {
  const scope = path === "/_live/websocket" ? "census" : undefined
  await clients.call("open", { port: server.ready["port"], n: 100, concurrency: 50, path, scope })
  await clients.call("close")
  await new Promise((r) => setTimeout(r, 1000))
  if (keep !== "") NodeFs.mkdirSync(keep, { recursive: true })
  const before = NodePath.join(keep === "" ? tmp : keep, "before.heapsnapshot")
  const after = NodePath.join(keep === "" ? tmp : keep, "after.heapsnapshot")
  await server.call("snapshot", { file: before }, 300_000)
  await clients.call("open", { port: server.ready["port"], n, concurrency: 50, path, scope }, 300_000)
  await new Promise((r) => setTimeout(r, 1000))
  await server.call("snapshot", { file: after }, 300_000)
  console.log(`${path}: ${n} sessions`)
  execFileSync(process.execPath, ["--import", "tsx", NodePath.join(benchDir, "tools", "heap-census.ts"), before, after, String(n), rows], {
    stdio: "inherit"
  })
} finally {
  await clients.stop()
  await server.stop()
  NodeFs.rmSync(tmp, { recursive: true, force: true })
}
process.exit(0)
