/**
 * A lone push over HTTP: one keep-alive connection, one 1-mutation push at a
 * time, back to back and with a 5 ms pause before each (as end to end's
 * idle samples are), after 2,000 untimed pushes; prints the p50 / p90
 * latency and the server process's CPU per push (user + system, read over
 * IPC before and after each series). For each server named:
 * - `floor`: bench/servers/http-floor.ts with no file (our sync routes over
 *   an engine that costs nothing);
 * - `engine`: the same routes over the real engine (`Server.layerEngine`
 *   on SQLite);
 * - `mizu`: bench/servers/mizu.ts (`Server.layer`, tracing off);
 * - `baseline`: bench/servers/baseline-sync.ts (node:http + better-sqlite3).
 * With `PROF=1` each server also writes a CPU profile of 3,000 back-to-back
 * pushes to /tmp/prof/<server>.cpuprofile (50 µs sampling).
 *
 * `--pull`: the same for lone pulls (cursor 0, limit 1, with a client_id)
 * after the untimed pushes.
 *
 * Usage: node --import tsx bench/tools/lone-push.ts [floor,engine,mizu,baseline] [--pull]
 */
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import * as Child from "../lib/child.js"
import * as Db from "../lib/db.js"
import * as Load from "../lib/load.js"

const servers: Record<string, { readonly script: string; readonly arg: (file: string) => unknown }> = {
  floor: { script: "servers/http-floor.ts", arg: () => ({}) },
  engine: { script: "servers/http-floor.ts", arg: (filename) => ({ filename }) },
  mizu: { script: "servers/mizu.ts", arg: (filename) => ({ filename, tracing: false }) },
  baseline: { script: "servers/baseline-sync.ts", arg: (filename) => ({ filename }) }
}
const names = (process.argv[2] !== undefined && !process.argv[2].startsWith("--") ? process.argv[2] : "floor,engine,mizu,baseline").split(",")
/** `--pull`: time lone pulls (cursor 0, limit 1, with a client_id) instead of pushes, after the same untimed pushes. */
const pulls = process.argv.includes("--pull")
const samples = 400
const tmp = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "mizu-lone-"))
process.on("exit", () => NodeFs.rmSync(tmp, { recursive: true, force: true }))

for (const name of names) {
  const server = servers[name]
  if (server === undefined) throw new Error(`unknown server ${name} (one of ${Object.keys(servers).join(", ")})`)
  const file = NodePath.join(tmp, `${name}.sqlite`)
  await Db.migrate(file)
  // `LONE_FLAGS`: node flags for the server (e.g. `--single-threaded-gc`, `--trace-deopt`)
  const child = await Child.start(server.script, server.arg(file), { nodeFlags: Child.nodeFlagsFrom("LONE_FLAGS") })
  const http = Load.client(child.ready["port"] as number, 1)
  let id = 1
  const push = () =>
    http.postOk(
      "/_sync/push",
      JSON.stringify({ client_id: "lone", mutations: [{ id, name: "todo/create", scope: "lone", args: { id: `t${id++}`, title: "x" } }] })
    )
  for (let i = 0; i < 2000; i++) await push()
  const pull = () => http.postOk("/_sync/pull", JSON.stringify({ scope: "lone", cursor: 0, limit: 1, client_id: "lone" }))
  const op = pulls ? pull : push
  for (const gapMs of [0, 5]) {
    const times: Array<number> = []
    const before = await child.call<{ totalMs: number }>("cpu")
    for (let i = 0; i < samples; i++) {
      if (gapMs > 0) await new Promise((resolve) => setTimeout(resolve, gapMs))
      const t0 = performance.now()
      await op()
      times.push(performance.now() - t0)
    }
    const after = await child.call<{ totalMs: number }>("cpu")
    times.sort((a, b) => a - b)
    console.log(
      `${name.padEnd(8)} pause ${gapMs} ms: p50 ${times[samples / 2].toFixed(3)} ms, p90 ${times[Math.floor(samples * 0.9)].toFixed(3)} ms, server CPU ${((after.totalMs - before.totalMs) / samples).toFixed(3)} ms/${pulls ? "pull" : "push"}`
    )
    if (gapMs === 0 && process.env["PROF"] === "1") {
      NodeFs.mkdirSync("/tmp/prof", { recursive: true })
      await child.call("prof-start", { intervalUs: 50 })
      for (let i = 0; i < 3000; i++) await op()
      await child.call("prof-stop", { file: `/tmp/prof/${name}.cpuprofile` })
    }
  }
  http.close()
  await child.stop()
}
