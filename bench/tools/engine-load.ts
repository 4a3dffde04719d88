/**
 * The engine under concurrent pushes, in process (no HTTP): `--concurrent`
 * closed-loop clients (default 32) each push `--batch` mutations (default 1)
 * with their own client_id for `--ms` (default 2000) after 500 ms of warm-up,
 * through `SyncEngine.push` over `SqlStorage.layerSqlite` (a file, WAL),
 * tracing off, a poke broker that does nothing; prints pushes/s and the
 * process's CPU per push. What group commit gives the engine alone, for an
 * A/B between two trees (push-engine measures one push at a time).
 *
 * `--handler=gen`: `todo/create`'s handler wrapped as an app would write
 * it with `(args, tx) => Effect.gen(function*() { … })`, a generator
 * function made per mutation (the example's own is `Effect.fnUntraced`):
 * what that costs (bench/README, "Generator functions").
 *
 * Usage: node --import tsx bench/tools/engine-load.ts (the compiled package; add --conditions=source for src/) [--batch=1] [--concurrent=32] [--ms=2000] [--handler=gen]
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import { Authorizer, Mutation, PokeBroker, Server, SqlStorage, SyncEngine } from "mizu-sync-live"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { createTodo, registry as todoRegistry, TodoEntity } from "../../examples/todo/mutations.js"
import * as Db from "../lib/db.js"

const arg = (name: string, fallback: number) => {
  const found = process.argv.find((a) => a.startsWith(`--${name}=`))
  return found === undefined ? fallback : Number(found.slice(name.length + 3))
}
const batch = arg("batch", 1)
const concurrent = arg("concurrent", 32)
const ms = arg("ms", 2000)
const perCallGenerator = process.argv.includes("--handler=gen")
const registry = perCallGenerator
  ? Mutation.registry({
    entities: [TodoEntity],
    mutations: [{ ...createTodo, handler: (args, tx) => Effect.gen(function*() { return yield* createTodo.handler(args, tx) }) }]
  })
  : todoRegistry
const tmp = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "mizu-load-"))
process.on("exit", () => NodeFs.rmSync(tmp, { recursive: true, force: true }))
const file = NodePath.join(tmp, "load.sqlite")
await Db.migrate(file)
const noPokes = Layer.succeed(PokeBroker.PokeBroker, PokeBroker.PokeBroker.of({ poke: () => Effect.void }))
const runtime = ManagedRuntime.make(
  Server.layerEngine(registry).pipe(
    Layer.provide(Layer.mergeAll(SqlStorage.layerSqlite({ filename: file }), noPokes, Authorizer.layerAllowAll)),
    Layer.provide(Layer.setTracerEnabled(false))
  )
)
const engine = await runtime.runPromise(SyncEngine.SyncEngine)
let stop = false
let pushes = 0
/** One client: a push, its answer, the next push, until `stop`. */
const client = async (c: number) => {
  const clientId = `load-${c}`
  let next = 1
  while (!stop) {
    const mutations = Array.from({ length: batch }, (_, k) => ({
      id: next + k,
      name: "todo/create",
      scope: "bench",
      args: { id: `${clientId}-${next + k}`, title: "t" }
    }))
    const response = await runtime.runPromise(engine.push({ client_id: clientId, mutations }, { token: undefined, headers: {} }))
    if (!response.results.every((r) => r.ok && r.duplicate !== true)) throw new Error("a mutation failed")
    next += batch
    pushes++
  }
}
const warm = Array.from({ length: concurrent }, (_, c) => client(c))
await new Promise((r) => setTimeout(r, 500))
pushes = 0
const cpu0 = process.cpuUsage()
const t0 = performance.now()
await new Promise((r) => setTimeout(r, ms))
const elapsed = performance.now() - t0
const cpu = process.cpuUsage(cpu0)
const n = pushes
stop = true
await Promise.all(warm)
console.log(`batch ${batch}, ${concurrent} at once${perCallGenerator ? ", handler with a generator function per call" : ""}: ${Math.round(n / elapsed * 1000)} pushes/s, CPU ${((cpu.user + cpu.system) / n).toFixed(1)} µs/push`)
await runtime.dispose()
process.exit(0)
