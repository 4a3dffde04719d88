/**
 * The live layer against hostile and careless clients, with raw WebSocket
 * frames against a real server on a free port (issue #14):
 * - identities: BROADCAST `from` and PRESENCE keys are per-topic handles, not
 *   session ids; a live page pushes under a client id nobody can learn;
 * - floods: a frame rate limit (CLOSE `rate_limited`, 4029), TCP pushback
 *   from a bounded inbox, re-SUBSCRIBE without storage reads, REPLY bytes
 *   counted as pending, limits enforced while the inbox is busy;
 * - admission: a JOIN deadline, pre-JOIN frames not refreshing the idle
 *   timer, session caps per process and per address (`X-Forwarded-For`);
 * - presence and broadcast: bounded metas, payloads, rates and entries, an
 *   initial state that never closes a subscriber, the `broadcast` action;
 * - re-authorization on expiry and on an interval (CLOSE `unauthorized`, 4001);
 * - presence across two processes' hubs, renewed and expired.
 * (The flood test in its own process is test/live-flood.test.ts.)
 */
import { assert, describe, it, layer } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import {
  Authorizer,
  ChangeLog,
  Html,
  LiveHttp,
  LivePubSub,
  Page,
  Protocol,
  SyncStorage,
  TokenAuthorizer
} from "mizu-sync-live"
import WebSocket from "ws"
import { registry } from "../examples/todo/mutations.js"
import { freshScope, range, realSleep } from "./suites/util.js"
import { BaseUrl, decodeAs, layerServer, post } from "./support/TestServer.js"
import { connect, is, join, keyOf, request, T, type WsClient, wsUrl } from "./support/WsClient.js"

const real = { excludeTestServices: true } as const
const { html } = Html

const push = (base: string, scope: string, id: string, token?: string) =>
  post(`${base}/_sync/push`, JSON.stringify({ mutations: [{ name: "todo/create", scope, args: { id, title: id } }] }), {
    "content-type": "application/json",
    ...(token === undefined ? {} : { authorization: `Bearer ${token}` })
  })

/** Everything the socket was sent until now has arrived: a HEARTBEAT round trip. */
const settle = (c: WsClient, ping: string) =>
  Effect.zipRight(Effect.sync(() => c.send({ type: T.HEARTBEAT, payload: { ping } })), c.waitFor(is(T.HEARTBEAT, (f) => f.payload.pong === ping)))

/** The key an EVENT's ack gives the sender on its topic. */

/** The TCP socket under a test client: pause it and the client stops reading. */
const tcp = (c: WsClient) => (c.ws as unknown as { _socket: { pause: () => void; resume: () => void } })._socket

/** Wait (on the wall clock) until `check` holds, or fail with `what`. */
const until = (what: string, check: Effect.Effect<boolean>, ms = 5000) =>
  Effect.gen(function*() {
    const deadline = Date.now() + ms
    while (!(yield* check)) {
      if (Date.now() > deadline) return yield* Effect.die(new Error(`timed out waiting for ${what}`))
      yield* realSleep(20)
    }
  })

/** Try an upgrade with extra headers: the open socket, or the HTTP status and body of the refusal. */
const upgrade = (base: string, headers: Record<string, string> = {}) =>
  Effect.acquireRelease(
    Effect.async<{ readonly ws?: WebSocket; readonly status?: number; readonly body?: string }>((resume) => {
      const ws = new WebSocket(wsUrl(base), ["mizu-live-v1"], { headers })
      ws.on("error", () => undefined)
      ws.once("open", () => resume(Effect.succeed({ ws })))
      ws.once("unexpected-response", (_req, res) => {
        let body = ""
        res.on("data", (c: Buffer) => (body += c.toString()))
        res.on("end", () => resume(Effect.succeed({ status: res.statusCode ?? 0, body })))
      })
    }),
    (r) => Effect.sync(() => r.ws?.terminate())
  )

const unavailable = (r: { readonly status?: number; readonly body?: string }) => {
  assert.strictEqual(r.status, 503)
  assert.strictEqual(decodeAs(Protocol.ErrorBody, JSON.parse(r.body ?? "")).error.code, "unavailable")
}

// -- test pages ----------------------------------------------------------------------

/** Broadcasts on its topic and pushes a todo on events; sleeps on "slow". */
const ProbePage = Page.make({
  path: "/probe",
  topic: "probe:topic",
  state: Schema.Struct({ results: Schema.Array(Schema.String) }),
  mount: () => Effect.succeed({ results: [] }),
  render: (s) => ({ results: html`<p>${s.results.join(",")}</p>` }),
  handle: (event, s, ctx) => {
    switch (event.name) {
      case "cast":
        return Effect.as(ctx.broadcast("hello", { n: 1 }), s)
      case "add":
        return ctx.pushMutation({
          name: "todo/create",
          scope: String(event.values["scope"]),
          args: { id: String(event.values["id"]), title: "t" }
        }).pipe(
          Effect.map((r) => (r.ok ? (r.duplicate === true ? "duplicate" : "ok") : r.error?.code ?? "error")),
          Effect.catchAll((e) => Effect.succeed(e.code)),
          Effect.map((result) => ({ results: [...s.results, result] }))
        )
      case "slow":
        return Effect.as(Effect.sleep(Number(event.values["ms"] ?? 20)), s)
      default:
        return Effect.succeed(s)
    }
  }
})

// -- A: identities ----------------------------------------------------------------------

describe("live, hostile clients", () => {
  layer(layerServer({ registry, pages: [ProbePage] }, Layer.mergeAll(SyncStorage.layerMemory, LivePubSub.layerMemory, Authorizer.layerAllowAll)), real)("identities", (it) => {
    it.effect("BROADCAST from and PRESENCE keys are per-topic handles: stable on a topic, unlinkable, never the session id", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const t1 = freshScope("room")
        const t2 = freshScope("room")
        const a = yield* connect(base)
        const b = yield* connect(base)
        const ja = yield* join(a, { scopes: [t1, t2] })
        yield* join(b, { scopes: [t1, t2] })
        const p1 = keyOf(yield* request(a, { type: T.EVENT, topic: t1, payload: { name: "presence", values: { u: 1 } } }))
        const p2 = keyOf(yield* request(a, { type: T.EVENT, topic: t2, payload: { name: "presence", values: { u: 2 } } }))
        const c1 = keyOf(yield* request(a, { type: T.EVENT, topic: t1, payload: { name: "typing" } }))
        const seen = yield* b.waitFor(is(T.BROADCAST, (f) => f.payload.topic === t1))
        yield* b.waitFor(is(T.PRESENCE, (f) => f.payload.topic === t2 && f.payload.joins?.[p2] !== undefined))
        const j1 = yield* b.waitFor(is(T.PRESENCE, (f) => f.payload.topic === t1 && f.payload.joins !== undefined))
        // one handle per (session, topic): its presence key and its broadcasts' `from` there
        assert.strictEqual(c1, p1)
        assert.strictEqual(seen.payload.from, p1)
        assert.deepStrictEqual(Object.keys(j1.payload.joins ?? {}), [p1])
        // another topic, another handle; neither is, contains or is contained in the session id
        assert.notStrictEqual(p1, p2)
        const sid = ja.session_id ?? ""
        for (const key of [p1, p2]) {
          assert.notInclude(sid, key)
          assert.notInclude(key, sid)
          assert.notInclude(key, sid.replaceAll("-", "").slice(0, 8))
        }
        // another session on the same topic has its own
        const pb = keyOf(yield* request(b, { type: T.EVENT, topic: t1, payload: { name: "presence", values: { u: 3 } } }))
        assert.notStrictEqual(pb, p1)
        // a presence update keeps the key
        assert.strictEqual(keyOf(yield* request(a, { type: T.EVENT, topic: t1, payload: { name: "presence", values: { u: 9 } } })), p1)
        yield* b.waitFor(is(T.PRESENCE, (f) => f.payload.topic === t1 && (f.payload.joins?.[p1] as { u?: number } | undefined)?.u === 9))
      }).pipe(Effect.scoped))

    it.effect("a live page pushes under a client id nobody can learn: pushing as page.<session id> does not disturb it", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const scope = freshScope("user")
        const page = yield* connect(base)
        const joined = yield* join(page, { url: "/probe" })
        const sid = joined.session_id ?? ""
        // someone who saw the session id (or a broadcast of the page) claims the old client id and burns its ids
        const attack = yield* post(
          `${base}/_sync/push`,
          JSON.stringify({
            client_id: `page.${sid}`,
            mutations: range(5).map((id) => ({ id, name: "todo/create", scope, args: { id: `evil${id}`, title: "x" } }))
          })
        )
        assert.strictEqual(attack.status, 200)
        yield* request(page, { type: T.EVENT, payload: { name: "add", values: { scope, id: "mine" } } })
        yield* page.waitFor(is(T.PATCH, (f) => f.payload.regions.some((r) => r.html === "<p>ok</p>")))
        const pulled = decodeAs(Protocol.PullResponse, (yield* post(`${base}/_sync/pull`, JSON.stringify({ scope, cursor: 0 }))).json)
        assert.include(pulled.changes.map((c) => c.id), "mine")
        // the page's broadcasts carry a handle too, not its session id
        const watcher = yield* connect(base)
        yield* join(watcher, { scopes: ["probe:topic"] })
        yield* request(page, { type: T.EVENT, payload: { name: "cast" } })
        const cast = yield* watcher.waitFor(is(T.BROADCAST, (f) => f.payload.event === "hello"))
        assert.isString(cast.payload.from)
        assert.notInclude(cast.payload.from ?? "", sid)
        assert.notStrictEqual(cast.payload.from, sid)
      }).pipe(Effect.scoped))
  })

  // -- B: floods ------------------------------------------------------------------------

  layer(layerServer({ registry, live: { maxFramesPerSecond: 50, frameBurst: 20 } }, Layer.mergeAll(SyncStorage.layerMemory, LivePubSub.layerMemory, Authorizer.layerAllowAll)), real)("frame rate", (it) => {
    it.effect("a client over the frame rate is closed with CLOSE rate_limited and code 4029; one under it is not", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const polite = yield* connect(base)
        yield* join(polite)
        const flood = yield* connect(base)
        yield* join(flood)
        for (const i of range(100)) flood.send({ type: T.HEARTBEAT, payload: { ping: i } })
        const close = yield* flood.waitFor(is(T.CLOSE))
        assert.strictEqual(close.payload.reason, "rate_limited")
        assert.strictEqual((yield* flood.closed).code, 4029)
        // at most the burst was answered
        assert.isAtMost(flood.frames.filter(is(T.HEARTBEAT)).length, 21)
        // 20 frames a second for 1.5 s: under the limit, answered, open
        for (const i of range(30)) {
          yield* settle(polite, `p${i}`)
          yield* realSleep(50)
        }
        assert.strictEqual(polite.ws.readyState, WebSocket.OPEN)
        assert.isFalse(polite.frames.some(is(T.CLOSE)))
      }).pipe(Effect.scoped))
  })

  describe("floods", () => {
    let heads = 0
    /** A ChangeLog that counts `head` reads, over the memory storage. */
    const countingLog = Layer.effect(
      ChangeLog.ChangeLog,
      Effect.map(ChangeLog.ChangeLog, (log) =>
        ChangeLog.ChangeLog.of({
          ...log,
          head: (scope) => Effect.suspend(() => {
            heads++
            return log.head(scope)
          })
        }))
    ).pipe(Layer.provide(SyncStorage.layerMemory))
    const deps = Layer.mergeAll(SyncStorage.layerMemory, LivePubSub.layerMemory, Authorizer.layerAllowAll, countingLog)
    const live = {
      maxFramesPerSecond: 1e9,
      frameBurst: 1e9,
      maxPendingBytes: 64 * 1024,
      highWaterBytes: 16 * 1024
    } as const

    // The ticker is off here: what a write pushes over the limit is caught by the write itself.
    layer(layerServer({ registry, pages: [ProbePage], live: { ...live, tickInterval: "1 hour" } }, deps), real)("without the rate limit", (it) => {
      it.effect("SUBSCRIBE of scopes already held reads no storage; the cursors are the newest the session saw", () =>
        Effect.gen(function*() {
          const base = yield* BaseUrl
          const scopes = range(100).map((i) => freshScope(`held${i}`))
          const c = yield* connect(base)
          yield* join(c, { scopes })
          yield* push(base, scopes[0], "a")
          yield* push(base, scopes[0], "b")
          yield* c.waitFor(is(T.POKE, (f) => f.payload.scope === scopes[0] && f.payload.cursor === 2))
          const before = heads
          for (const _ of range(100)) c.send({ type: T.SUBSCRIBE, payload: { scopes } })
          yield* settle(c, "after-100")
          const replies = c.frames.filter(is(T.REPLY, (f) => f.payload.cursors !== undefined && Object.keys(f.payload.cursors).length === 100))
          assert.strictEqual(replies.length, 101) // JOIN's and the 100
          assert.strictEqual(heads - before, 0, "head reads for 100 SUBSCRIBE frames of held scopes")
          assert.strictEqual(replies[100].payload.cursors?.[scopes[0]], 2)
          assert.strictEqual(replies[100].payload.cursors?.[scopes[1]], 0)
          // a fresh scope in the same frame: read once
          const fresh = freshScope("fresh")
          yield* push(base, fresh, "x")
          const mixed = yield* request(c, { type: T.UNSUBSCRIBE, payload: { scopes: [scopes[99]] } }).pipe(
            Effect.zipRight(request(c, { type: T.SUBSCRIBE, payload: { scopes: [...scopes.slice(0, 99), fresh] } }))
          )
          assert.strictEqual(mixed.cursors?.[fresh], 1)
          assert.strictEqual(heads - before, 1)
        }).pipe(Effect.scoped))

      it.effect("a full inbox pauses the socket: TCP pushes back on a client that sends faster than its session handles", () =>
        Effect.gen(function*() {
          const base = yield* BaseUrl
          const c = yield* connect(base)
          yield* join(c, { url: "/probe" })
          // 1,500 frames of ~60 KB (~90 MB), each handled in 20 ms: the server reads ~32 + what TCP holds
          const filler = "z".repeat(60 * 1000)
          for (const _ of range(1500)) c.send({ type: T.EVENT, payload: { name: "slow", values: { filler } } })
          yield* realSleep(1500)
          const stuck = c.ws.bufferedAmount
          // the kernel buffers hold a few tens of MB at most: the rest stays in the client
          assert.isAbove(stuck, 30 * 1000 * 1000, `the client could hand all but ${stuck} bytes to the server`)
          // and the server is fine: another client is answered at once
          const other = yield* connect(base)
          yield* join(other)
          const t0 = Date.now()
          yield* settle(other, "quick")
          assert.isBelow(Date.now() - t0, 500)
        }).pipe(Effect.scoped))

      it.effect("REPLY and HEARTBEAT answers count as pending: a client that sends but never reads is a slow consumer (4008)", () =>
        Effect.gen(function*() {
          const base = yield* BaseUrl
          const server = yield* LiveHttp.LiveServer
          // the sessions of the tests before are gone (the flooded one ends when its queue is handled)
          yield* until("no session is open", Effect.map(server.sessionCount, (n) => n === 0), 10_000)
          const open = 0
          const c = yield* connect(base)
          yield* join(c)
          tcp(c).pause()
          const ping = "p".repeat(1024)
          let sent = 0
          // the answers fill the kernel's buffers first, then the server's
          while ((yield* server.sessionCount) > open && sent < 200_000) {
            for (const _ of range(100)) c.send({ type: T.HEARTBEAT, payload: { ping } })
            sent += 100
            yield* realSleep(2)
          }
          assert.strictEqual(yield* server.sessionCount, open, `still open after ${sent} heartbeats`)
          tcp(c).resume()
          assert.strictEqual((yield* c.closed).code, 4008)
          assert.isTrue(c.frames.some(is(T.CLOSE, (f) => f.payload.reason === "slow_consumer")))
        }).pipe(Effect.scoped))
    })

    layer(layerServer({ registry, pages: [ProbePage], live: { ...live, idleTimeout: "600 millis" } }, deps), real)("busy sessions", (it) => {
      it.effect("the idle timeout is enforced while the inbox is busy (limits do not wait behind frames)", () =>
        Effect.gen(function*() {
          const base = yield* BaseUrl
          const c = yield* connect(base)
          yield* join(c, { url: "/probe" })
          // 30 events of 100 ms each: 3 s of work queued; then silence
          for (const _ of range(30)) c.send({ type: T.EVENT, payload: { name: "slow", values: { ms: 100 } } })
          const t0 = Date.now()
          const close = yield* c.waitFor(is(T.CLOSE), 6000)
          assert.strictEqual(close.payload.reason, "idle_timeout")
          // closed ~600 ms after the last frame, while the session is still busy: not after the 3 s queue
          assert.isBelow(Date.now() - t0, 1500)
          assert.isBelow(c.frames.filter(is(T.REPLY, (f) => f.payload.session_id === undefined)).length, 25)
        }).pipe(Effect.scoped))
    })
  })

  // -- C: admission --------------------------------------------------------------------------

  const allowAll = Layer.mergeAll(SyncStorage.layerMemory, LivePubSub.layerMemory, Authorizer.layerAllowAll)

  layer(layerServer({ registry, live: { joinTimeout: "300 millis" } }, allowAll), real)("JOIN deadline", (it) => {
    it.effect("a connection that never JOINs gets CLOSE join_timeout (1008), even while it sends other frames", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const silent = yield* connect(base)
        const chatty = yield* connect(base)
        const joined = yield* connect(base)
        yield* join(joined)
        const t0 = Date.now()
        const fiber = yield* Effect.fork(Effect.forever(Effect.zipRight(Effect.sync(() => chatty.send({ type: T.HEARTBEAT })), realSleep(50))))
        for (const c of [silent, chatty]) {
          const close = yield* c.waitFor(is(T.CLOSE))
          assert.strictEqual(close.payload.reason, "join_timeout")
          assert.strictEqual((yield* c.closed).code, 1008)
        }
        yield* Fiber.interrupt(fiber)
        assert.isBelow(Date.now() - t0, 2000)
        assert.isTrue(chatty.frames.some(is(T.ERROR, (f) => f.payload.code === "not_joined")))
        // the joined one is not concerned
        yield* settle(joined, "still")
      }).pipe(Effect.scoped))
  })

  layer(layerServer({ registry, live: { idleTimeout: "300 millis" } }, allowAll), real)("idle before JOIN", (it) => {
    it.effect("frames before JOIN (answered not_joined) do not keep a connection from its idle timeout", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const c = yield* connect(base)
        const t0 = Date.now()
        yield* Effect.fork(Effect.forever(Effect.zipRight(Effect.sync(() => c.send({ type: T.HEARTBEAT })), realSleep(50))))
        const close = yield* c.waitFor(is(T.CLOSE))
        assert.strictEqual(close.payload.reason, "idle_timeout")
        assert.isBelow(Date.now() - t0, 1500)
      }).pipe(Effect.scoped))
  })

  layer(layerServer({ registry, live: { maxSessions: 3 } }, allowAll), real)("sessions per process", (it) => {
    it.effect("an upgrade over live.maxSessions is refused with HTTP 503 unavailable; a freed slot is taken again", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const server = yield* LiveHttp.LiveServer
        const scope = yield* Scope.make()
        const held = yield* Effect.forEach(range(3), () => upgrade(base).pipe(Scope.extend(scope)))
        assert.isTrue(held.every((r) => r.ws !== undefined))
        unavailable(yield* upgrade(base))
        held[0].ws?.terminate()
        yield* until("a slot is free", Effect.map(server.sessionCount, (n) => n === 2))
        // the slot is given back as the session ends: an upgrade succeeds again
        yield* until("an upgrade is accepted", Effect.map(upgrade(base).pipe(Scope.extend(scope)), (r) => r.ws !== undefined))
        unavailable(yield* upgrade(base))
        yield* Scope.close(scope, Exit.void)
      }).pipe(Effect.scoped))
  })

  layer(layerServer({ registry, live: { maxSessionsPerAddress: 2, trustForwardedFor: true } }, allowAll), real)("sessions per address, behind a proxy", (it) => {
    it.effect("live.maxSessionsPerAddress counts the last X-Forwarded-For address when trusted", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const a1 = yield* upgrade(base, { "x-forwarded-for": "10.0.0.1" })
        const a2 = yield* upgrade(base, { "x-forwarded-for": "203.0.113.9, 10.0.0.1" })
        assert.isDefined(a1.ws)
        assert.isDefined(a2.ws)
        // the proxy appends the peer it saw: a client cannot pick its address by sending one first
        unavailable(yield* upgrade(base, { "x-forwarded-for": "10.0.0.7, 10.0.0.1" }))
        assert.isDefined((yield* upgrade(base, { "x-forwarded-for": "10.0.0.1, 10.0.0.2" })).ws)
      }).pipe(Effect.scoped))
  })

  layer(layerServer({ registry, live: { maxSessionsPerAddress: 2 } }, allowAll), real)("sessions per address", (it) => {
    it.effect("without trustForwardedFor the header is ignored: the socket's peer address counts", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        assert.isDefined((yield* upgrade(base, { "x-forwarded-for": "10.0.0.1" })).ws)
        assert.isDefined((yield* upgrade(base, { "x-forwarded-for": "10.0.0.2" })).ws)
        unavailable(yield* upgrade(base, { "x-forwarded-for": "10.0.0.3" }))
      }).pipe(Effect.scoped))
  })

  // -- D: presence and broadcast ----------------------------------------------------------------

  describe("presence and broadcast", () => {
    const asked: Array<string> = []
    /** `reader` may subscribe but not broadcast; every `broadcast` question is recorded. */
    const authorizer = Authorizer.layerFunction((req) => {
      if (req.action === "broadcast") asked.push(`${req.token}:${req.scope}`)
      return req.action === "broadcast" && req.token === "reader" ? Authorizer.forbidden("read-only") : Effect.void
    })
    const deps = Layer.mergeAll(SyncStorage.layerMemory, LivePubSub.layerMemory, authorizer)
    const options = {
      registry,
      live: { maxPresenceBytes: 1024, maxBroadcastBytes: 2048, maxBroadcastsPerSecond: 5, broadcastBurst: 5 },
      presence: { maxEntriesPerTopic: 3 }
    }

    layer(layerServer(options, deps), real)("limits", (it) => {
      it.effect("presence metas over maxPresenceBytes and broadcasts over maxBroadcastBytes are refused", () =>
        Effect.gen(function*() {
          const base = yield* BaseUrl
          const topic = freshScope("room")
          const a = yield* connect(base)
          const b = yield* connect(base)
          yield* join(a, { scopes: [topic] })
          yield* join(b, { scopes: [topic] })
          const big = yield* request(a, { type: T.EVENT, topic, payload: { name: "presence", values: { x: "m".repeat(1100) } } })
          assert.strictEqual(big.reason, "presence_too_large")
          const fits = yield* request(a, { type: T.EVENT, topic, payload: { name: "presence", values: { x: "m".repeat(1000) } } })
          assert.strictEqual(fits.status, "ok")
          const huge = yield* request(a, { type: T.EVENT, topic, payload: { name: "blob", values: { x: "b".repeat(2100) } } })
          assert.strictEqual(huge.reason, "broadcast_too_large")
          const ok = yield* request(a, { type: T.EVENT, topic, payload: { name: "small", values: { x: "b".repeat(1900) } } })
          assert.strictEqual(ok.status, "ok")
          yield* b.waitFor(is(T.BROADCAST, (f) => f.payload.event === "small"))
          assert.isFalse(b.frames.some(is(T.BROADCAST, (f) => f.payload.event === "blob")))
          assert.isFalse(b.frames.some(is(T.PRESENCE, (f) => JSON.stringify(f.payload).length > 1100 + 200)))
        }).pipe(Effect.scoped))

      it.effect("broadcasts and presence updates past the per-session rate are refused with rate_limited", () =>
        Effect.gen(function*() {
          const base = yield* BaseUrl
          const topic = freshScope("room")
          const a = yield* connect(base)
          const b = yield* connect(base)
          yield* join(a, { scopes: [topic] })
          yield* join(b, { scopes: [topic] })
          const replies = yield* Effect.forEach(range(10), (i) => request(a, { type: T.EVENT, topic, payload: { name: "burst", values: { i } } }))
          const ok = replies.filter((r) => r.status === "ok").length
          // the burst of 5 goes through, the rest is refused (a token may refill while the ten go out)
          assert.isTrue(replies.slice(0, 5).every((r) => r.status === "ok"))
          assert.isTrue(replies.slice(5).every((r) => r.status === "ok" || r.reason === "rate_limited"))
          assert.isAtMost(ok, 6)
          // after a second the bucket has refilled: a last one goes through, after the others
          yield* realSleep(1000)
          assert.strictEqual((yield* request(a, { type: T.EVENT, topic, payload: { name: "last" } })).status, "ok")
          yield* b.waitFor(is(T.BROADCAST, (f) => f.payload.event === "last"))
          assert.strictEqual(b.frames.filter(is(T.BROADCAST, (f) => f.payload.event === "burst")).length, ok)
          // the session is open and well
          yield* settle(a, "fine")
        }).pipe(Effect.scoped))

      it.effect("a topic holds at most maxEntriesPerTopic presence entries: a new one is refused, the others keep their place", () =>
        Effect.gen(function*() {
          const base = yield* BaseUrl
          const topic = freshScope("room")
          const cs = yield* Effect.forEach(range(4), () => connect(base))
          for (const c of cs) yield* join(c, { scopes: [topic] })
          const keys = yield* Effect.forEach(cs.slice(0, 3), (c, i) =>
            Effect.map(request(c, { type: T.EVENT, topic, payload: { name: "presence", values: { i } } }), keyOf))
          const fourth = cs[3]
          const refused = yield* request(fourth, { type: T.EVENT, topic, payload: { name: "presence", values: { i: 4 } } })
          assert.strictEqual(refused.reason, "presence_full")
          // an existing entry may still update
          assert.strictEqual((yield* request(cs[0], { type: T.EVENT, topic, payload: { name: "presence", values: { i: 10 } } })).status, "ok")
          // a newcomer sees the three
          const late = yield* connect(base)
          yield* join(late, { scopes: [topic] })
          const state = yield* late.waitFor(is(T.PRESENCE, (f) => f.payload.state !== undefined))
          assert.sameMembers(Object.keys(state.payload.state ?? {}), keys)
          // one leaves: there is room again
          cs[1].ws.terminate()
          yield* late.waitFor(is(T.PRESENCE, (f) => f.payload.leaves?.[keys[1]] !== undefined))
          const now = yield* request(fourth, { type: T.EVENT, topic, payload: { name: "presence", values: { i: 4 } } })
          assert.strictEqual(now.status, "ok")
          yield* late.waitFor(is(T.PRESENCE, (f) => f.payload.joins?.[keyOf(now)] !== undefined))
        }).pipe(Effect.scoped))

      it.effect("broadcast and presence need the Authorizer's broadcast action, asked once per topic per session", () =>
        Effect.gen(function*() {
          const base = yield* BaseUrl
          const topic = freshScope("room")
          const reader = yield* connect(base)
          const writer = yield* connect(base)
          const watcher = yield* connect(base)
          assert.strictEqual((yield* join(reader, { token: "reader", scopes: [topic] })).status, "ok")
          yield* join(writer, { token: "writer", scopes: [topic] })
          yield* join(watcher, { token: "watcher", scopes: [topic] })
          const cast = yield* request(reader, { type: T.EVENT, topic, payload: { name: "typing" } })
          assert.strictEqual(cast.reason, "forbidden")
          const here = yield* request(reader, { type: T.EVENT, topic, payload: { name: "presence", values: { u: "r" } } })
          assert.strictEqual(here.reason, "forbidden")
          for (const i of range(4)) {
            assert.strictEqual((yield* request(writer, { type: T.EVENT, topic, payload: { name: "typing", values: { i } } })).status, "ok")
          }
          yield* watcher.waitFor(is(T.BROADCAST, (f) => (f.payload.payload as { i?: number } | undefined)?.i === 4))
          yield* settle(watcher, "all")
          // nothing of the reader's reached anyone
          assert.isFalse(watcher.frames.some(is(T.PRESENCE)))
          assert.strictEqual(watcher.frames.filter(is(T.BROADCAST)).length, 4)
          assert.deepStrictEqual(asked.filter((a) => a.endsWith(`:${topic}`)), [`reader:${topic}`, `writer:${topic}`])
        }).pipe(Effect.scoped))
    })

    layer(
      layerServer({ registry, live: { maxPendingBytes: 8 * 1024, highWaterBytes: 4 * 1024, maxPresenceBytes: 1024 }, presence: { maxEntriesPerTopic: 100 } }, deps),
      real
    )("a large presence state", (it) => {
      it.effect("a subscriber's initial presence state is never why it is closed as a slow consumer", () =>
        Effect.gen(function*() {
          const base = yield* BaseUrl
          const topic = freshScope("crowd")
          // 40 entries of ~1,000 bytes: the state (~40 KB) is five times maxPendingBytes
          const crowd = yield* Effect.forEach(range(40), () => connect(base))
          const keys: Array<string> = []
          for (const [i, c] of crowd.entries()) {
            yield* join(c, { token: "writer", scopes: [topic] })
            keys.push(keyOf(yield* request(c, { type: T.EVENT, topic, payload: { name: "presence", values: { i, pad: "q".repeat(980) } } })))
          }
          // on JOIN and on SUBSCRIBE, at once and in the same frame as other topics
          const viaJoin = yield* connect(base)
          yield* join(viaJoin, { scopes: [topic, freshScope("other")] })
          const viaSubscribe = yield* connect(base)
          yield* join(viaSubscribe)
          assert.strictEqual((yield* request(viaSubscribe, { type: T.SUBSCRIBE, payload: { scopes: [topic] } })).status, "ok")
          for (const c of [viaJoin, viaSubscribe]) {
            const state = yield* c.waitFor(is(T.PRESENCE, (f) => f.payload.state !== undefined))
            assert.sameMembers(Object.keys(state.payload.state ?? {}), keys)
            yield* settle(c, "open")
            assert.isFalse(c.frames.some(is(T.CLOSE)))
          }
          // and it goes on getting the diffs
          crowd[0].ws.terminate()
          yield* viaJoin.waitFor(is(T.PRESENCE, (f) => f.payload.leaves?.[keys[0]] !== undefined))
        }).pipe(Effect.scoped))
    })
  })

  // -- F: re-authorization ----------------------------------------------------------------------

  describe("re-authorization", () => {
    it.live("a session is closed with CLOSE unauthorized (4001) when its token's expiresAt passes; others stay", () =>
      Effect.gen(function*() {
        const tokens = { t: { scopes: ["*"], expiresAt: Date.now() + 1000 }, u: ["*"] }
        yield* Effect.gen(function*() {
          const base = yield* BaseUrl
          const scope = freshScope("user")
          const expiring = yield* connect(base)
          const lasting = yield* connect(base)
          assert.strictEqual((yield* join(expiring, { token: "t", scopes: [scope] })).status, "ok")
          assert.strictEqual((yield* join(lasting, { token: "u", scopes: [scope] })).status, "ok")
          const close = yield* expiring.waitFor(is(T.CLOSE), 4000)
          assert.strictEqual(close.payload.reason, "unauthorized")
          assert.strictEqual((yield* expiring.closed).code, 4001)
          yield* settle(lasting, "still")
          yield* push(base, scope, "after", "u")
          yield* lasting.waitFor(is(T.POKE, (f) => f.payload.scope === scope))
        }).pipe(
          Effect.scoped,
          Effect.provide(layerServer({ registry }, Layer.mergeAll(SyncStorage.layerMemory, LivePubSub.layerMemory, TokenAuthorizer.layer({ tokens }))))
        )
      }))

    it.live("every live.reauthorizeInterval the token is asked again: a revoked token's session is closed", () =>
      Effect.gen(function*() {
        const revoked = new Set<string>()
        const authorizer = Authorizer.layerFunction((req) =>
          req.token === undefined || revoked.has(req.token) ? Authorizer.unauthorized("revoked") : Effect.void
        )
        yield* Effect.gen(function*() {
          const base = yield* BaseUrl
          const topic = freshScope("room")
          const a = yield* connect(base)
          const b = yield* connect(base)
          yield* join(a, { token: "a", scopes: [topic] })
          yield* join(b, { token: "b", scopes: [topic] })
          assert.strictEqual((yield* request(a, { type: T.EVENT, topic, payload: { name: "presence", values: {} } })).status, "ok")
          yield* realSleep(500)
          revoked.add("a")
          const close = yield* a.waitFor(is(T.CLOSE), 3000)
          assert.strictEqual(close.payload.reason, "unauthorized")
          assert.strictEqual((yield* a.closed).code, 4001)
          // its presence is gone with it; b is fine
          yield* b.waitFor(is(T.PRESENCE, (f) => f.payload.leaves !== undefined))
          yield* settle(b, "b")
        }).pipe(
          Effect.scoped,
          Effect.provide(layerServer(
            { registry, live: { reauthorizeInterval: "200 millis" } },
            Layer.mergeAll(SyncStorage.layerMemory, LivePubSub.layerMemory, authorizer)
          ))
        )
      }))
  })

  // -- presence across processes ------------------------------------------------------------------

  describe("presence across processes", () => {
    it.live("two hubs over one pub/sub: handles as keys, renewed while alive, expired when a process stops renewing", () =>
      Effect.gen(function*() {
        const pubsub = yield* Layer.build(LivePubSub.layerMemory)
        const server = () =>
          Layer.build(layerServer(
            { registry, presence: { renewInterval: "100 millis", presenceTtl: "400 millis" } },
            Layer.mergeAll(SyncStorage.layerMemory, Layer.succeedContext(pubsub), Authorizer.layerAllowAll)
          )).pipe(Effect.map((ctx) => Context.get(ctx, BaseUrl)))
        const baseA = yield* server()
        const baseB = yield* server()
        const topic = freshScope("room")
        const a = yield* connect(baseA)
        const b = yield* connect(baseB)
        yield* join(a, { scopes: [topic] })
        const ka = keyOf(yield* request(a, { type: T.EVENT, topic, payload: { name: "presence", values: { who: "a" } } }))
        yield* join(b, { scopes: [topic] })
        // b's process learns a's entry (a re-announces when b's process opens the topic)
        yield* b.waitFor(is(T.PRESENCE, (f) => (f.payload.state?.[ka] ?? f.payload.joins?.[ka]) !== undefined))
        const kb = keyOf(yield* request(b, { type: T.EVENT, topic, payload: { name: "presence", values: { who: "b" } } }))
        yield* a.waitFor(is(T.PRESENCE, (f) => f.payload.joins?.[kb] !== undefined))
        // three TTLs later, nobody left: both processes renew their entries
        yield* realSleep(1200)
        assert.isFalse([...a.frames, ...b.frames].some(is(T.PRESENCE, (f) => f.payload.leaves !== undefined)))
        // a process that stops renewing (a ghost entry of a process that died) is expired
        const transport = Context.get(pubsub, LivePubSub.LivePubSub)
        yield* transport.publish(topic, JSON.stringify({ _tag: "join", topic, key: "ghost", meta: {}, node: "a-dead-process" }))
        yield* b.waitFor(is(T.PRESENCE, (f) => f.payload.joins?.["ghost"] !== undefined))
        yield* b.waitFor(is(T.PRESENCE, (f) => f.payload.leaves?.["ghost"] !== undefined), 3000)
        // a's session leaving shows as a leave on b's process
        a.ws.terminate()
        yield* b.waitFor(is(T.PRESENCE, (f) => f.payload.leaves?.[ka] !== undefined))
      }).pipe(Effect.scoped))
  })
})
