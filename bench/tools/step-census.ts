/**
 * Where a push's fiber steps go: every step of every fiber of `SyncEngine.push`
 * (one request at a time, as push-engine counts them), grouped by the
 * instruction and the function it runs (its first line of source).
 *
 * With `--concurrent=N`, N clients push at once (one group commit of N
 * pushes per round); steps are still per push.
 *
 * Usage: node --conditions=source --import tsx bench/tools/step-census.ts [--batch=1] [--top=60] [--notrace] [--concurrent=1]
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as RuntimeFlags from "effect/RuntimeFlags"
import * as Supervisor from "effect/Supervisor"
import { Authorizer, PokeBroker, Server, SyncEngine } from "mizu-sync-live"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { registry } from "../../examples/todo/mutations.js"
import * as SqlStorage from "../../src/sync/sql/SqlStorage.js"
import * as Db from "../lib/db.js"

const arg = (name: string, fallback: number) => {
  const found = process.argv.find((a) => a.startsWith(`--${name}=`))
  return found === undefined ? fallback : Number(found.slice(name.length + 3))
}
const batch = arg("batch", 1)
const top = arg("top", 60)
const concurrent = arg("concurrent", 1)
const pushes = 100
const traced = !process.argv.includes("--notrace")

const tmp = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "mizu-census-"))
process.on("exit", () => NodeFs.rmSync(tmp, { recursive: true, force: true }))

class Census extends Supervisor.AbstractSupervisor<void> {
  on = false
  steps = 0
  readonly by = new Map<string, number>()
  override get value() {
    return Effect.void
  }
  override onEffect(_fiber: unknown, effect: unknown) {
    if (!this.on) return
    this.steps++
    const e = effect as { _op?: string; effect_instruction_i0?: unknown; effect_instruction_i1?: unknown }
    const fn = typeof e.effect_instruction_i1 === "function"
      ? e.effect_instruction_i1
      : typeof e.effect_instruction_i0 === "function"
      ? e.effect_instruction_i0
      : undefined
    const commit = e._op === "Commit" && fn === undefined ? `[${(effect as object).constructor.name}] ${String((effect as { commit?: unknown }).commit).slice(0, 80)}` : undefined
    const where = commit !== undefined ? commit : fn === undefined ? "" : String(fn).split("\n").slice(0, 2).join(" ").replace(/\s+/g, " ").slice(0, 110)
    const key = `${e._op ?? "?"} ${where}`
    this.by.set(key, (this.by.get(key) ?? 0) + 1)
  }
}

const census = new Census()
const file = NodePath.join(tmp, "census.sqlite")
await Db.migrate(file)
const noPokes = Layer.succeed(PokeBroker.PokeBroker, PokeBroker.PokeBroker.of({ poke: () => Effect.void }))
const runtime = ManagedRuntime.make(
  Server.layerEngine(registry).pipe(
    Layer.provide(Layer.mergeAll(SqlStorage.layerSqlite({ filename: file }), noPokes, Authorizer.layerAllowAll)),
    Layer.provide(Layer.mergeAll(Supervisor.addSupervisor(census), RuntimeFlags.enableOpSupervision, Layer.setTracerEnabled(traced)))
  )
)
const engine = await runtime.runPromise(SyncEngine.SyncEngine)
const push = (first: number) =>
  Promise.all(Array.from({ length: concurrent }, (_, c) => pushRaw(`census-${c}`, first))).then((responses) => {
    for (const response of responses) {
      if (!response.results.every((r) => r.ok && r.duplicate !== true)) throw new Error("a mutation failed")
    }
  })
const pushRaw = (clientId: string, first: number) =>
  runtime.runPromise(engine.push({
    client_id: clientId,
    mutations: Array.from({ length: batch }, (_, k) => ({
      id: first + k,
      name: "todo/create",
      scope: "bench",
      args: { id: `${clientId}-${first + k}`, title: `t ${first + k}` }
    }))
  }, { token: undefined, headers: {} }))
for (let i = 0; i < 20; i++) await push(i * batch + 1)
census.on = true
for (let i = 20; i < 20 + pushes; i++) await push(i * batch + 1)
census.on = false
const perPush = pushes * concurrent
console.log(
  `steps per push (${batch} mutation${batch === 1 ? "" : "s"}, tracing ${traced ? "on" : "off"}, ${concurrent} at once): ${census.steps / perPush}`
)
const rows = [...census.by].sort((a, b) => b[1] - a[1]).slice(0, top)
for (const [key, n] of rows) console.log(`${(n / perPush).toFixed(1).padStart(7)}  ${key}`)
await runtime.dispose()
process.exit(0)
