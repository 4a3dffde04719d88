/**
 * LiveClient against the real live server (sync + live on a free port):
 * JOIN with scopes, SUBSCRIBE replies with cursors, pokes, reconnect after a
 * server restart with re-subscription, heartbeats against the idle timeout,
 * presence and broadcast, refused scopes; and the SyncClient pulling on pokes.
 */
import { assert, describe, it, layer } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Scope from "effect/Scope"
import { Authorizer, LivePubSub, SyncStorage } from "mizu-sync-live"
import { LiveClient, LiveProtocol as Live, MizuLive, MizuSync, type MizuSyncOptions, SyncTransport } from "mizu-sync-live/client"
import { type WebSocket, WebSocketServer } from "ws"
import { createTodo, registry, TodoEntity, toggleTodo } from "../examples/todo/mutations.js"
import { layerLiveClient, nodeLiveOptions } from "mizu-sync-live/client/node"
import { freshScope } from "./suites/util.js"
import { eventuallyTrue, pushOne, startClient, takeUntil } from "./support/clientHarness.js"
import { BaseUrl, layerMemoryDeps, layerServer } from "./support/TestServer.js"

const startLive = (options: LiveClient.Options) =>
  Effect.map(Layer.build(layerLiveClient(options)), Context.get(LiveClient.LiveClient))

const fastLive = { reconnectInitial: "10 millis", reconnectMax: "100 millis" } as const

/** A `MizuSync` (memory storage, the todo registry) closed with the test's scope. */
const openSync = (options: Omit<MizuSyncOptions, "registry" | "storage">) =>
  Effect.acquireRelease(
    Effect.promise(() => MizuSync.open({ ...options, registry, storage: "memory" })),
    (client) => Effect.promise(() => client.close())
  )

const is = <T extends LiveClient.LiveEvent["_tag"]>(tag: T) => (e: LiveClient.LiveEvent): e is Extract<LiveClient.LiveEvent, { _tag: T }> =>
  e._tag === tag

const denySecret = Authorizer.layerFunction((req) => req.scope.startsWith("secret:") ? Authorizer.forbidden(`no ${req.scope}`) : Effect.void)

describe("LiveClient", () => {
  layer(
    layerServer({ registry, live: { drainPeriod: "10 millis" } }, Layer.mergeAll(SyncStorage.layerMemory, LivePubSub.layerMemory, denySecret)),
    { timeout: 60_000, excludeTestServices: true }
  )("against the live server", (it) => {
    it.scoped("joins with its scopes, gets their heads, and is poked after each commit", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const scope = freshScope("todos")
        yield* pushOne(base, scope, "a")
        const live = yield* startLive({ ...fastLive, url: LiveClient.websocketUrl(base), scopes: [scope] })
        const events = yield* live.subscribeEvents
        const online = yield* takeUntil(events, is("Online"))
        assert.deepStrictEqual(online.cursors, { [scope]: 1 })
        assert.isFalse(online.reconnect)
        assert.strictEqual(yield* live.status, "connected")
        yield* pushOne(base, scope, "b")
        const poke = yield* takeUntil(events, is("Poke"))
        assert.deepStrictEqual(poke, { _tag: "Poke", scope, cursor: 2 })
      }))

    it.scoped("subscribe answers with cursors (REPLY by ref); unsubscribe stops the pokes", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const a = freshScope("a")
        const b = freshScope("b")
        yield* pushOne(base, a, "x")
        yield* pushOne(base, a, "y")
        const live = yield* startLive({ ...fastLive, url: LiveClient.websocketUrl(base) })
        const events = yield* live.subscribeEvents
        assert.deepStrictEqual(yield* live.subscribe([a, b]), { [a]: 2, [b]: 0 })
        assert.deepStrictEqual([...(yield* live.scopes)].sort(), [a, b].sort())
        yield* live.unsubscribe([a])
        yield* pushOne(base, a, "z")
        yield* pushOne(base, b, "z")
        const poke = yield* takeUntil(events, is("Poke"))
        assert.deepStrictEqual(poke, { _tag: "Poke", scope: b, cursor: 1 })
        assert.deepStrictEqual(yield* live.scopes, [b])
      }))

    it.scoped("a refused scope fails subscribe and is forgotten", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const live = yield* startLive({ ...fastLive, url: LiveClient.websocketUrl(base) })
        const error = yield* Effect.flip(live.subscribe(["secret:x"]))
        assert.strictEqual(error.reason, "refused")
        assert.include(error.message, "forbidden")
        assert.deepStrictEqual(yield* live.scopes, [])
        const invalid = yield* Effect.flip(live.subscribe(["has space"]))
        assert.strictEqual(invalid.reason, "invalid")
      }))

    it.scoped("a JOIN refused for one of its scopes still connects, with the others", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const ok = freshScope("ok")
        yield* pushOne(base, ok, "a")
        const live = yield* startLive({ ...fastLive, url: LiveClient.websocketUrl(base), scopes: [ok, "secret:y"] })
        const events = yield* live.subscribeEvents
        const online = yield* takeUntil(events, is("Online"))
        assert.deepStrictEqual(online.cursors, { [ok]: 1 })
        assert.deepStrictEqual(yield* live.scopes, [ok])
        yield* pushOne(base, ok, "b")
        assert.deepStrictEqual(yield* takeUntil(events, is("Poke")), { _tag: "Poke", scope: ok, cursor: 2 })
      }))

    it.scoped("presence and broadcast reach the other subscribers of a topic; presence comes back after a reconnect", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const topic = freshScope("room")
        const alice = yield* startLive({ ...fastLive, url: LiveClient.websocketUrl(base), scopes: [topic] })
        const bob = yield* startLive({ ...fastLive, url: LiveClient.websocketUrl(base), scopes: [topic] })
        const bobEvents = yield* bob.subscribeEvents
        yield* alice.subscribe([topic])
        yield* bob.subscribe([topic])
        yield* alice.presence(topic, { name: "alice" })
        const joined = yield* takeUntil(bobEvents, is("Presence"))
        assert.deepStrictEqual(Object.values(joined.current), [{ name: "alice" }])
        yield* alice.broadcast(topic, "typing", { on: true })
        const typing = yield* takeUntil(bobEvents, is("Broadcast"))
        assert.strictEqual(typing.topic, topic)
        assert.strictEqual(typing.event, "typing")
        assert.deepStrictEqual(typing.payload, { on: true })
        // alice's connection drops: she leaves, comes back, and re-announces herself
        yield* alice.reconnect
        yield* eventuallyTrue("alice is present again under a new session", Effect.gen(function*() {
          const state = yield* bob.presenceState(topic)
          return Object.keys(state).length === 1 && Object.keys(state)[0] !== Object.keys(joined.current)[0] &&
            Object.values(state)[0] !== undefined
        }))
        assert.deepStrictEqual(Object.values(yield* bob.presenceState(topic)), [{ name: "alice" }])
      }))

    it.scoped("the SyncClient pulls on pokes: another client's change appears without asking", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const scope = freshScope("todos")
        const options = { registry, scopes: [scope], retryInitial: "5 millis", retryMax: "50 millis" } as const
        const transport = SyncTransport.makeFetch({ baseUrl: base })
        const liveFor = () => layerLiveClient({ ...fastLive, url: LiveClient.websocketUrl(base) })
        const alice = yield* startClient(options, transport, undefined, liveFor())
        const bob = yield* startClient(options, transport, undefined, liveFor())
        yield* eventuallyTrue("both online", Effect.map(Effect.all([alice.status, bob.status]), (s) => s.every((x) => x.live === "connected")))
        yield* alice.mutate(createTodo, { id: "a", title: "from alice" }, { scope })
        // no sync call on bob: the poke after alice's push makes him pull (the failsafe pull is 30 s away)
        yield* eventuallyTrue("bob sees alice's todo", Effect.map(bob.get(scope, TodoEntity, "a"), Option.isSome))
        yield* bob.mutate(toggleTodo, { id: "a" }, { scope })
        yield* eventuallyTrue("alice sees bob's toggle", Effect.map(alice.get(scope, TodoEntity, "a"), (t) => Option.isSome(t) && t.value.completed))
        yield* eventuallyTrue("both settled", Effect.map(Effect.all([alice.pending, bob.pending]), (p) => p.every((x) => x.length === 0)))
        assert.deepStrictEqual(yield* alice.view(scope), yield* bob.view(scope))
      }))

    it.scoped("the plain API: MizuSync with a live connection, on('changes') and on('poke')", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const scope = freshScope("todos")
        const open = () => openSync({ baseUrl: base, scopes: [scope], live: nodeLiveOptions({ baseUrl: base, ...fastLive }) })
        const alice = yield* open()
        const bob = yield* open()
        const changes: Array<ReadonlyArray<unknown>> = []
        const pokes: Array<{ scope: string; cursor: number }> = []
        bob.on("changes", (c) => changes.push(c))
        bob.live?.on("poke", (p) => pokes.push({ scope: p.scope, cursor: p.cursor }))
        yield* Effect.promise(() => bob.live?.subscribe(scope) ?? Promise.resolve({}))
        const m = yield* Effect.promise(() => alice.mutate("todo/create", { id: "a", title: "plain" }, { scope }))
        assert.strictEqual(m.id, 1)
        assert.deepStrictEqual(alice.query(scope, TodoEntity), [["a", { id: "a", title: "plain", completed: false }]])
        yield* eventuallyTrue("bob got the change", Effect.sync(() => bob.query(scope, "todo").length === 1))
        assert.deepStrictEqual(changes.flat(), [{ scope, entity: "todo", id: "a", op: "create", data: { id: "a", title: "plain", completed: false } }])
        assert.deepStrictEqual(pokes[0], { scope, cursor: 1 })
        yield* eventuallyTrue("alice settled", Effect.sync(() => alice.status.pending === 0 && alice.status.online))
        assert.strictEqual(bob.status.live, "connected")
        // the seed's push(mutations) and pull(scope, cursor)
        yield* Effect.promise(() => bob.push([{ name: "todo/toggle", scope, args: { id: "a" } }]))
        yield* Effect.promise(() => alice.pull(scope))
        assert.deepStrictEqual(alice.get(scope, TodoEntity, "a"), { id: "a", title: "plain", completed: true })
      }))
  })

  layer(layerServer({ registry, live: { idleTimeout: "400 millis", drainPeriod: "10 millis" } }, layerMemoryDeps), { timeout: 60_000, excludeTestServices: true })(
    "idle timeout",
    (it) => {
      it.scoped("heartbeats keep a quiet connection open; without them the server drops it and the client reconnects", () =>
        Effect.gen(function*() {
          const base = yield* BaseUrl
          const beating = yield* startLive({ ...fastLive, url: LiveClient.websocketUrl(base), heartbeatInterval: "100 millis" })
          const silent = yield* startLive({ ...fastLive, url: LiveClient.websocketUrl(base), heartbeatInterval: "1 hour" })
          const beatingEvents = yield* beating.subscribeEvents
          const silentEvents = yield* silent.subscribeEvents
          const closed = yield* takeUntil(silentEvents, is("Closed"))
          assert.strictEqual(closed.reason, "idle_timeout")
          const back = yield* takeUntil(silentEvents, is("Online"))
          assert.isTrue(back.reconnect)
          // the beating one saw no Offline in all that time
          const seen = yield* Queue.takeAll(beatingEvents)
          assert.isFalse([...seen].some((e) => e._tag === "Offline" || e._tag === "Closed"))
          assert.strictEqual(yield* beating.status, "connected")
        }))
    }
  )
})

/** Live requests the server authorized (action `subscribe`: JOIN's scopes and SUBSCRIBE), with the token they carried. */
const liveRequests: Array<{ readonly scope: string; readonly token: string | undefined }> = []
const onlyTokenLive = Authorizer.layerFunction((req) => {
  if (req.action === "subscribe") liveRequests.push({ scope: req.scope, token: req.token })
  return req.token === "token-live" ? Effect.void : Authorizer.unauthorized("token-live only")
})

describe("MizuSync live options", () => {
  layer(
    layerServer({ registry, live: { drainPeriod: "10 millis" } }, Layer.mergeAll(SyncStorage.layerMemory, LivePubSub.layerMemory, onlyTokenLive)),
    { timeout: 60_000, excludeTestServices: true }
  )("against a server that takes one token", (it) => {
    it.scoped("`live` takes baseUrl and token from the sync options: the socket joins with the token and the client is poked", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const scope = freshScope("todos")
        // baseUrl and token only at the top; the live options name neither
        const sync = yield* openSync({
          baseUrl: base,
          token: "token-live",
          scopes: [scope],
          retryInitial: "5 millis",
          retryMax: "50 millis",
          live: nodeLiveOptions(fastLive)
        })
        yield* eventuallyTrue("subscribed with the token", Effect.sync(() => liveRequests.some((r) => r.scope === scope && r.token === "token-live")))
        assert.isFalse(liveRequests.some((r) => r.scope === scope && r.token !== "token-live"))
        // another client's push reaches this one only through the live subscription (the failsafe pull is 30 s away)
        yield* Effect.orDie(SyncTransport.makeFetch({ baseUrl: base, token: "token-live" }).push({
          mutations: [{ name: "todo/create", scope, args: { id: "a", title: "from elsewhere" } }]
        }))
        yield* eventuallyTrue("poked and pulled", Effect.sync(() => sync.query(scope, TodoEntity).length === 1))
        assert.strictEqual(sync.status.live, "connected")
      }))

    it.scoped("a token given in the live options wins over the sync options'", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const scope = freshScope("todos")
        const sync = yield* openSync({ baseUrl: base, token: "token-live", scopes: [scope], live: nodeLiveOptions({ ...fastLive, token: "token-other" }) })
        yield* eventuallyTrue("asked with the live token", Effect.sync(() => liveRequests.some((r) => r.scope === scope && r.token === "token-other")))
        assert.isFalse(liveRequests.some((r) => r.scope === scope && r.token === "token-live"))
        // (HTTP still uses the sync options' token)
        yield* Effect.promise(() => sync.pull(scope))
      }))
  })
})

describe("LiveClient reconnects", () => {
  it.scopedLive("after a server restart, with backoff, re-joins its scopes and gets the heads it missed", () =>
    Effect.gen(function*() {
      const startServer = Effect.gen(function*() {
        const scope = yield* Scope.make()
        const ctx = yield* Layer.buildWithScope(layerServer({ registry, live: { drainPeriod: "10 millis" } }, Layer.fresh(layerMemoryDeps)), scope)
        return { base: Context.get(ctx, BaseUrl), stop: Scope.close(scope, Exit.void) }
      })
      const first = yield* startServer
      let url = LiveClient.websocketUrl(first.base)
      const topic = freshScope("todos")
      const live = yield* startLive({ ...fastLive, url: () => url, scopes: [topic] })
      const events = yield* live.subscribeEvents
      yield* takeUntil(events, is("Online"))
      // the next process (on another port), with data the client has not seen
      const second = yield* startServer
      yield* pushOne(second.base, topic, "a")
      yield* pushOne(second.base, topic, "b")
      url = LiveClient.websocketUrl(second.base)
      yield* first.stop
      const closed = yield* takeUntil(events, is("Closed"))
      assert.strictEqual(closed.reason, "shutdown")
      yield* takeUntil(events, is("Offline"))
      const online = yield* takeUntil(events, is("Online"))
      assert.isTrue(online.reconnect)
      assert.deepStrictEqual(online.cursors, { [topic]: 2 })
      yield* pushOne(second.base, topic, "c")
      assert.deepStrictEqual(yield* takeUntil(events, is("Poke")), { _tag: "Poke", scope: topic, cursor: 3 })
      yield* second.stop
    }))
})

/**
 * A bare `ws` server speaking just enough of the protocol: it answers every
 * JOIN ok (session `s<n>` on its n-th connection), then hands the socket to
 * `afterJoin`.
 */
const fakeServer = (afterJoin: (ws: WebSocket) => void = () => {}) =>
  Effect.gen(function*() {
    let connections = 0
    const wss = yield* Effect.acquireRelease(
      Effect.async<WebSocketServer>((resume) => {
        const server: WebSocketServer = new WebSocketServer({ port: 0, host: "127.0.0.1" }, (): void => resume(Effect.succeed(server)))
      }),
      (server) => Effect.async<void>((resume) => {
        for (const c of server.clients) c.terminate()
        server.close(() => resume(Effect.void))
      })
    )
    wss.on("connection", (ws) => {
      const n = ++connections
      ws.on("message", (data) => {
        const frame = Live.decodeClientFrame(String(data))
        if (frame._tag === "Right" && frame.right.type === Live.FrameType.JOIN) {
          ws.send(Live.encodeServerFrame({ type: Live.FrameType.REPLY, ref: frame.right.ref, payload: { status: "ok", session_id: `s${n}`, cursors: {} } }))
          afterJoin(ws)
        }
      })
    })
    const address = wss.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    return { url: `ws://127.0.0.1:${port}`, connections: () => connections }
  })

describe("LiveClient against a server that stops answering", () => {
  it.scopedLive("no incoming frame for the idle timeout: the client drops the connection and reconnects", () =>
    Effect.gen(function*() {
      // answers JOIN, then never says anything again (no heartbeat replies)
      const server = yield* fakeServer()
      const live = yield* startLive({ ...fastLive, url: server.url, heartbeatInterval: "50 millis", idleTimeout: "200 millis" })
      const events = yield* live.subscribeEvents
      const first = yield* takeUntil(events, is("Online"))
      assert.strictEqual(first.sessionId, "s1")
      yield* takeUntil(events, is("Offline"))
      const again = yield* takeUntil(events, is("Online"))
      assert.isTrue(again.reconnect)
      assert.isAtLeast(server.connections(), 2)
    }))

  it.scopedLive("after CLOSE rate_limited the reconnect delays keep growing; after a plain close they start over", () =>
    Effect.gen(function*() {
      /** How many connections a client makes in 2 s to a server that closes each one shortly after its JOIN. */
      const connectionsIn2s = (reason: string | undefined) =>
        Effect.scoped(Effect.gen(function*() {
          const server = yield* fakeServer((ws) =>
            setTimeout(() => {
              if (reason !== undefined) ws.send(Live.encodeServerFrame({ type: Live.FrameType.CLOSE, payload: { reason } }))
              ws.close(reason === undefined ? 1000 : 1008)
            }, 10)
          )
          yield* startLive({ url: server.url, reconnectInitial: "20 millis", reconnectMax: "5 seconds" })
          yield* Effect.sleep("2 seconds")
          return server.connections()
        }))
      const limited = yield* connectionsIn2s("rate_limited")
      const plain = yield* connectionsIn2s(undefined)
      // growing caps (20, 40, 80, … ms) allow ~8 connections in 2 s; caps that start over (20 ms) several times more
      assert.isBelow(limited, 15)
      assert.isAbove(plain, limited * 2)
    }))

  it.scopedLive("without a WebSocket constructor (Node 20, no `ws` given) the plain client reports it instead of crashing", () =>
    Effect.gen(function*() {
      const errors: Array<string> = []
      const live = new MizuLive({ endpoint: "ws://127.0.0.1:9/_live/websocket", reconnectInitial: "5 millis", reconnectMax: "20 millis" })
      live.on("error", (e) => errors.push(e.code))
      yield* Effect.addFinalizer(() => Effect.promise(() => live.close()))
      yield* Effect.promise(() => live.connect())
      yield* eventuallyTrue("connect_failed reported", Effect.sync(() => errors.includes("connect_failed")))
      assert.notStrictEqual(live.status, "connected")
    }))
})
