/**
 * Where opening a session spends its CPU: starts our server
 * (bench/servers/mizu.ts), warms up, then profiles (V8 sampling profiler) a
 * burst of `n` sessions opened 50 at a time, each JOINing a scope, and prints
 * the functions with the most self time and the source files that add up to
 * the most (self time per file).
 *
 * Usage: node --conditions=source --import tsx bench/tools/open-profile.ts [--n=1500] [--rows=30] [--scope=room|none]
 */
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import * as Child from "../lib/child.js"
import * as Db from "../lib/db.js"

const option = (name: string, fallback: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
const n = Number(option("n", "1500"))
const rows = Number(option("rows", "30"))
const scope = option("scope", "room")
const match = new RegExp(option("match", "src/|httpServer|websocket-server|_http_server"))

interface Node {
  readonly id: number
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number }
  readonly hitCount?: number
  readonly children?: ReadonlyArray<number>
}
interface Profile {
  readonly nodes: ReadonlyArray<Node>
  readonly samples: ReadonlyArray<number>
  readonly timeDeltas: ReadonlyArray<number>
}

const tmp = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "mizu-prof-"))
const filename = NodePath.join(tmp, "prof.sqlite")
await Db.migrate(filename)
const server = await Child.start("servers/mizu.ts", { filename, tickInterval: "1 hour" })
const clients = await Child.start("clients/ws-clients.ts", {})
try {
  const open = (count: number) =>
    clients.call("open", { port: server.ready["port"], n: count, concurrency: 50, ...(scope === "none" ? {} : { scope }) }, 300_000)
  await open(300)
  await clients.call("close")
  await new Promise((r) => setTimeout(r, 1000))
  const file = NodePath.join(tmp, "open.cpuprofile")
  await server.call("prof-start", { intervalUs: 100 })
  await open(n)
  await server.call("prof-stop", { file })
  const profile = JSON.parse(NodeFs.readFileSync(file, "utf8")) as Profile
  const byId = new Map(profile.nodes.map((node) => [node.id, node]))
  const self = new Map<string, number>()
  const perFile = new Map<string, number>()
  const inclusive = new Map<string, number>()
  const parent = new Map<number, number>()
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id)
  const keyOf = (f: Node["callFrame"]) =>
    `${f.functionName || "(anonymous)"} ${f.url.replace(/^.*node_modules\//, "").replace(/^file:\/\/.*\/main\//, "")}:${f.lineNumber + 1}`
  let total = 0
  for (let i = 0; i < profile.samples.length; i++) {
    const node = byId.get(profile.samples[i]) as Node
    const dt = profile.timeDeltas[i] ?? 0
    total += dt
    const f = node.callFrame
    const short = f.url.replace(/^.*node_modules\//, "").replace(/^file:\/\/.*\/main\//, "")
    const key = `${f.functionName || "(anonymous)"} ${short}:${f.lineNumber + 1}`
    self.set(key, (self.get(key) ?? 0) + dt)
    const fileKey = short === "" ? `(${f.functionName})` : short
    perFile.set(fileKey, (perFile.get(fileKey) ?? 0) + dt)
    const seen = new Set<string>()
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      const k = keyOf((byId.get(id) as Node).callFrame)
      if (!seen.has(k) && match.test(k)) {
        seen.add(k)
        inclusive.set(k, (inclusive.get(k) ?? 0) + dt)
      }
    }
  }
  const show = (title: string, m: Map<string, number>) => {
    console.log(`\n${title}`)
    for (const [key, us] of [...m].sort((a, b) => b[1] - a[1]).slice(0, rows)) {
      console.log(`${(us / 1000 / n).toFixed(3).padStart(8)} ms/session ${((us / total) * 100).toFixed(1).padStart(5)}%  ${key}`)
    }
  }
  console.log(`${n} sessions (${scope === "none" ? "no JOIN" : `JOIN ${scope}`}): ${(total / 1000 / n).toFixed(2)} ms of main-thread samples per session`)
  show("self time by function", self)
  show("self time by file", perFile)
  show(`inclusive time, functions matching ${match}`, inclusive)
} finally {
  await clients.stop()
  await server.stop()
  NodeFs.rmSync(tmp, { recursive: true, force: true })
}
process.exit(0)
