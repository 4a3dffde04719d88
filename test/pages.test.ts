/**
 * Live pages over a real socket: mount, events, patches of only the changed
 * regions, handler failures, unknown pages, ordering under a burst, escaping,
 * and the todo page driven by sync from elsewhere.
 */
import { assert, describe, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { Authorizer, Html, LivePubSub, Page, Protocol, StorageError, SyncStorage } from "mizu-sync-live"
import { registry } from "../examples/todo/mutations.js"
import { TodoPage } from "../examples/todo/page.js"
import { freshScope, range } from "./suites/util.js"
import { BaseUrl, decodeAs, layerMemoryDeps, layerServer, post } from "./support/TestServer.js"
import { connect, is, join, request, T } from "./support/WsClient.js"

const { html } = Html

/** A counter with a name: two regions, so a PATCH can be checked to carry only the changed one. */
const Counter = Page.make({
  path: "/counter",
  state: Schema.Struct({ count: Schema.Number, name: Schema.String, log: Schema.Array(Schema.Number) }),
  title: (s) => `count ${s.count}`,
  mount: (ctx) => Effect.succeed({ count: 0, name: typeof ctx.params["name"] === "string" ? ctx.params["name"] : "anon", log: [] }),
  render: (s) => ({
    count: html`<b>${s.count}</b>`,
    name: html`<i>${s.name}</i>`
  }),
  handle: (event, s, ctx) => {
    switch (event.name) {
      case "inc":
        return Effect.succeed({ ...s, count: s.count + 1, log: [...s.log, Number(event.values["n"] ?? 0)] })
      case "rename":
        return Effect.succeed({ ...s, name: String(event.values["name"]) })
      case "fail":
        return Effect.fail(new Page.PageError({ message: "nope" }))
      case "crash":
        return Effect.die("bug")
      case "bad-state":
        return Effect.succeed({ ...s, count: "not a number" } as unknown as typeof s)
      case "focus":
        return Effect.as(ctx.command({ op: "focus", selector: "#name" }), s)
      case "go":
        return Effect.as(ctx.redirect("/elsewhere"), s)
      case "later":
        return Effect.as(ctx.sendAfter("tick", "20 millis"), s)
      default:
        return Effect.succeed(s)
    }
  },
  info: (message, s) => Effect.succeed(message._tag === "Message" ? { ...s, count: s.count + 100 } : s)
})

const real = { excludeTestServices: true } as const

/** Pushes a todo to the scope an event names; the region lists each push's outcome. */
const Pusher = Page.make({
  path: "/pusher",
  state: Schema.Struct({ results: Schema.Array(Schema.String) }),
  mount: () => Effect.succeed({ results: [] }),
  render: (s) => ({ results: html`<p>${s.results.join(",")}</p>` }),
  handle: (event, s, ctx) =>
    ctx.pushMutation({ name: "todo/create", scope: String(event.values["scope"]), args: { id: String(event.values["id"]), title: "t" } }).pipe(
      Effect.map((r) => (r.ok ? "ok" : r.error?.code ?? "error")),
      Effect.catchAll((e) => Effect.succeed(e.code)),
      Effect.map((result) => ({ results: [...s.results, result] }))
    )
})

/** Memory storage whose next `transaction` fails once `failNext` is set (a storage outage of one request). */
const failing = { next: false }
const failingStorage = Layer.effect(
  SyncStorage.SyncStorage,
  Effect.map(SyncStorage.SyncStorage, (storage) =>
    SyncStorage.SyncStorage.of({
      ...storage,
      transaction: (unit) =>
        Effect.suspend(() => {
          if (!failing.next) return storage.transaction(unit)
          failing.next = false
          return Effect.fail(new StorageError({ reason: "unavailable", message: "injected outage" }))
        })
    }))
).pipe(Layer.provide(SyncStorage.layerMemory))
/** `ro:*` scopes may be read, not pushed to. */
const readOnly = Authorizer.layerFunction((req) =>
  req.action === "push" && req.scope.startsWith("ro:") ? Authorizer.forbidden("read-only scope") : Effect.void
)
const flakyDeps = Layer.mergeAll(SyncStorage.layerMemory, LivePubSub.layerMemory, readOnly, failingStorage)

describe("live pages", () => {
  layer(layerServer({ registry, pages: [Counter, TodoPage] }, layerMemoryDeps), real)("sessions", (it) => {
    it.effect("JOIN with the page url mounts it: REPLY carries the rendered regions", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const c = yield* connect(base)
        const reply = yield* join(c, { url: "/counter?name=ann" })
        assert.strictEqual(reply.status, "ok")
        assert.deepStrictEqual(reply.regions, [{ id: "count", html: "<b>0</b>" }, { id: "name", html: "<i>ann</i>" }])
      }).pipe(Effect.scoped))

    it.effect("EVENT → REPLY ok → PATCH with only the changed region (and the new title)", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const c = yield* connect(base)
        yield* join(c, { url: "/counter" })
        const ack = yield* request(c, { type: T.EVENT, payload: { name: "inc", values: { n: 1 } } })
        assert.strictEqual(ack.status, "ok")
        const patch = yield* c.waitFor(is(T.PATCH))
        assert.deepStrictEqual(patch.payload, { regions: [{ id: "count", html: "<b>1</b>" }], title: "count 1" })
        const replyIndex = c.frames.findIndex((f) => f.type === T.REPLY && f.payload.status === "ok" && f.ref !== undefined && f.payload.session_id === undefined)
        assert.isBelow(replyIndex, c.frames.indexOf(patch), "REPLY comes before the PATCH")
        // an event that changes nothing sends no PATCH
        const before = c.frames.length
        yield* request(c, { type: T.EVENT, payload: { name: "noop" } })
        // a heartbeat round trip after it: anything the noop caused was written before the pong
        c.send({ type: T.HEARTBEAT, payload: { ping: "after-noop" } })
        yield* c.waitFor(is(T.HEARTBEAT, (f) => f.payload.pong === "after-noop"))
        assert.isFalse(c.frames.slice(before).some((f) => f.type === T.PATCH))
      }).pipe(Effect.scoped))

    it.effect("a handler failure answers REPLY error; the session lives on with its state", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const c = yield* connect(base)
        yield* join(c, { url: "/counter" })
        for (const name of ["fail", "crash", "bad-state"]) {
          const r = yield* request(c, { type: T.EVENT, payload: { name } })
          assert.strictEqual(r.status, "error", name)
        }
        yield* request(c, { type: T.EVENT, payload: { name: "inc" } })
        const patch = yield* c.waitFor(is(T.PATCH))
        assert.deepStrictEqual(patch.payload.regions, [{ id: "count", html: "<b>1</b>" }])
      }).pipe(Effect.scoped))

    it.effect("COMMAND, REDIRECT and timers (sendAfter → info)", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const c = yield* connect(base)
        yield* join(c, { url: "/counter" })
        yield* request(c, { type: T.EVENT, payload: { name: "focus" } })
        const cmd = yield* c.waitFor(is(T.COMMAND))
        assert.deepStrictEqual(cmd.payload.commands, [{ op: "focus", selector: "#name" }])
        yield* request(c, { type: T.EVENT, payload: { name: "go" } })
        const redirect = yield* c.waitFor(is(T.REDIRECT))
        assert.deepStrictEqual(redirect.payload, { to: "/elsewhere", replace: false })
        yield* request(c, { type: T.EVENT, payload: { name: "later" } })
        const patch = yield* c.waitFor(is(T.PATCH, (f) => f.payload.regions.some((r) => r.html === "<b>100</b>")))
        assert.deepStrictEqual(patch.payload.regions, [{ id: "count", html: "<b>100</b>" }])
      }).pipe(Effect.scoped))

    it.effect("an unknown page url gets ERROR and the connection closes", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const c = yield* connect(base)
        c.send({ type: T.JOIN, ref: 1, payload: { url: "/no/such/page" } })
        const err = yield* c.waitFor(is(T.ERROR))
        assert.strictEqual(err.payload.code, "page_not_found")
        assert.strictEqual(err.payload.recoverable, false)
        yield* c.closed
      }).pipe(Effect.scoped))

    it.effect("events are handled one at a time, in order, under a burst of 100", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const c = yield* connect(base)
        yield* join(c, { url: "/counter" })
        for (const n of range(100)) c.send({ type: T.EVENT, ref: 10_000 + n, payload: { name: "inc", values: { n } } })
        yield* c.waitFor(is(T.PATCH, (f) => f.payload.regions.some((r) => r.html === "<b>100</b>")), 10_000)
        const patches = c.frames.filter(is(T.PATCH))
        assert.deepStrictEqual(patches.map((p) => p.payload.regions[0]?.html), range(100).map((n) => `<b>${n}</b>`))
        const replies = c.frames.filter(is(T.REPLY, (f) => (f.ref ?? 0) > 10_000))
        assert.deepStrictEqual(replies.map((r) => r.ref), range(100).map((n) => 10_000 + n))
      }).pipe(Effect.scoped))

    it.effect("state containing <script> renders inert, over the socket and over HTTP", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const evil = `<script>alert("x")</script><img src=x onerror="alert(1)">`
        const c = yield* connect(base)
        yield* join(c, { url: "/counter" })
        yield* request(c, { type: T.EVENT, payload: { name: "rename", values: { name: evil } } })
        const patch = yield* c.waitFor(is(T.PATCH))
        const markup = patch.payload.regions[0]?.html ?? ""
        assert.notInclude(markup, "<script")
        assert.notInclude(markup, "<img")
        assert.include(markup, "&lt;script&gt;")
        const page = yield* Effect.promise(() => fetch(`${base}/counter?name=${encodeURIComponent(evil)}`).then((r) => r.text()))
        assert.notInclude(page, "<script>alert")
        assert.include(page, "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;")
      }).pipe(Effect.scoped))

    it.effect("GET path renders the whole document without JavaScript", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const res = yield* Effect.promise(() => fetch(`${base}/counter?name=bob`))
        assert.strictEqual(res.status, 200)
        assert.include(res.headers.get("content-type") ?? "", "text/html")
        const text = yield* Effect.promise(() => res.text())
        assert.include(text, `<div id="count" data-mizu-region="count"><b>0</b></div>`)
        assert.include(text, `<i>bob</i>`)
        assert.include(text, `<title>count 0</title>`)
      }))

    it.effect("the todo page: events become sync mutations; a change pushed over HTTP elsewhere re-renders it", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const scope = freshScope("user")
        const c = yield* connect(base)
        const reply = yield* join(c, { url: `/live/todos?scope=${scope}` })
        assert.isTrue(reply.regions?.some((r) => r.id === "todos" && r.html.includes(`<ul class="todos"></ul>`)))
        yield* request(c, { type: T.EVENT, payload: { name: "create", values: { title: "from the page" } } })
        yield* c.waitFor(is(T.PATCH, (f) => f.payload.regions.some((r) => r.id === "todos" && r.html.includes("from the page"))))
        // it went through sync: a pull sees it
        const pulled = decodeAs(Protocol.PullResponse, (yield* post(`${base}/_sync/pull`, JSON.stringify({ scope, cursor: 0 }))).json)
        assert.strictEqual(pulled.changes.length, 1)
        assert.deepStrictEqual((pulled.changes[0].data as { title: string }).title, "from the page")
        // a plain sync client elsewhere creates one: the page gets a poke and re-renders
        yield* post(`${base}/_sync/push`, JSON.stringify({ mutations: [{ name: "todo/create", scope, args: { id: "ext", title: "from elsewhere" } }] }))
        yield* c.waitFor(is(T.PATCH, (f) => f.payload.regions.some((r) => r.html.includes("from elsewhere"))))
        // toggling it from the page
        yield* request(c, { type: T.EVENT, payload: { name: "toggle", values: { id: "ext" } } })
        yield* c.waitFor(is(T.PATCH, (f) => f.payload.regions.some((r) => r.html.includes(`data-id="ext"`) && r.html.includes(`class="done"`))))
      }).pipe(Effect.scoped))
  })

  layer(layerServer({ registry, pages: [Pusher] }, flakyDeps), real)("pushMutation across failures", (it) => {
    it.effect("a push that fails (503 storage, 403 forbidden) does not use up a mutation id: the next push is applied", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const scope = freshScope("user")
        const c = yield* connect(base)
        yield* join(c, { url: "/pusher" })
        const results = (text: string) => is(T.PATCH, (f) => f.payload.regions.some((r) => r.html === `<p>${text}</p>`))
        yield* request(c, { type: T.EVENT, payload: { name: "add", values: { scope, id: "first" } } })
        yield* c.waitFor(results("ok"))
        failing.next = true
        yield* request(c, { type: T.EVENT, payload: { name: "add", values: { scope, id: "lost" } } })
        yield* c.waitFor(results("ok,unavailable"))
        yield* request(c, { type: T.EVENT, payload: { name: "add", values: { scope: "ro:x", id: "refused" } } })
        yield* c.waitFor(results("ok,unavailable,forbidden"))
        // not out_of_order, now or later
        for (const id of ["second", "third"]) yield* request(c, { type: T.EVENT, payload: { name: "add", values: { scope, id } } })
        yield* c.waitFor(results("ok,unavailable,forbidden,ok,ok"))
        const pulled = decodeAs(Protocol.PullResponse, (yield* post(`${base}/_sync/pull`, JSON.stringify({ scope, cursor: 0 }))).json)
        assert.deepStrictEqual(pulled.changes.map((ch) => ch.id), ["first", "second", "third"])
      }).pipe(Effect.scoped))
  })
})
