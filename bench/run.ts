/**
 * `npm run bench` — run every benchmark, one after the other, each in a
 * process of its own; `npm run bench -- <name>…` runs the ones named (a
 * prefix is enough: `push` runs push-pull). `--quick` makes each one
 * shorter; `--list` lists them; `--source` runs our package from src/
 * through tsx instead of the compiled package, which is built first (what
 * an app runs; tsx's `keepNames` costs our closures a `__name` call each).
 * Results go to bench/results/<name>.json.
 *
 * Every benchmark prints its figures next to a hand-written baseline measured
 * in the same run, with the ratio; see bench/README.md.
 */
import { execFileSync, spawn } from "node:child_process"
import * as NodePath from "node:path"
import * as Child from "./lib/child.js"
import { benchDir, repoDir } from "./lib/results.js"

interface Bench {
  readonly name: string
  readonly what: string
  readonly nodeFlags: ReadonlyArray<string>
  readonly timeoutMs: number
  /** Long: runs only when named (`npm run bench -- load`). */
  readonly onlyWhenNamed?: boolean
}

const all: ReadonlyArray<Bench> = [
  { name: "push-engine", what: "SyncEngine.push in process (no HTTP) vs the same better-sqlite3 transaction", nodeFlags: [], timeoutMs: 2 * 60_000 },
  { name: "push-pull", what: "push (1 and 50 mutations) and pull throughput over HTTP, pull latency at 1k vs 1M rows; vs node:http + better-sqlite3", nodeFlags: [], timeoutMs: 6 * 60_000 },
  { name: "poke-fanout", what: "poke latency at 1k and 5k subscribers, memory per idle session at 10k; vs a plain ws server", nodeFlags: [], timeoutMs: 11 * 60_000 },
  { name: "ws-open", what: "opening sessions (500, 50 at a time) and where the time goes; vs a plain ws server", nodeFlags: [], timeoutMs: 7 * 60_000 },
  { name: "session-shapes", what: "per-session inbox consumer shapes: heap and CPU per wake-up; vs a callback sink", nodeFlags: ["--expose-gc"], timeoutMs: 3 * 60_000 },
  { name: "push-tail", what: "push p99 over HTTP, 32 in flight: before (--rev, default the tree before group commit) and after, and whether the slow requests were overtaken (unfair queueing) or the whole server stalled", nodeFlags: [], timeoutMs: 5 * 60_000 },
  { name: "e2e", what: "push → POKE → pull shows the change, idle and with 4 background pushers; vs a hand-written push/pull/poke server (node:http + better-sqlite3 + ws)", nodeFlags: [], timeoutMs: 6 * 60_000 },
  { name: "eventlog", what: "writes/s with 32 writers and delivery to another connected client; vs Effect's EventLogServer (@effect/experimental) on the same SQLite settings", nodeFlags: [], timeoutMs: 6 * 60_000 },
  { name: "pg-hot-scope", what: "Postgres, 4 server processes, one hot scope, 32 in flight: mutations/s, latency, cursors gap-free; vs this code at an earlier revision (--rev, default the commit before group commit)", nodeFlags: [], timeoutMs: 6 * 60_000 },
  { name: "idle-sessions", what: "19,000 idle sessions on one process: heap per session, one poke to all of them (p50/p99), 50,000 extrapolated; vs a plain ws server", nodeFlags: [], timeoutMs: 12 * 60_000 },
  {
    name: "first-render",
    what: "open → first subscribe callback (Node memory/file, Chromium IndexedDB) and cold offline load → list painted (service worker + IndexedDB), 100 KB and 5 MB; vs raw reads + a plain DOM render (needs Chromium; run only when named, ~4 min)",
    nodeFlags: [],
    timeoutMs: 15 * 60_000,
    onlyWhenNamed: true
  },
  {
    name: "load",
    what: "10,000 sessions, 1,000 pushes/s into 100 scopes, 60 s, then + one never-reading session; vs a plain ws server (run only when named, ~8 min)",
    nodeFlags: [],
    timeoutMs: 20 * 60_000,
    onlyWhenNamed: true
  }
]

const args = process.argv.slice(2)
if (args.includes("--list")) {
  for (const b of all) console.log(`${b.name.padEnd(16)} ${b.what}`)
  process.exit(0)
}
const passThrough = args.filter((a) => a.startsWith("--") && a !== "--source")
// `--source`: run our package from src/ through tsx everywhere (the default is the compiled package, built here first)
const source = args.includes("--source")
if (source) process.env["MIZU_BENCH_SOURCE"] = "1"
const names = args.filter((a) => !a.startsWith("--"))
const selected = names.length === 0 ? all.filter((b) => b.onlyWhenNamed !== true) : all.filter((b) => names.some((n) => b.name === n || b.name.startsWith(n)))
if (selected.length === 0) {
  console.error(`no benchmark matches ${names.join(", ")}; known: ${all.map((b) => b.name).join(", ")}`)
  process.exit(1)
}

const runOne = (bench: Bench) =>
  new Promise<{ code: number | null; ms: number }>((resolve) => {
    const start = performance.now()
    const child = spawn(
      process.execPath,
      [...Child.loaderFlags(source), ...bench.nodeFlags, NodePath.join(benchDir, `${bench.name}.ts`), ...passThrough],
      { stdio: "inherit" }
    )
    const timer = setTimeout(() => {
      console.error(`${bench.name}: over ${bench.timeoutMs / 60_000} min, stopping it`)
      child.kill("SIGKILL")
    }, bench.timeoutMs)
    child.on("exit", (code) => {
      clearTimeout(timer)
      resolve({ code, ms: performance.now() - start })
    })
  })

if (!source) {
  // what an app runs is the compiled package: build it from this tree (tsc, ~20 s)
  console.log("building the package (tsc -p tsconfig.build.json) …")
  execFileSync(process.execPath, [NodePath.join(repoDir, "node_modules/typescript/bin/tsc"), "-p", NodePath.join(repoDir, "tsconfig.build.json")], { stdio: "inherit" })
}

const summary: Array<string> = []
let failed = 0
const start = performance.now()
for (const bench of selected) {
  console.log(`\n=== ${bench.name}: ${bench.what}\n`)
  const { code, ms } = await runOne(bench)
  if (code !== 0) failed++
  summary.push(`${bench.name.padEnd(16)} ${code === 0 ? "ok    " : `FAILED (exit ${code})`} ${(ms / 1000).toFixed(0).padStart(4)} s`)
}
console.log(`\n=== done in ${((performance.now() - start) / 1000).toFixed(0)} s`)
for (const line of summary) console.log(line)
// the gate table of issue #17, from the results this run (and earlier runs, for what it did not run) left
await new Promise<void>((resolve) =>
  spawn(process.execPath, [...Child.loaderFlags(true), NodePath.join(benchDir, "gates.ts")], { stdio: "inherit" }).on("exit", () => resolve())
)
process.exit(failed === 0 ? 0 : 1)
