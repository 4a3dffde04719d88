/**
 * The engine's pull in process (no HTTP), one at a time: `SyncEngine.pullBody`
 * of a 1-change page (cursor 0, limit 1, with a client_id) over
 * `SqlStorage.layerSqlite` (a file, WAL), tracing off, after 2,000 pushes;
 * prints µs per pull (wall time, one at a time) for `--n` pulls (default 20,000) run through
 * `runtime.runPromise`, `Effect.runSync`-style `runtime.runSync`, and the
 * storage's one read statement alone (`readPull`), so the engine's own
 * cost is the difference. With `PROF=1`, a CPU profile of the promise loop to
 * /tmp/prof/engine-pull.cpuprofile.
 *
 * With `--cold`, 4 MiB of memory is touched before each pull (not timed).
 *
 * Usage: node --import tsx bench/tools/engine-pull.ts [--n=20000] [--cold]
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import { Authorizer, PokeBroker, Server, SqlStorage, SyncEngine, SyncStorage } from "mizu-sync-live"
import * as Inspector from "node:inspector"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { registry } from "../../examples/todo/mutations.js"
import * as Db from "../lib/db.js"

const found = process.argv.find((a) => a.startsWith("--n="))
const n = found === undefined ? 20_000 : Number(found.slice(4))
const tmp = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "mizu-pull-"))
process.on("exit", () => NodeFs.rmSync(tmp, { recursive: true, force: true }))
const file = NodePath.join(tmp, "pull.sqlite")
await Db.migrate(file)
const noPokes = Layer.succeed(PokeBroker.PokeBroker, PokeBroker.PokeBroker.of({ poke: () => Effect.void }))
const storage = SqlStorage.layerSqlite({ filename: file })
const runtime = ManagedRuntime.make(
  Layer.merge(Server.layerEngine(registry).pipe(Layer.provide(Layer.mergeAll(storage, noPokes, Authorizer.layerAllowAll))), storage).pipe(
    Layer.provide(Layer.setTracerEnabled(false))
  )
)
const engine = await runtime.runPromise(SyncEngine.SyncEngine)
const sync = await runtime.runPromise(SyncStorage.SyncStorage)
const caller = { token: undefined, headers: {} }
for (let i = 1; i <= 2000; i++) {
  await runtime.runPromise(engine.push({ client_id: "w", mutations: [{ id: i, name: "todo/create", scope: "s", args: { id: `t${i}`, title: "x" } }] }, caller))
}
const request = { scope: "s", cursor: 0, limit: 1, client_id: "w" }
/** Touch 4 MiB between two pulls (`--cold`): the CPU caches as a server's other work leaves them. */
const cold = process.argv.includes("--cold")
const thrash = new Uint32Array(1024 * 1024)
const evict = () => {
  for (let i = 0; i < thrash.length; i += 16) thrash[i]++
}
const measure = async (name: string, once: () => unknown) => {
  for (let i = 0; i < 2000; i++) await once()
  let spent = 0
  const rounds = cold ? n / 4 : n
  for (let i = 0; i < rounds; i++) {
    if (cold) evict()
    const t0 = performance.now()
    await once()
    spent += performance.now() - t0
  }
  console.log(`${name.padEnd(34)} ${(spent * 1000 / rounds).toFixed(1)} µs per pull${cold ? " (caches cold)" : ""}`)
}
const readPull = sync.readPull
if (readPull === undefined) throw new Error("the SQLite storage has no readPull")
await measure("readPull alone (runPromise)", () => runtime.runPromise(readPull("s", 0, 1, "w")))
await measure("engine.pullBody (runPromise)", () => runtime.runPromise(engine.pullBody(request, caller)))
await measure("engine.pullBody (runSync)", () => runtime.runSync(engine.pullBody(request, caller)))
await measure("Effect.void (runPromise)", () => runtime.runPromise(Effect.void))
if (process.env["PROF"] === "1") {
  const session = new Inspector.Session()
  session.connect()
  const post = (method: string, params?: object) => new Promise<any>((resolve, reject) => session.post(method, params, (e, r) => e ? reject(e) : resolve(r)))
  await post("Profiler.enable")
  await post("Profiler.setSamplingInterval", { interval: 50 })
  await post("Profiler.start")
  for (let i = 0; i < n; i++) await runtime.runPromise(engine.pullBody(request, caller))
  const { profile } = await post("Profiler.stop")
  NodeFs.mkdirSync("/tmp/prof", { recursive: true })
  NodeFs.writeFileSync("/tmp/prof/engine-pull.cpuprofile", JSON.stringify(profile))
}
await runtime.dispose()
