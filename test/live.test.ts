/**
 * The live layer, driven by real WebSocket clients over real sockets against
 * a real server on a free port: every rule of PROTOCOL.md section 2.
 */
import { assert, describe, it, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as Layer from "effect/Layer"
import { Authorizer, LiveHttp, LivePubSub, Protocol, SyncStorage } from "mizu-sync-live"
import * as LiveHub from "../src/live/LiveHub.js"
import { registry } from "./suites/EngineSuite.js"
import { freshScope, range, realSleep } from "./suites/util.js"
import { BaseUrl, decodeAs, layerServer, post } from "./support/TestServer.js"
import { connect, type Frame, is, join, request, T } from "./support/WsClient.js"

/** `secret:*` scopes are forbidden to everyone; `team:*` need the token "team". */
const authorizer = Authorizer.layerFunction((req) =>
  req.scope.startsWith("secret:") || (req.scope.startsWith("team:") && req.token !== "team")
    ? Authorizer.forbidden(`may not ${req.action} ${req.scope}`)
    : Effect.void
)

const deps = Layer.mergeAll(SyncStorage.layerMemory, LivePubSub.layerMemory, authorizer)

const push = (base: string, scope: string, id: string, token?: string) =>
  post(`${base}/_sync/push`, JSON.stringify({ mutations: [{ name: "todo/create", scope, args: { id, title: id } }] }), {
    "content-type": "application/json",
    ...(token === undefined ? {} : { authorization: `Bearer ${token}` })
  })

const isPoke = (scope: string, cursor?: number) => (f: Frame) =>
  f.type === T.POKE && f.payload.scope === scope && (cursor === undefined || f.payload.cursor === cursor)

describe("live over WebSocket", () => {
  // Servers run on the real clock: their timers (ticks, presence renewal) must fire.
  const real = { excludeTestServices: true } as const

  layer(layerServer({ registry, live: { maxScopes: 5, maxFrameBytes: 4096 } }, deps), real)("protocol rules", (it) => {
    it.effect("JOIN first: anything else gets not_joined; JOIN's REPLY carries session_id and cursors", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const c = yield* connect(base)
        assert.strictEqual(c.ws.protocol, "mizu-live-v1")
        c.send({ type: T.SUBSCRIBE, ref: 1, payload: { scopes: ["a"] } })
        const err = yield* c.waitFor((f) => f.type === T.ERROR)
        assert.deepStrictEqual(err.payload, { code: "not_joined", message: "the first frame must be JOIN", recoverable: true })
        const scope = freshScope()
        yield* push(base, scope, "x")
        const reply = yield* join(c, { scopes: [scope] })
        assert.strictEqual(reply.status, "ok")
        assert.isString(reply.session_id)
        assert.deepStrictEqual(reply.cursors, { [scope]: 1 })
        const again = yield* join(c)
        assert.strictEqual(again.reason, "already_joined")
      }).pipe(Effect.scoped))

    it.effect("SUBSCRIBE / UNSUBSCRIBE reply with the same ref; cursors are the heads", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const c = yield* connect(base)
        yield* join(c)
        const a = freshScope()
        const b = freshScope()
        yield* push(base, a, "1")
        yield* push(base, a, "2")
        c.send({ type: T.SUBSCRIBE, ref: 41, payload: { scopes: [a, b] } })
        const reply = yield* c.waitFor((f) => f.type === T.REPLY && f.ref === 41)
        assert.deepStrictEqual(reply.payload, { status: "ok", cursors: { [a]: 2, [b]: 0 } })
        c.send({ type: T.UNSUBSCRIBE, ref: 42, payload: { scopes: [a] } })
        const un = yield* c.waitFor((f) => f.type === T.REPLY && f.ref === 42)
        assert.deepStrictEqual(un.payload, { status: "ok" })
      }).pipe(Effect.scoped))

    it.effect("a forbidden scope fails the whole SUBSCRIBE (and JOIN) with reason forbidden; nothing leaks", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const c = yield* connect(base)
        const ok = freshScope()
        const denied = yield* join(c, { scopes: [ok, "secret:1"] })
        assert.strictEqual(denied.status, "error")
        assert.strictEqual(denied.reason, "forbidden")
        yield* join(c, { token: "team" })
        const sub = yield* request(c, { type: T.SUBSCRIBE, payload: { scopes: [ok, "secret:x"] } })
        assert.strictEqual(sub.reason, "forbidden")
        assert.strictEqual((yield* request(c, { type: T.SUBSCRIBE, payload: { scopes: ["team:1"] } })).status, "ok")
        // neither scope of the failed request was subscribed: a push to `ok` pokes nobody here
        yield* push(base, ok, "p")
        yield* push(base, "team:1", "q", "team")
        yield* c.waitFor(isPoke("team:1"))
        assert.isFalse(c.frames.some(isPoke(ok)))
      }).pipe(Effect.scoped))

    it.effect("bad frames get invalid_message (recoverable) and the connection stays open", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const c = yield* connect(base)
        yield* join(c)
        const bad: Array<[string, string | Buffer]> = [
          ["not JSON", "{nope"],
          ["truncated JSON", "{\"type\":3,"],
          ["JSON but not an object", "[1,2]"],
          ["a bare number", "42"],
          ["unknown type 99", JSON.stringify({ type: 99 })],
          ["type as a string", JSON.stringify({ type: "1" })],
          ["no type", JSON.stringify({ payload: {} })],
          ["SUBSCRIBE without payload", JSON.stringify({ type: T.SUBSCRIBE, ref: 1 })],
          ["SUBSCRIBE scopes not an array", JSON.stringify({ type: T.SUBSCRIBE, payload: { scopes: "a" } })],
          ["scope with a space", JSON.stringify({ type: T.SUBSCRIBE, payload: { scopes: ["a b"] } })],
          ["negative ref", JSON.stringify({ type: T.HEARTBEAT, ref: -1 })],
          ["EVENT without name", JSON.stringify({ type: T.EVENT, topic: "t", payload: {} })],
          ["a server-only type (POKE)", JSON.stringify({ type: T.POKE, payload: { scope: "a", cursor: 1 } })],
          ["a binary frame", Buffer.from([1, 2, 3])]
        ]
        for (const [what, data] of bad) {
          const before = c.frames.length
          c.sendRaw(data)
          const err = yield* c.waitFor(is(T.ERROR, (f) => c.frames.indexOf(f) >= before))
          assert.strictEqual(err.payload.code, "invalid_message", what)
          assert.strictEqual(err.payload.recoverable, true, what)
        }
        // the connection is alive: a HEARTBEAT is answered
        c.send({ type: T.HEARTBEAT, payload: { ping: 7 } })
        const hb = yield* c.waitFor((f) => f.type === T.HEARTBEAT)
        assert.deepStrictEqual(hb.payload, { pong: 7 })
      }).pipe(Effect.scoped))

    it.effect("a frame over the size limit closes the connection with 1009", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const c = yield* connect(base)
        yield* join(c)
        c.sendRaw(JSON.stringify({ type: T.HEARTBEAT, payload: { ping: "x".repeat(5000) } }))
        const closed = yield* c.closed
        assert.strictEqual(closed.code, 1009)
      }).pipe(Effect.scoped))

    it.effect("more scopes than the limit fail with too_many_scopes", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const c = yield* connect(base)
        yield* join(c, { scopes: range(3).map((i) => `lim:${i}`) })
        const over = yield* request(c, { type: T.SUBSCRIBE, payload: { scopes: range(3).map((i) => `more:${i}`) } })
        assert.strictEqual(over.reason, "too_many_scopes")
        const fits = yield* request(c, { type: T.SUBSCRIBE, payload: { scopes: ["lim:1", "more:1", "more:2"] } })
        assert.strictEqual(fits.status, "ok")
      }).pipe(Effect.scoped))

    it.effect("HEARTBEAT gets its pong; LEAVE gets CLOSE normal and the socket closes", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const c = yield* connect(base)
        yield* join(c)
        c.send({ type: T.HEARTBEAT, ref: 9, payload: { ping: "abc" } })
        const hb = yield* c.waitFor((f) => f.type === T.HEARTBEAT)
        assert.deepStrictEqual(hb, { type: T.HEARTBEAT, ref: 9, payload: { pong: "abc" } })
        c.send({ type: T.LEAVE, payload: { reason: "bye" } })
        const close = yield* c.waitFor((f) => f.type === T.CLOSE)
        assert.deepStrictEqual(close.payload, { reason: "normal" })
        const closed = yield* c.closed
        assert.strictEqual(closed.code, 1000)
      }).pipe(Effect.scoped))

    it.effect("push over HTTP pokes subscribed sockets (not others), never before the change is pullable", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const scope = freshScope()
        const other = freshScope()
        const sub = yield* connect(base)
        const notSub = yield* connect(base)
        yield* join(sub, { scopes: [scope] })
        yield* join(notSub, { scopes: [other] })
        for (const i of range(5)) {
          yield* push(base, scope, `t${i}`)
          const poke = yield* sub.waitFor(isPoke(scope, i))
          assert.deepStrictEqual(poke.payload, { scope, cursor: i })
          const pulled = decodeAs(
            Protocol.PullResponse,
            (yield* post(`${base}/_sync/pull`, JSON.stringify({ scope, cursor: i - 1 }))).json
          )
          assert.deepStrictEqual(pulled.changes.map((c) => c.cursor), [i])
        }
        yield* push(base, other, "o")
        yield* notSub.waitFor(isPoke(other, 1))
        assert.isFalse(notSub.frames.some(isPoke(scope)))
        assert.isFalse(sub.frames.some(isPoke(other)))
      }).pipe(Effect.scoped))

    it.effect("EVENT with a topic is broadcast to the other subscribers only, and never stored", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const topic = freshScope("room")
        const a = yield* connect(base)
        const b = yield* connect(base)
        const outsider = yield* connect(base)
        const ja = yield* join(a, { scopes: [topic] })
        yield* join(b, { scopes: [topic] })
        yield* join(outsider, { scopes: [freshScope()] })
        const ack = yield* request(a, { type: T.EVENT, topic, payload: { name: "typing", values: { on: true } } })
        assert.strictEqual(ack.status, "ok")
        // `from` is a's key on the topic (the ack tells a its own), not its session id
        const key = (ack.result as { key: string }).key
        assert.isString(key)
        assert.notStrictEqual(key, ja.session_id)
        const got = yield* b.waitFor((f) => f.type === T.BROADCAST)
        assert.deepStrictEqual(got.payload, { topic, event: "typing", payload: { on: true }, from: key })
        yield* realSleep(50)
        assert.isFalse(a.frames.some((f) => f.type === T.BROADCAST))
        assert.isFalse(outsider.frames.some((f) => f.type === T.BROADCAST))
        // not subscribed: refused
        const refused = yield* request(outsider, { type: T.EVENT, topic, payload: { name: "typing" } })
        assert.strictEqual(refused.reason, "not_subscribed")
        // nothing stored
        const snap = decodeAs(Protocol.SnapshotResponse, (yield* post(`${base}/_sync/snapshot`, JSON.stringify({ scope: topic }))).json)
        assert.deepStrictEqual(snap, { data: {}, cursor: 0, checksum: 0 })
      }).pipe(Effect.scoped))

    it.effect("presence: full state on subscribe, joins and leaves after; a disconnect leaves", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const topic = freshScope("room")
        const a = yield* connect(base)
        yield* join(a, { scopes: [topic] })
        const ka = ((yield* request(a, { type: T.EVENT, topic, payload: { name: "presence", values: { user: "ann" } } })).result as { key: string }).key
        const b = yield* connect(base)
        yield* join(b, { scopes: [topic] })
        const state = yield* b.waitFor(is(T.PRESENCE, (f) => f.payload.state !== undefined))
        assert.deepStrictEqual(state.payload, { topic, state: { [ka]: { user: "ann" } } })
        const kb = ((yield* request(b, { type: T.EVENT, topic, payload: { name: "presence", values: { user: "bob" } } })).result as { key: string }).key
        const joins = yield* a.waitFor(is(T.PRESENCE, (f) => f.payload.joins?.[kb] !== undefined))
        assert.deepStrictEqual(joins.payload.joins, { [kb]: { user: "bob" } })
        b.ws.terminate()
        const leaves = yield* a.waitFor(is(T.PRESENCE, (f) => f.payload.leaves !== undefined))
        assert.deepStrictEqual(leaves.payload.leaves, { [kb]: { user: "bob" } })
      }).pipe(Effect.scoped))

    it.effect("no fiber, subscription or socket outlives its session: 1,000 sessions open and close", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const hub = yield* LiveHub.LiveHub
        const server = yield* LiveHttp.LiveServer
        yield* Effect.forEach(range(1000), (i) =>
          Effect.gen(function*() {
            const c = yield* connect(base)
            yield* join(c, { scopes: [`leak:${i % 10}`, "leak:shared"] })
            if (i % 3 === 0) yield* request(c, { type: T.EVENT, topic: "leak:shared", payload: { name: "presence", values: { i } } })
            if (i % 2 === 0) c.send({ type: T.LEAVE })
          }).pipe(Effect.scoped), { concurrency: 50, discard: true })
        let open = -1
        for (let i = 0; i < 100 && open !== 0; i++) {
          yield* realSleep(50)
          open = (yield* hub.sinkCount) + (yield* hub.topicCount) + (yield* server.sessionCount)
        }
        assert.strictEqual(yield* hub.sinkCount, 0)
        assert.strictEqual(yield* hub.topicCount, 0)
        assert.strictEqual(yield* server.sessionCount, 0)
      }))
  })

  layer(layerServer({ registry, live: { idleTimeout: "300 millis" } }, deps), real)("timers", (it) => {
    it.effect("a connection with no incoming frame for the idle timeout gets CLOSE and is closed", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const c = yield* connect(base)
        yield* join(c)
        const close = yield* c.waitFor(is(T.CLOSE), 5000)
        assert.strictEqual(close.payload.reason, "idle_timeout")
        yield* c.closed
      }).pipe(Effect.scoped))
  })

  /** The talkers of the tests below send far more, and bigger, broadcasts than the default limits allow. */
  const unthrottled = { maxFramesPerSecond: 1e9, frameBurst: 1e9, maxBroadcastsPerSecond: 1e9, broadcastBurst: 1e9, maxBroadcastBytes: 60 * 1024 } as const

  layer(layerServer({ registry, live: { ...unthrottled, maxPendingBytes: 256 * 1024, highWaterBytes: 16 * 1024 } }, deps), real)("slow consumers", (it) => {
    it.effect("a session that never reads is closed as slow_consumer (4008); the others keep getting pokes", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const server = yield* LiveHttp.LiveServer
        const topic = freshScope("slow")
        const slow = yield* connect(base)
        const fast = yield* connect(base)
        const talker = yield* connect(base)
        yield* join(slow, { scopes: [topic] })
        yield* join(fast, { scopes: [topic] })
        yield* join(talker, { scopes: [topic] })
        // The slow client stops reading from its TCP socket.
        const rawSocket = (slow.ws as unknown as { _socket: { pause: () => void; resume: () => void } })._socket
        rawSocket.pause()
        const big = "x".repeat(8 * 1024)
        let sent = 0
        let pokesSeen = 0
        while ((yield* server.sessionCount) === 3 && sent < 20_000) {
          talker.send({ type: T.EVENT, topic, payload: { name: "blob", values: { big } } })
          sent++
          if (sent % 100 === 0) {
            // the others are not held up: a push reaches the fast session at once
            yield* push(base, topic, `t${sent}`)
            pokesSeen++
            yield* fast.waitFor(isPoke(topic, pokesSeen), 2000)
            yield* realSleep(1)
          }
        }
        assert.strictEqual(yield* server.sessionCount, 2, `the slow session is still open after ${sent} broadcasts`)
        // the slow client reads again: what was queued ends with CLOSE slow_consumer and code 4008
        rawSocket.resume()
        const info = yield* slow.closed
        assert.strictEqual(info.code, 4008)
        assert.isTrue(slow.frames.some(is(T.CLOSE, (f) => f.payload.reason === "slow_consumer")))
        yield* push(base, topic, "after")
        yield* fast.waitFor(isPoke(topic, pokesSeen + 1), 2000)
        assert.strictEqual(fast.ws.readyState, 1)
      }).pipe(Effect.scoped))
  })

  // The ticker is off here: what was held back must come out when the socket drains.
  layer(layerServer({ registry, live: { ...unthrottled, maxPendingBytes: 256 * 1024 * 1024, highWaterBytes: 16 * 1024, tickInterval: "1 hour" } }, deps), real)("conflation", (it) => {
    it.effect("pokes are conflated per scope while a session's socket is backed up, and sent when it drains", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const topic = freshScope("conf")
        const reader = yield* connect(base)
        const talker = yield* connect(base)
        yield* join(reader, { scopes: [topic] })
        yield* join(talker, { scopes: [topic] })
        const socket = (reader.ws as unknown as { _socket: { pause: () => void; resume: () => void } })._socket
        socket.pause()
        // back the reader's socket up past the kernel's buffers and the high-water mark
        const big = "y".repeat(32 * 1024)
        for (let i = 0; i < 400; i++) talker.send({ type: T.EVENT, topic, payload: { name: "blob", values: { big } } })
        yield* realSleep(300)
        for (const i of range(100)) yield* push(base, topic, `c${i}`)
        yield* realSleep(100)
        socket.resume()
        yield* reader.waitFor(isPoke(topic, 100), 10_000)
        const pokes = reader.frames.filter(isPoke(topic))
        assert.isBelow(pokes.length, 10, `got ${pokes.length} pokes for 100 commits`)
        assert.strictEqual(reader.frames.filter((f) => f.type === T.BROADCAST).length, 400)
      }).pipe(Effect.scoped))
  })

  describe("shutdown", () => {
    it.live("on shutdown every session gets CLOSE {reason: shutdown}, spread over the drain period", () =>
      Effect.gen(function*() {
        const outer = yield* Scope.make()
        const clients = yield* Effect.gen(function*() {
          const base = yield* BaseUrl
          const cs = yield* Effect.forEach(range(5), () => connect(base).pipe(Scope.extend(outer)))
          for (const c of cs) yield* join(c)
          return cs
        }).pipe(Effect.provide(layerServer({ registry, live: { drainPeriod: "200 millis" } }, deps)))
        for (const c of clients) {
          assert.isTrue(c.frames.some(is(T.CLOSE, (f) => f.payload.reason === "shutdown")))
          const closed = yield* c.closed
          assert.strictEqual(closed.code, 1001)
        }
        yield* Scope.close(outer, Exit.void)
      }))
  })
})
