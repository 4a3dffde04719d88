/**
 * The push transaction without HTTP: how much of push-pull's gap is the
 * engine + @effect/sql, and how much the HTTP layer. In one process, one
 * request at a time:
 * - ours: `SyncEngine.push` (the todo registry, SQLite file in WAL through
 *   `SqlStorage.layerSqlite`, a poke broker that does nothing and an
 *   allow-all authorizer: the baseline pokes no one either. The recording
 *   broker of mizu-sync-live/testing copies its whole list on every poke, a
 *   cost that grows with the run);
 * - baseline: the same transaction with better-sqlite3 prepared statements
 *   (bench/lib/baseline-sql.ts, what the HTTP baseline runs).
 * Batches of 1 and 50 mutations (with client_id), each measured in
 * alternating 1-second slices; the median slice is reported as µs per
 * mutation, with the ratio ours / baseline.
 *
 * Usage: npm run bench -- push-engine [--quick]
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as RuntimeFlags from "effect/RuntimeFlags"
import * as Supervisor from "effect/Supervisor"
import { Authorizer, PokeBroker, Server, SqlStorage, SyncEngine } from "mizu-sync-live"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { registry } from "../examples/todo/mutations.js"
import * as BaselineSql from "./lib/baseline-sql.js"
import * as Db from "./lib/db.js"
import { printTable, writeResult } from "./lib/results.js"
import { median, ratio, round } from "./lib/stats.js"

const quick = process.argv.includes("--quick")
const config = { sliceMs: quick ? 500 : 1000, slices: quick ? 3 : 5, batches: [1, 50] }

const tmp = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "mizu-bench-"))
process.on("exit", () => NodeFs.rmSync(tmp, { recursive: true, force: true }))

const oursFile = NodePath.join(tmp, "ours.sqlite")
const baseFile = NodePath.join(tmp, "baseline.sqlite")
await Db.migrate(oursFile)
await Db.migrate(baseFile)

const noPokes = Layer.succeed(PokeBroker.PokeBroker, PokeBroker.PokeBroker.of({ poke: () => Effect.void }))
const runtime = ManagedRuntime.make(
  Server.layerEngine(registry).pipe(
    Layer.provide(Layer.mergeAll(SqlStorage.layerSqlite({ filename: oursFile }), noPokes, Authorizer.layerAllowAll))
  )
)
const engine = await runtime.runPromise(SyncEngine.SyncEngine)
const baseline = BaselineSql.open(baseFile)

const mutationsOf = (clientId: string, first: number, batch: number) =>
  Array.from({ length: batch }, (_, k) => {
    const id = first + k
    return { id, name: "todo/create", scope: "bench", args: { id: `${clientId}-${id}`, title: `buy milk ${id}` } }
  })

let clientCounter = 0

/** Push batches for `ms` as one client; returns µs per mutation. */
const oursSlice = (batch: number, ms: number) =>
  runtime.runPromise(Effect.gen(function*() {
    const clientId = `ours-${++clientCounter}`
    let next = 1
    let mutations = 0
    const start = performance.now()
    while (performance.now() - start < ms) {
      const response = yield* engine.push({ client_id: clientId, mutations: mutationsOf(clientId, next, batch) }, {
        token: undefined,
        headers: {}
      })
      if (!response.results.every((r) => r.ok && r.duplicate !== true)) return yield* Effect.dieMessage("a mutation failed")
      next += batch
      mutations += batch
    }
    return ((performance.now() - start) * 1000) / mutations
  }))

const baseSlice = async (batch: number, ms: number) => {
  const clientId = `base-${++clientCounter}`
  let next = 1
  let mutations = 0
  const start = performance.now()
  while (performance.now() - start < ms) {
    const results = baseline.push(clientId, mutationsOf(clientId, next, batch))
    if (!results.every((r) => r["ok"] === true && r["duplicate"] === undefined)) throw new Error("a mutation failed")
    next += batch
    mutations += batch
    // yield to the event loop between requests, as a server does
    if (mutations % (batch * 20) === 0) await new Promise((r) => setImmediate(r))
  }
  return ((performance.now() - start) * 1000) / mutations
}

// --- fiber steps per push ----------------------------------------------------------
//
// Every step of every fiber (the request's and the group-commit writer's),
// counted by a supervisor with op supervision on, in a runtime of its own
// (counting slows every step, so the timed slices above do not run under it).

class StepCounter extends Supervisor.AbstractSupervisor<void> {
  steps = 0
  override get value() {
    return Effect.void
  }
  override onEffect() {
    this.steps++
  }
}

const countSteps = async (batch: number, pushes: number, traced: boolean) => {
  const counter = new StepCounter()
  const countedFile = NodePath.join(tmp, `steps-${batch}-${traced}.sqlite`)
  await Db.migrate(countedFile)
  const counted = ManagedRuntime.make(
    Server.layerEngine(registry).pipe(
      Layer.provide(Layer.mergeAll(SqlStorage.layerSqlite({ filename: countedFile }), noPokes, Authorizer.layerAllowAll)),
      Layer.provide(Layer.mergeAll(Supervisor.addSupervisor(counter), RuntimeFlags.enableOpSupervision, Layer.setTracerEnabled(traced)))
    )
  )
  const countedEngine = await counted.runPromise(SyncEngine.SyncEngine)
  const clientId = `steps-${batch}`
  const push = (first: number) =>
    counted.runPromise(countedEngine.push({ client_id: clientId, mutations: mutationsOf(clientId, first, batch) }, { token: undefined, headers: {} }))
  for (let i = 0; i < 20; i++) await push(i * batch + 1) // warm-up: prepared statements, lazy state
  counter.steps = 0
  for (let i = 20; i < 20 + pushes; i++) await push(i * batch + 1)
  const perPush = counter.steps / pushes
  await counted.dispose()
  return perPush
}

// tracing on (the default of an Effect program, as the timed slices run) and off (`tracing: false`, as the HTTP gates run)
const steps: Record<string, number> = {}
for (const batch of config.batches) {
  steps[`batch-${batch}`] = round(await countSteps(batch, 200, true), 0)
  steps[`batch-${batch}-notrace`] = round(await countSteps(batch, 200, false), 0)
}
const stepsOf = (suffix: string) => config.batches.map((b) => `${b} mutation${b === 1 ? "" : "s"}: ${steps[`batch-${b}${suffix}`]}`).join(", ")
console.log(`fiber steps per push (every fiber, op supervision): tracing on ${stepsOf("")}; tracing off ${stepsOf("-notrace")}`)

const results: Record<string, unknown> = {}
const rows: Array<Array<string>> = [["mutations per push", "ours µs/mutation", "baseline µs/mutation", "ours / baseline", "range over slices"]]
for (const batch of config.batches) {
  await oursSlice(batch, config.sliceMs) // warm-up
  await baseSlice(batch, config.sliceMs)
  const ours: Array<number> = []
  const base: Array<number> = []
  for (let i = 0; i < config.slices; i++) {
    if (i % 2 === 0) {
      ours.push(await oursSlice(batch, config.sliceMs))
      base.push(await baseSlice(batch, config.sliceMs))
    } else {
      base.push(await baseSlice(batch, config.sliceMs))
      ours.push(await oursSlice(batch, config.sliceMs))
    }
  }
  const o = round(median(ours), 1)
  const b = round(median(base), 1)
  const perSlice = ours.map((x, i) => ratio(x, base[i]))
  rows.push([String(batch), String(o), String(b), ratio(o, b).toFixed(2), `${Math.min(...perSlice).toFixed(2)}..${Math.max(...perSlice).toFixed(2)}`])
  results[`batch-${batch}`] = { ours_us_per_mutation: o, baseline_us_per_mutation: b, ratio: ratio(o, b), slices: { ours, baseline: base } }
}
console.log("push-engine: SyncEngine.push vs the same better-sqlite3 transaction, in process, one request at a time (median slice):")
printTable(rows)
await runtime.dispose()
baseline.close()
const file = writeResult("push-engine", { config, results, fiber_steps_per_push: steps })
console.log(`\nwrote ${NodePath.relative(process.cwd(), file)}`)
process.exit(0)
