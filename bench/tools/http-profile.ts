/**
 * A CPU profile of our HTTP server under push load: `servers/mizu.ts`
 * (SQLite file, WAL, tracing off) started with `--cpu-prof`, 32 keep-alive
 * clients pushing `--batch` mutations each (default 1) for `--ms` (default
 * 4000) after their connections are open, then the server stopped so the
 * profile is written to `--dir` (default a temp directory, printed). Prints
 * req/s, the server's CPU per request during the load (Linux: from
 * /proc/<pid>/stat) and the mean group size (`mizu_push_group_size`).
 * `--no-profile`: the same without `--cpu-prof` (its overhead).
 *
 * `--server=http-floor`: `servers/http-floor.ts` instead (our HTTP path over
 * an engine that costs nothing); `--server=http-engine`: the same sync routes
 * over the real engine and nothing else of `Server.layer`; `--server=baseline`:
 * the hand-written baseline (`servers/baseline-http.ts`), for its CPU per request;
 * `--server=platform-router|platform-app|platform-raw`: `servers/platform-min.ts`
 * (the platform's own floor: read the body, answer a constant).
 *
 * Usage: node --conditions=source --import tsx bench/tools/http-profile.ts [--batch=1] [--ms=4000] [--dir=/tmp/prof] [--no-profile] [--server=http-floor|http-engine|baseline|platform-router|platform-app|platform-raw]
 */
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import * as Child from "../lib/child.js"
import * as Db from "../lib/db.js"
import * as Load from "../lib/load.js"

const option = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3)
const batch = Number(option("batch") ?? 1)
const ms = Number(option("ms") ?? 4000)
const tmp = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "mizu-http-profile-"))
const dir = option("dir") ?? NodePath.join(tmp, "profile")
const filename = NodePath.join(tmp, "ours.sqlite")
await Db.migrate(filename)
const profiled = !process.argv.includes("--no-profile")
// `--server=http-floor`: our HTTP path over an engine that costs nothing, for comparison
const serverKind = option("server")
const platformMode = serverKind?.startsWith("platform-") ? serverKind.slice("platform-".length) : undefined
const script = serverKind === "baseline"
  ? "servers/baseline-http.ts"
  : platformMode !== undefined
  ? "servers/platform-min.ts"
  : serverKind === "http-floor" || serverKind === "http-engine"
  ? "servers/http-floor.ts"
  : "servers/mizu.ts"
const server = await Child.start(script, serverKind === "http-floor" ? {} : platformMode !== undefined ? { mode: platformMode } : serverKind === "baseline" ? { filename } : { filename, tracing: false }, {
  nodeFlags: [...(profiled ? ["--cpu-prof", `--cpu-prof-dir=${dir}`] : []), ...Child.nodeFlagsFrom("PROFILE_FLAGS")]
})
const port = Number(server.ready["port"])
/** The server's user + system CPU so far, in ms (clock ticks of /proc/<pid>/stat, 100 per second). */
const cpuMs = () => {
  const fields = NodeFs.readFileSync(`/proc/${server.pid}/stat`, "utf8").split(") ")[1].split(" ")
  return (Number(fields[11]) + Number(fields[12])) * 10
}
let cpuAtStart = 0
const result = await Load.run({
  port,
  path: "/_sync/push",
  workers: 32,
  maxPerWorker: 1_000_000,
  durationMs: ms,
  body: (w, seq) => {
    const clientId = `c${w}`
    const mutations = Array.from({ length: batch }, (_, k) => {
      const id = seq * batch + k + 1
      return { id, name: "todo/create", scope: "bench", args: { id: `${clientId}-${id}`, title: `buy milk ${id}` } }
    })
    return JSON.stringify({ client_id: clientId, mutations })
  },
  warmup: { path: "/_sync/pull", body: JSON.stringify({ scope: "warm", cursor: 0 }) },
  check: (_response, worker, seq) => {
    if (worker === 0 && seq === 0) cpuAtStart = cpuMs()
    return undefined
  }
})
const cpuPerRequest = ((cpuMs() - cpuAtStart) * 1000) / result.requests
const metrics = serverKind === "baseline" || platformMode !== undefined ? "" : await (await fetch(`http://127.0.0.1:${port}/_sync/metrics`)).text()
const groups = metrics.split("\n").filter((line) => line.startsWith("mizu_push_group_size_sum") || line.startsWith("mizu_push_group_size_count"))
await server.stop(10_000)
console.log(
  `${Math.round(result.reqPerSec)} req/s, ${result.errors} errors, server CPU ~${Math.round(cpuPerRequest)} µs/request; ${groups.join(", ")}${
    profiled ? `; profile in ${dir}` : ""
  }`
)
process.exit(0)
