/**
 * Convergence under faults: 20 clients with random todo mutations on shared
 * scopes, over a transport that drops, duplicates, delays, replays and
 * reorders requests and responses, with random disconnects (HTTP and live),
 * client restarts over file storage, and two restarts of the server (SQLite
 * on a file, so its data survives them). Afterwards every client's view
 * equals the server's snapshot, every mutation reached the server exactly
 * once, and every rejected one is gone from its client.
 *
 * Seeded: the seed is printed at the start and on failure; rerun one with
 * `MIZU_SEED=<seed> npx vitest run test/client-convergence.test.ts`.
 */
import * as HttpServer from "@effect/platform/HttpServer"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import { assert, describe, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Scope from "effect/Scope"
import { Authorizer, Clients, LivePubSub, Server } from "mizu-sync-live"
import { ClientStorage, LiveClient, SyncClient, SyncTransport } from "mizu-sync-live/client"
import * as Fs from "node:fs"
import * as Http from "node:http"
import * as Os from "node:os"
import * as Path from "node:path"
import { createTodo, deleteTodo, registry, renameTodo, TodoEntity, toggleTodo } from "../examples/todo/mutations.js"
import { FileStorage, layerLiveClient } from "mizu-sync-live/client/node"
import * as SqlStorage from "../src/sync/sql/SqlStorage.js"
import { eventually, type Faults, faulty, type FaultStats, emptyStats, noFaults, prng, startClient, switchable } from "./support/clientHarness.js"

const CLIENTS = 20
const FILE_CLIENTS = 6
const POOL = 12

const seed = Number(process.env["MIZU_SEED"] ?? Math.floor(Math.random() * 2 ** 31))

type Transport = SyncTransport.SyncTransport["Type"]

/** What the fault layer saw the server answer (every delivery, including duplicates and late ones). */
interface Ledger {
  /** `client:id` → how many times the server processed it (a non-duplicate result). */
  readonly processed: Map<string, number>
  /** `client:id` of mutations the server refused. */
  readonly refused: Set<string>
}

/** Record every push result the server gives, then pass it on. */
const recording = (inner: Transport, ledger: Ledger): Transport =>
  SyncTransport.SyncTransport.of({
    ...inner,
    push: (r) =>
      Effect.tap(inner.push(r), (response) =>
        Effect.sync(() => {
          response.results.forEach((result, i) => {
            const key = `${r.client_id}:${r.mutations[i]?.id}`
            if (!result.ok && result.error?.code === "out_of_order") return
            if (!result.ok) ledger.refused.add(key)
            // a duplicate (also one answering a remembered rejection) was processed before
            if (result.duplicate === true) return
            ledger.processed.set(key, (ledger.processed.get(key) ?? 0) + 1)
          })
        }))
  })

interface Running {
  readonly client: SyncClient.SyncClient["Type"]
  readonly live: LiveClient.LiveClient["Type"]
  readonly stop: Effect.Effect<void>
  readonly rejectedIds: Set<number>
}

describe("SyncClient convergence", () => {
  it.scopedLive(`20 clients, faults, disconnects, client and server restarts (seed ${seed})`, () =>
    Effect.gen(function*() {
      console.log(`client convergence seed: ${seed}`)
      const random = prng(seed)
      const pick = <A>(xs: ReadonlyArray<A>): A => xs[Math.floor(random() * xs.length)] as A
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "mizu-convergence-"))),
        (d) => Effect.sync(() => Fs.rmSync(d, { recursive: true, force: true }))
      )
      const scopes = ["conv:a", "conv:b", "conv:c"].map((s) => `${s}:${seed}`)
      const home = scopes[0] as string

      // -- the server: SQLite on a file, restartable --------------------------------------------
      const startServer = Effect.gen(function*() {
        const scope = yield* Scope.make()
        const deps = Layer.mergeAll(
          SqlStorage.layerSqlite({ filename: Path.join(dir, "server.db") }),
          LivePubSub.layerMemory,
          Authorizer.layerAllowAll
        )
        // a process that stops abruptly: open connections are cut, as when the process dies
        const http = Http.createServer()
        const ctx = yield* Layer.buildWithScope(
          Server.layer({ registry, live: { drainPeriod: "10 millis" } }).pipe(
            Layer.provideMerge(deps),
            Layer.provideMerge(NodeHttpServer.layer(() => http, { port: 0, host: "127.0.0.1" }))
          ),
          scope
        )
        const address = Context.get(ctx, HttpServer.HttpServer).address
        const base = address._tag === "TcpAddress" ? `http://127.0.0.1:${address.port}` : "http://unix"
        const cut = Effect.sync(() => http.closeAllConnections())
        const stop = Effect.gen(function*() {
          const cutting = yield* Effect.fork(Effect.forever(Effect.zipRight(cut, Effect.sleep("5 millis"))))
          yield* Scope.close(scope, Exit.void)
          yield* Fiber.interrupt(cutting)
        })
        return { base, clients: Context.get(ctx, Clients.Clients), stop }
      })
      let server = yield* startServer
      const route = switchable(SyncTransport.makeFetch({ baseUrl: server.base, timeout: "5 seconds" }))
      const liveUrl = () => LiveClient.websocketUrl(server.base)
      const restartServer = Effect.gen(function*() {
        yield* server.stop
        yield* Effect.sleep("30 millis")
        server = yield* startServer
        route.set(SyncTransport.makeFetch({ baseUrl: server.base, timeout: "5 seconds" }))
      })

      // -- the clients --------------------------------------------------------------------------------
      const ledger: Ledger = { processed: new Map(), refused: new Set() }
      const stats: FaultStats = emptyStats()
      const faultsOf: Array<Faults> = []
      const options: SyncClient.Options = {
        registry,
        scopes,
        pullInterval: "1 second",
        pullLimit: 10,
        maxPullPages: 3,
        pushBatchSize: 10,
        retryInitial: "5 millis",
        retryMax: "100 millis"
      }
      const storageOf = (i: number): Layer.Layer<ClientStorage.ClientStorage, ClientStorage.ClientStorageError> =>
        i < FILE_CLIENTS ? FileStorage.layer({ directory: Path.join(dir, `client-${i}`), fsync: false }) : ClientStorage.layerMemory
      const start = (i: number, transport: Transport) =>
        Effect.gen(function*() {
          const scope = yield* Scope.make()
          const live = Context.get(
            yield* Layer.buildWithScope(layerLiveClient({ url: liveUrl, reconnectInitial: "5 millis", reconnectMax: "100 millis" }), scope),
            LiveClient.LiveClient
          )
          const client = yield* Scope.extend(startClient(options, transport, storageOf(i), Layer.succeed(LiveClient.LiveClient, live)), scope)
          const rejectedIds = new Set<number>()
          const events = yield* Scope.extend(client.subscribeEvents, scope)
          yield* Scope.extend(
            Effect.forkScoped(Effect.forever(Effect.flatMap(Queue.take(events), (e: SyncClient.SyncEvent) =>
              Effect.sync(() => {
                if (e._tag === "Rejected") rejectedIds.add(e.mutation.id)
                if (e._tag === "Renumbered") renumbered.push(`client ${i}: ${JSON.stringify(e)}`)
              })))),
            scope
          )
          return { client, live, stop: Scope.close(scope, Exit.void), rejectedIds } satisfies Running
        })
      const renumbered: Array<string> = []
      const running: Array<Running> = []
      const transports: Array<Transport> = []
      const toggles: Array<number> = []
      const queued: Array<Map<number, { name: string; args: unknown }>> = []
      const rejectedSeen: Array<Set<number>> = []
      for (let i = 0; i < CLIENTS; i++) {
        const faults: Faults = {
          ...noFaults(),
          dropRequest: 0.1,
          dropResponse: 0.1,
          duplicateRequest: 0.1,
          replayResponse: 0.1,
          lateDelivery: 0.05,
          maxDelayMs: 15
        }
        faultsOf.push(faults)
        const transport = faulty(recording(route.transport, ledger), faults, prng(seed + i + 1), stats)
        transports.push(transport)
        running.push(yield* start(i, transport))
        toggles.push(0)
        queued.push(new Map())
        rejectedSeen.push(new Set())
      }

      // -- the workload -------------------------------------------------------------------------------
      const opsPerClient = Array.from({ length: CLIENTS }, () => 15 + Math.floor(random() * 11))
      const plans = opsPerClient.map((n, i) =>
        Array.from({ length: n }, () => ({
          roll: random(),
          scope: pick(scopes),
          id: `p${Math.floor(random() * POOL)}`,
          pause: 10 + Math.floor(random() * 50),
          disconnect: random() < 0.06 ? 30 + Math.floor(random() * 200) : 0,
          restart: i < FILE_CLIENTS && random() < 0.05
        }))
      )
      let titles = 0
      const runClient = (i: number) =>
        Effect.gen(function*() {
          const record = (m: SyncClient.PendingMutation) => queued[i]?.set(m.id, { name: m.name, args: m.args })
          const own = `own${i}`
          const first = running[i] as Running
          record(yield* first.client.mutate(createTodo, { id: own, title: `own ${i}` }, { scope: home }))
          for (const step of plans[i] ?? []) {
            const { client } = running[i] as Running
            yield* Effect.sleep(`${step.pause} millis`)
            const title = `t${++titles}`
            const attempt = step.roll < 0.15
              ? Effect.tap(client.mutate(toggleTodo, { id: own }, { scope: home }), () => Effect.sync(() => toggles[i] = (toggles[i] ?? 0) + 1))
              : step.roll < 0.45
              ? client.mutate(createTodo, { id: step.id, title }, { scope: step.scope })
              : step.roll < 0.65
              ? client.mutate(renameTodo, { id: step.id, title }, { scope: step.scope })
              : step.roll < 0.85
              ? client.mutate(toggleTodo, { id: step.id }, { scope: step.scope })
              : client.mutate(deleteTodo, { id: step.id }, { scope: step.scope })
            const outcome = yield* Effect.either(attempt)
            if (outcome._tag === "Right") record(outcome.right)
            else if (outcome.left._tag !== "MutateError" || outcome.left.reason !== "rejected") return yield* Effect.die(outcome.left)
            const faults = faultsOf[i] as Faults
            if (step.disconnect > 0) {
              faults.offline = true
              yield* (running[i] as Running).live.reconnect
              yield* Effect.sleep(`${step.disconnect} millis`)
              faults.offline = false
            }
            if (step.restart) {
              const old = running[i] as Running
              for (const id of old.rejectedIds) rejectedSeen[i]?.add(id)
              yield* old.stop
              running[i] = yield* start(i, transports[i] as Transport)
            }
          }
        })

      const work = Effect.forEach(Array.from({ length: CLIENTS }, (_, i) => i), runClient, { concurrency: "unbounded", discard: true })
      const restarts = Effect.gen(function*() {
        yield* Effect.sleep("150 millis")
        yield* restartServer
        yield* Effect.sleep("150 millis")
        yield* restartServer
      })
      const began = Date.now()
      yield* Effect.all([work, restarts], { concurrency: "unbounded", discard: true })
      const worked = Date.now()

      // faults stay on a while longer: the queues drain through them
      yield* Effect.sleep("1500 millis")

      // -- heal, settle -------------------------------------------------------------------------------
      for (const f of faultsOf) Object.assign(f, noFaults())
      for (let round = 0; round < 2; round++) {
        yield* Effect.forEach(running, (r) => eventually(r.client.sync, 100, 50), { concurrency: "unbounded", discard: true })
      }

      const healed = Date.now()
      // -- check --------------------------------------------------------------------------------------
      const where = `(seed ${seed})`
      const snapshots = new Map<string, unknown>()
      for (const scope of scopes) {
        snapshots.set(scope, (yield* Effect.orDie(SyncTransport.makeFetch({ baseUrl: server.base }).snapshot({ scope }))).data)
      }
      for (let i = 0; i < CLIENTS; i++) {
        const r = running[i] as Running
        for (const id of r.rejectedIds) rejectedSeen[i]?.add(id)
        assert.deepStrictEqual(yield* r.client.pending, [], `client ${i} has nothing pending ${where}`)
        for (const scope of scopes) {
          assert.deepStrictEqual(yield* r.client.view(scope), snapshots.get(scope), `client ${i}, ${scope}: view = server snapshot ${where}`)
        }
        // every queued mutation reached the server exactly once: the ledger's last id is the last queued id
        const ids = [...(queued[i] ?? new Map()).keys()]
        assert.deepStrictEqual(ids, ids.map((_, k) => k + 1), `client ${i}: ids are 1, 2, 3, … ${where}`)
        assert.strictEqual(yield* Effect.orDie(server.clients.lastId(r.client.clientId)), ids.length, `client ${i}: server processed all ${where}`)
        for (const id of ids) {
          const times = ledger.processed.get(`${r.client.clientId}:${id}`) ?? 0
          assert.isAtMost(times, 1, `client ${i}, mutation ${id}: processed at most once ${where}`)
        }
        // a toggle applied twice (or lost) would flip the parity of the client's own todo
        const own = (yield* r.client.get(home, TodoEntity, `own${i}`)).pipe(Option.getOrThrow)
        assert.strictEqual(own.completed, (toggles[i] ?? 0) % 2 === 1, `client ${i}: own todo toggled exactly ${toggles[i]} times ${where}`)
        // a Rejected event only for what the server refused
        for (const id of rejectedSeen[i] ?? []) {
          assert.isTrue(ledger.refused.has(`${r.client.clientId}:${id}`), `client ${i}, mutation ${id}: reported rejected, refused by the server ${where}`)
        }
      }
      assert.deepStrictEqual(renumbered, [], `the server never lost a client's state ${where}`)
      const refusedTotal = ledger.refused.size
      const reported = rejectedSeen.reduce((n, s) => n + s.size, 0)
      console.log(
        `convergence ${where}: ${queued.reduce((n, q) => n + q.size, 0)} mutations, ${refusedTotal} refused by the server, ${reported} reported, faults ${JSON.stringify(stats)}; work ${worked - began} ms, settle ${healed - worked} ms`
      )
      assert.isAbove(refusedTotal, 0, "the workload produced rejections")
      assert.isAbove(stats.dropRequest + stats.dropResponse + stats.duplicateRequest + stats.replayResponse + stats.lateDelivery, 0)
      for (const r of running) yield* r.stop
      yield* server.stop
    }).pipe(
      Effect.onExit((exit) => Exit.isFailure(exit) ? Effect.sync(() => console.error(`client convergence FAILED with seed ${seed}: MIZU_SEED=${seed}`)) : Effect.void)
    ), 60_000)
})
