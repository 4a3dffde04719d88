/**
 * Failover between server processes (issue 9, item 4): three servers, each in
 * its own OS process, on one fresh Postgres database, pub/sub through Redis
 * (through Postgres LISTEN/NOTIFY when Redis is unavailable). Nine Node
 * clients (SyncClient + LiveClient, memory storage), three per process, push
 * a seeded stream of random todo mutations on two shared scopes. Each client
 * reaches "its" server through a route: an index into the servers that moves
 * to the next one when a request gets no answer (network error, timeout) or
 * the live socket goes down. Mid-load, as a push is on its way to it, one
 * process is killed with SIGKILL.
 *
 * What it proves:
 * - the dead process's clients fail over (HTTP and live) to another process
 *   and keep going: mutations they make after the kill are applied there;
 * - afterwards every client converges: nothing pending, and its view of each
 *   scope equals the scope's snapshot on a surviving server;
 * - no mutation is lost or applied twice: every client's `last_mutation_id`
 *   (pull with `client_id`) equals its number of mutations; no mutation got
 *   two fresh answers; each title a create or rename set appears in exactly
 *   one change of the log if its client saw it applied, in none if it saw it
 *   refused, in at most one otherwise; each client's own todo has exactly one
 *   change per toggle the client made (plus its create);
 * - presence: a raw WebSocket session on a surviving process sees `leaves` for
 *   every session of the dead process, then the failed-over clients present
 *   again under new sessions.
 *
 * Clients push batches (the client's default): the engine takes the head
 * locks of all a request's scopes first, in scope order, so concurrent
 * multi-mutation pushes on one scope queue instead of deadlocking on Postgres.
 *
 * Seeded: the seed is printed; rerun one with
 * `MIZU_SEED=<seed> npx vitest run test/failover.test.ts`.
 */
import { assert, layer } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Schema from "effect/Schema"
import { Protocol } from "mizu-sync-live"
import { ClientStorage, LiveClient, SyncClient, SyncTransport } from "mizu-sync-live/client"
import { layerLiveClient } from "mizu-sync-live/client/node"
import { createTodo, deleteTodo, registry, renameTodo, Todo, toggleTodo } from "../examples/todo/mutations.js"
import { eventually, eventuallyTrue, prng, startClient } from "./support/clientHarness.js"
import { describePostgres, PgDatabase } from "./support/Postgres.js"
import * as Redis from "./support/Redis.js"
import * as ServerProcess from "./support/ServerProcess.js"
import { connect, type Frame, join, T } from "./support/WsClient.js"

const SERVERS = 3
const CLIENTS = 9
/** Mutations each client attempts after creating its own todo. */
const OPS = 60
/** The kill comes once every client has attempted this many… */
const KILL_AFTER = 20
/** …and no client goes past this many before it (so every client makes mutations after the kill). */
const HOLD_AT = 30
/** Shared todo ids per scope. */
const POOL = 8
/** The load stops after this long whatever the count. */
const LOAD_BUDGET_MS = 40_000

const seed = Number(process.env["MIZU_SEED"] ?? Math.floor(Math.random() * 2 ** 31))

const pubsub = Redis.unavailable === undefined
  ? { name: "Redis", url: Redis.url }
  : { name: "Postgres NOTIFY", url: "postgres" }

type Transport = SyncTransport.SyncTransport["Type"]

/** What one client's pushes got back, from whichever server answered. */
interface Ledger {
  /** Mutation id → the server that answered it with a fresh (non-duplicate) `ok`. */
  readonly applied: Map<number, number>
  /** Ids a server refused (rejected, unknown, invalid args): consumed, no changes. */
  readonly refused: Set<number>
  /** Ids answered `duplicate: true`: processed before, maybe by a process that died before answering. */
  readonly duplicate: Set<number>
  /** Mutation id → how many fresh answers (ok or refused) it got: at most one. */
  readonly processed: Map<number, number>
}

const emptyLedger = (): Ledger => ({ applied: new Map(), refused: new Set(), duplicate: new Set(), processed: new Map() })

const record = (ledger: Ledger, request: Protocol.PushRequest, response: Protocol.PushResponse, server: number) =>
  response.results.forEach((result, k) => {
    const id = request.mutations[k]?.id
    if (id === undefined) return
    // a duplicate (also one answering a remembered failure) was processed before
    if (result.duplicate === true) {
      ledger.duplicate.add(id)
      // a remembered failure: it was refused when first processed, and that answer may have died
      // with a killed process, so this duplicate is the only refusal the client sees
      if (!result.ok && result.error !== undefined && result.error.code !== "out_of_order") ledger.refused.add(id)
      return
    }
    if (!result.ok && result.error?.code === "out_of_order") return
    ledger.processed.set(id, (ledger.processed.get(id) ?? 0) + 1)
    if (result.ok) {
      if (!ledger.applied.has(id)) ledger.applied.set(id, server)
    } else {
      ledger.refused.add(id)
    }
  })

/**
 * Where one client talks to: an index into the servers, moved to the next
 * one when an HTTP request gets no answer (network error or timeout), when a
 * live connection attempt never joins, or when a joined socket goes down.
 * Each move is guarded by the index the failure was seen on, so concurrent
 * failures (a push and a pull, the socket) move it once.
 */
interface Route {
  readonly transport: Transport
  readonly liveUrl: () => string
  readonly onLive: (event: LiveClient.LiveEvent) => void
  readonly current: () => number
  /** The server the live socket last joined on. */
  readonly joinedOn: () => number | undefined
  readonly moves: () => number
  /** Requests that failed (any error), on any server. */
  readonly failures: () => number
}

/** Pushes on their way, shared by every route: per server how many are in flight, and a hook as one is sent. */
interface PushWatch {
  readonly inFlight: Array<number>
  onSend: (server: number) => void
}

const makeRoute = (bases: ReadonlyArray<string>, start: number, ledger: Ledger, watch: PushWatch): Route => {
  let index = start
  let moves = 0
  let failures = 0
  let attempting: number | undefined
  let joinedOn: number | undefined
  const rotate = (from: number) => {
    if (index !== from) return
    index = (index + 1) % bases.length
    moves++
  }
  // the default 30 s timeout: a killed process fails requests at once (reset, refused); a short timeout
  // would only abort pushes queued behind the scope's lock on a busy server, and the server rolls those back
  const fetches = bases.map((baseUrl) => SyncTransport.makeFetch({ baseUrl }))
  const via = <A>(call: (t: Transport) => Effect.Effect<A, SyncTransport.SyncTransportError>, push = false) =>
    Effect.suspend(() => {
      const at = index
      if (push) {
        watch.inFlight[at]++
        watch.onSend(at)
      }
      return call(fetches[at]).pipe(
        Effect.ensuring(Effect.sync(() => {
          if (push) watch.inFlight[at]--
        })),
        Effect.tapError((e) =>
          Effect.sync(() => {
            failures++
            if (SyncTransport.isOffline(e)) rotate(at)
          })
        ),
        Effect.map((a) => [a, at] as const)
      )
    })
  return {
    transport: SyncTransport.SyncTransport.of({
      push: (r) => Effect.map(via((t) => t.push(r), true), ([response, at]) => (record(ledger, r, response, at), response)),
      pull: (r) => Effect.map(via((t) => t.pull(r)), ([response]) => response),
      snapshot: (r) => Effect.map(via((t) => t.snapshot(r)), ([response]) => response)
    }),
    liveUrl: () => {
      // called once per connection attempt: the previous one never joined, try the next server
      if (attempting !== undefined) rotate(attempting)
      attempting = index
      return LiveClient.websocketUrl(bases[index])
    },
    onLive: (event) => {
      if (event._tag === "Online" && attempting !== undefined) {
        joinedOn = attempting
        attempting = undefined
      } else if (event._tag === "Offline" && joinedOn !== undefined) {
        rotate(joinedOn)
      }
    },
    current: () => index,
    joinedOn: () => joinedOn,
    moves: () => moves,
    failures: () => failures
  }
}

/** What a client queued, by mutation id. */
interface Queued {
  readonly kind: "own" | "toggle" | "create" | "rename" | "delete"
  readonly scope: string
  readonly row: string
  readonly title: string | undefined
}

interface Running {
  readonly i: number
  readonly client: SyncClient.SyncClient["Type"]
  readonly live: LiveClient.LiveClient["Type"]
  readonly route: Route
  readonly ledger: Ledger
  /** Ids of `Rejected` events. */
  readonly rejected: Set<number>
  readonly queued: Map<number, Queued>
  toggles: number
  attempted: number
  /** The highest id queued before the kill. */
  idAtKill: number
}

const PresenceMeta = Schema.Struct({ client: Schema.Number })
const clientOf = (meta: unknown): number | undefined => Option.getOrUndefined(Schema.decodeUnknownOption(PresenceMeta)(meta))?.client

/** A topic's presence (`session → meta`) after the PRESENCE frames among `frames`, applied in order. */
const presenceOf = (frames: ReadonlyArray<Frame>, topic: string): Record<string, unknown> => {
  let state: Record<string, unknown> = {}
  for (const f of frames) {
    if (f.type !== T.PRESENCE || f.payload.topic !== topic) continue
    if (f.payload.state !== undefined) state = { ...f.payload.state }
    for (const key of Object.keys(f.payload.leaves ?? {})) delete state[key]
    Object.assign(state, f.payload.joins ?? {})
  }
  return state
}

/** The whole change log of a scope, page by page. */
const readLog = (transport: Transport, scope: string) =>
  Effect.gen(function*() {
    const changes: Array<Protocol.Change> = []
    let cursor = 0
    while (true) {
      const page = yield* transport.pull({ scope, cursor, limit: Protocol.MAX_PULL_LIMIT })
      changes.push(...page.changes)
      cursor = page.cursor
      if (!page.has_more) return changes
    }
  })

const TitleOf = Schema.Struct({ title: Schema.String })
const titleOf = (change: Protocol.Change): string | undefined =>
  change.data === undefined ? undefined : Option.getOrUndefined(Schema.decodeUnknownOption(TitleOf)(change.data))?.title

describePostgres("failover", ({ database }) => {
  layer(database, { excludeTestServices: true, timeout: 180_000 })(`3 processes, pub/sub through ${pubsub.name}`, (it) => {
    it.effect(`9 clients fail over when a process is SIGKILLed mid-load, and converge (seed ${seed})`, () =>
      Effect.gen(function*() {
        console.log(`failover seed: ${seed} (pub/sub through ${pubsub.name})`)
        const began = Date.now()
        const random = prng(seed)
        const pick = <A>(xs: ReadonlyArray<A>): A => xs[Math.floor(random() * xs.length)]
        const where = `(seed ${seed})`

        // -- three processes, one database --------------------------------------------------------
        const db = yield* PgDatabase
        const env = { DATABASE_URL: db.url, PUBSUB_URL: pubsub.url, PRESENCE_TTL_MS: "1500", PRESENCE_RENEW_MS: "300" }
        const servers = yield* Effect.all(Array.from({ length: SERVERS }, () => ServerProcess.start(env)), { concurrency: "unbounded" })
        const bases = servers.map((s) => s.url)
        const victim = Math.floor(random() * SERVERS)
        const survivor = (victim + 1) % SERVERS
        const started = Date.now()

        const watch: PushWatch = { inFlight: bases.map(() => 0), onSend: () => undefined }
        const scopes = [`fo:a:${seed}`, `fo:b:${seed}`]
        const home = scopes[0]

        // a raw session on a surviving process watches presence on the home scope
        const observer = yield* connect(bases[survivor])
        const joined = yield* join(observer, { scopes: [home] })
        assert.strictEqual(joined.status, "ok")

        // -- nine clients, three per process ------------------------------------------------------
        const options: SyncClient.Options = {
          registry,
          scopes,
          pullInterval: "1 second",
          retryInitial: "10 millis",
          retryMax: "250 millis"
        }
        const startOne = (i: number) =>
          Effect.gen(function*() {
            const ledger = emptyLedger()
            const route = makeRoute(bases, i % SERVERS, ledger, watch)
            const live = Context.get(
              yield* Layer.build(layerLiveClient({ url: route.liveUrl, scopes, reconnectInitial: "20 millis", reconnectMax: "300 millis" })),
              LiveClient.LiveClient
            )
            const liveEvents = yield* live.subscribeEvents
            // joined before we listened: the Online event was missed (handling it twice is harmless)
            if ((yield* live.status) === "connected") route.onLive({ _tag: "Online", sessionId: undefined, cursors: {}, reconnect: false })
            yield* Effect.forkScoped(Effect.forever(Effect.map(Queue.take(liveEvents), route.onLive)))
            const client = yield* startClient(
              { ...options, clientId: `fo-${seed}-${i}` },
              route.transport,
              ClientStorage.layerMemory,
              Layer.succeed(LiveClient.LiveClient, live)
            )
            const rejected = new Set<number>()
            const events = yield* client.subscribeEvents
            yield* Effect.forkScoped(Effect.forever(Effect.map(Queue.take(events), (e) => {
              if (e._tag === "Rejected") rejected.add(e.mutation.id)
            })))
            const running: Running = { i, client, live, route, ledger, rejected, queued: new Map(), toggles: 0, attempted: 0, idAtKill: 0 }
            return running
          })
        const running = yield* Effect.forEach(Array.from({ length: CLIENTS }, (_, i) => i), startOne)
        const doomed = running.filter((r) => r.i % SERVERS === victim)
        const doomedIds = new Set(doomed.map((r) => r.i))

        // every client joined its own server, and announces its presence there
        yield* eventuallyTrue(
          "every client's live socket joined its own server",
          Effect.sync(() => running.every((r) => r.route.joinedOn() === r.i % SERVERS)),
          600,
          50
        )
        yield* Effect.forEach(running, (r) => r.live.presence(home, { client: r.i }), { discard: true })
        yield* eventuallyTrue(
          "the observer sees all nine clients present",
          Effect.sync(() => new Set(Object.values(presenceOf(observer.frames, home)).map(clientOf)).size === CLIENTS),
          600,
          50
        )

        // -- the load, and the kill in the middle of it --------------------------------------------
        const plans = running.map(() =>
          Array.from({ length: OPS }, () => ({
            roll: random(),
            scope: pick(scopes),
            row: `p${Math.floor(random() * POOL)}`,
            pause: 20 + Math.floor(random() * 60)
          }))
        )
        const killed = yield* Deferred.make<void>()
        const loadStart = Date.now()
        const deadline = loadStart + LOAD_BUDGET_MS
        const noteQueued = (r: Running, kind: Queued["kind"], scope: string, row: string, title: string | undefined) =>
          (m: SyncClient.PendingMutation) =>
            Effect.sync(() => {
              r.queued.set(m.id, { kind, scope, row, title })
              if (kind === "toggle") r.toggles++
            })
        const load = (r: Running) =>
          Effect.gen(function*() {
            const own = `own${r.i}`
            yield* Effect.flatMap(r.client.mutate(createTodo, { id: own, title: `own ${r.i}` }, { scope: home }), noteQueued(r, "own", home, own, undefined))
            for (const [k, step] of (plans[r.i] ?? []).entries()) {
              if (Date.now() > deadline) return
              if (k === HOLD_AT) yield* Deferred.await(killed).pipe(Effect.timeout(deadline - Date.now()), Effect.ignore)
              yield* Effect.sleep(`${step.pause} millis`)
              const title = `c${r.i}.${k}`
              const attempt = step.roll < 0.2
                ? Effect.flatMap(r.client.mutate(toggleTodo, { id: own }, { scope: home }), noteQueued(r, "toggle", home, own, undefined))
                : step.roll < 0.55
                ? Effect.flatMap(r.client.mutate(createTodo, { id: step.row, title }, { scope: step.scope }), noteQueued(r, "create", step.scope, step.row, title))
                : step.roll < 0.8
                ? Effect.flatMap(r.client.mutate(renameTodo, { id: step.row, title }, { scope: step.scope }), noteQueued(r, "rename", step.scope, step.row, title))
                : Effect.flatMap(r.client.mutate(deleteTodo, { id: step.row }, { scope: step.scope }), noteQueued(r, "delete", step.scope, step.row, undefined))
              // the local view may reject it (created already, gone already): nothing is queued then
              yield* attempt.pipe(Effect.catchIf((e) => e._tag === "MutateError" && e.reason === "rejected", () => Effect.void), Effect.orDie)
              r.attempted = k + 1
            }
          })

        let presentAtKill: ReadonlyArray<string> = []
        let framesAtKill = 0
        let killedAt = 0
        let inFlightAtKill = 0
        const killDelay = Math.floor(random() * 6)
        const kill = Effect.gen(function*() {
          yield* eventuallyTrue(
            `every client made ${KILL_AFTER} mutations and the victim applied some of each of its clients'`,
            Effect.sync(() =>
              running.every((r) => r.attempted >= KILL_AFTER) &&
              doomed.every((r) => [...r.ledger.applied.values()].includes(victim))
            ),
            600,
            50
          )
          // the victim's clients are present on the observer's process (a late renew may have expired one)
          const doomedSessions = () =>
            Object.entries(presenceOf(observer.frames, home))
              .filter(([, meta]) => doomedIds.has(clientOf(meta) ?? -1))
              .map(([session]) => session)
          yield* eventuallyTrue("the observer sees the victim's clients present", Effect.sync(() => doomedSessions().length === doomed.length), 300, 50)
          presentAtKill = doomedSessions()
          framesAtKill = observer.frames.length
          for (const r of running) r.idAtKill = Math.max(0, ...r.queued.keys())
          // aim at a push on its way to the victim (it may be lost before or after its commit)
          const sent = yield* Deferred.make<void>()
          watch.onSend = (server) => {
            if (server === victim) Deferred.unsafeDone(sent, Exit.void)
          }
          yield* Deferred.await(sent).pipe(Effect.timeout("3 seconds"), Effect.ignore)
          yield* Effect.sleep(`${killDelay} millis`)
          inFlightAtKill = watch.inFlight[victim]
          yield* servers[victim].kill("SIGKILL")
          killedAt = Date.now()
          yield* Deferred.succeed(killed, undefined)
        })
        const loading = yield* Effect.fork(Effect.forEach(running, load, { concurrency: "unbounded", discard: true }))
        yield* kill.pipe(Effect.onError(() => Fiber.interrupt(loading)))
        yield* Fiber.join(loading)
        const loadEnd = Date.now()

        // -- settle ---------------------------------------------------------------------------------
        for (let round = 0; round < 2; round++) {
          yield* Effect.forEach(running, (r) => eventually(r.client.sync, 100, 100), { concurrency: "unbounded", discard: true })
        }
        const settled = Date.now()

        // -- failover --------------------------------------------------------------------------------
        for (const r of doomed) {
          assert.notStrictEqual(r.route.current(), victim, `client ${r.i}: its HTTP route left the dead process ${where}`)
          const after = [...r.queued.keys()].filter((id) => id > r.idAtKill)
          assert.isAbove(after.length, 0, `client ${r.i}: kept making mutations after the kill ${where}`)
          assert.isTrue(
            after.some((id) => {
              const by = r.ledger.applied.get(id)
              return by !== undefined && by !== victim
            }),
            `client ${r.i}: mutations made after the kill were applied by a surviving process ${where}`
          )
        }
        yield* eventuallyTrue(
          "every client's live socket is joined on a surviving process",
          Effect.map(
            Effect.forEach(running, (r) => r.live.status),
            (statuses) => statuses.every((s) => s === "connected") && running.every((r) => r.route.joinedOn() !== victim)
          ),
          300,
          50
        )

        // -- presence: the dead process's sessions leave; its clients are back under new sessions -----
        observer.send({ type: T.HEARTBEAT, payload: { ping: 1 } })
        const leftAfterKill = () => {
          const left = new Set<string>()
          for (const f of observer.frames.slice(framesAtKill)) {
            if (f.type === T.PRESENCE && f.payload.topic === home) for (const key of Object.keys(f.payload.leaves ?? {})) left.add(key)
          }
          return left
        }
        yield* eventuallyTrue(
          "the observer saw every session of the dead process leave",
          Effect.sync(() => presentAtKill.every((session) => leftAfterKill().has(session))),
          300,
          50
        )
        yield* eventuallyTrue(
          "the observer sees all nine clients present again, none under a dead session",
          Effect.sync(() => {
            const state = presenceOf(observer.frames, home)
            return new Set(Object.values(state).map(clientOf)).size === CLIENTS && presentAtKill.every((s) => !(s in state))
          }),
          300,
          50
        )

        // -- convergence and exactly-once --------------------------------------------------------------
        const server = SyncTransport.makeFetch({ baseUrl: bases[survivor], timeout: "10 seconds" })
        const logs = new Map<string, ReadonlyArray<Protocol.Change>>()
        const snapshots = new Map<string, Protocol.SnapshotResponse>()
        for (const scope of scopes) {
          const log = yield* Effect.orDie(readLog(server, scope))
          assert.deepStrictEqual(log.map((c) => c.cursor), log.map((_, k) => k + 1), `${scope}: cursors are 1, 2, 3, … ${where}`)
          logs.set(scope, log)
          const snapshot = yield* Effect.orDie(server.snapshot({ scope }))
          assert.strictEqual(snapshot.cursor, log.length, `${scope}: the snapshot is as of the log's head ${where}`)
          snapshots.set(scope, snapshot)
        }
        /** `scope \0 title` → how many changes carry that title. */
        const titles = new Map<string, number>()
        for (const [scope, log] of logs) {
          for (const change of log) {
            const title = titleOf(change)
            if (title !== undefined) titles.set(`${scope}\u0000${title}`, (titles.get(`${scope}\u0000${title}`) ?? 0) + 1)
          }
        }
        let applied = 0
        let refused = 0
        let duplicates = 0
        for (const r of running) {
          const who = `client ${r.i}`
          assert.deepStrictEqual(yield* r.client.pending, [], `${who}: nothing pending ${where}`)
          for (const scope of scopes) {
            assert.deepStrictEqual(yield* r.client.view(scope), snapshots.get(scope)?.data, `${who}, ${scope}: view = server snapshot ${where}`)
          }
          const ids = [...r.queued.keys()].sort((a, b) => a - b)
          assert.deepStrictEqual(ids, ids.map((_, k) => k + 1), `${who}: ids are 1, 2, 3, … ${where}`)
          // the server processed every one of them: its last id is the client's count
          let last = 0
          for (const scope of scopes) {
            const pulled = yield* Effect.orDie(server.pull({ scope, cursor: 0, limit: 1, client_id: r.client.clientId }))
            last = Math.max(last, pulled.last_mutation_id ?? 0)
          }
          assert.strictEqual(last, ids.length, `${who}: last_mutation_id = its number of mutations ${where}`)
          assert.isAtLeast(last, Math.max(0, ...r.ledger.applied.keys()), `${who}: last_mutation_id >= its highest acknowledged id ${where}`)
          for (const id of ids) {
            assert.isTrue(
              r.ledger.applied.has(id) || r.ledger.refused.has(id) || r.ledger.duplicate.has(id),
              `${who}, mutation ${id}: answered by some server ${where}`
            )
            assert.isAtMost(r.ledger.processed.get(id) ?? 0, 1, `${who}, mutation ${id}: processed at most once ${where}`)
          }
          for (const id of r.rejected) assert.isTrue(r.ledger.refused.has(id), `${who}, mutation ${id}: reported rejected, refused by a server ${where}`)
          // each title set by a create or rename is in exactly one change if it was applied, none if refused
          for (const [id, m] of r.queued) {
            if (m.title === undefined) continue
            const n = titles.get(`${m.scope}\u0000${m.title}`) ?? 0
            if (r.ledger.applied.has(id)) assert.strictEqual(n, 1, `${who}, mutation ${id} (${m.kind} ${m.row}): applied, in the log once ${where}`)
            else if (r.ledger.refused.has(id)) assert.strictEqual(n, 0, `${who}, mutation ${id} (${m.kind} ${m.row}): refused, not in the log ${where}`)
            else assert.isAtMost(n, 1, `${who}, mutation ${id} (${m.kind} ${m.row}): in the log at most once ${where}`)
          }
          // its own todo: one create, then exactly one change per toggle it made
          const ownChanges = (logs.get(home) ?? []).filter((c) => c.entity === "todo" && c.id === `own${r.i}`)
          assert.deepStrictEqual(
            ownChanges.map((c) => c.op),
            ["create", ...Array.from({ length: r.toggles }, () => "update")],
            `${who}: its own todo was created once and toggled exactly ${r.toggles} times ${where}`
          )
          const ownNow = Option.getOrUndefined(Schema.decodeUnknownOption(Todo)(snapshots.get(home)?.data["todo"]?.[`own${r.i}`]))
          assert.strictEqual(ownNow?.completed, r.toggles % 2 === 1, `${who}: its own todo's state matches its toggles ${where}`)
          applied += r.ledger.applied.size
          refused += r.ledger.refused.size
          duplicates += r.ledger.duplicate.size
        }
        const total = running.reduce((n, r) => n + r.queued.size, 0)
        console.log(
          `failover ${where}: ${pubsub.name}; killed process ${victim} after ${killedAt - loadStart} ms of load, ${inFlightAtKill} pushes in flight to it; ${total} mutations ` +
            `(${applied} applied, ${refused} refused, ${duplicates} answered as duplicates); ${
              running.reduce((n, r) => n + r.route.failures(), 0)
            } failed requests; route moves ${running.map((r) => r.route.moves()).join(",")}; servers up in ${started - began} ms, load ${loadEnd - loadStart} ms, settle ${settled - loadEnd} ms, checks ${Date.now() - settled} ms`
        )
      }).pipe(
        Effect.scoped,
        Effect.onExit((exit) =>
          Exit.isFailure(exit) ? Effect.sync(() => console.error(`failover FAILED with seed ${seed}: MIZU_SEED=${seed}`)) : Effect.void
        )
      ), 150_000)
  })
})
