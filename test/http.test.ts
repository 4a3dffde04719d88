/**
 * The sync endpoints through a real server on a free port: every error code of
 * the protocol reached by a real request, each leaving state unchanged, and
 * the seed's own client bodies.
 */
import * as HttpServer from "@effect/platform/HttpServer"
import { assert, describe, it, layer } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Ref from "effect/Ref"
import { Authorizer, ChangeLog, LivePubSub, PokeBroker, Protocol, Server, StorageError, SyncHttp, SyncStorage } from "mizu-sync-live"
import * as Http from "node:http"
import { registry } from "./suites/EngineSuite.js"
import { freshClient, freshScope, range } from "./suites/util.js"
import { BaseUrl, decodeAs, layerMemoryDeps, layerServer, post, request } from "./support/TestServer.js"

const json = { "content-type": "application/json" }

/** Forbids scopes starting with `secret:`; wants a token for scopes starting with `private:`. */
const authorizer = Authorizer.layerFunction((req) =>
  req.scope.startsWith("secret:")
    ? Authorizer.forbidden(`may not ${req.action} ${req.scope}`)
    : req.scope.startsWith("private:") && req.token !== "let-me-in"
    ? Authorizer.unauthorized("a bearer token is required")
    : Effect.void
)

/** The memory family, with a switch that makes the change log fail like a database that went away. */
class StorageDown extends Context.Tag("test/StorageDown")<StorageDown, Ref.Ref<boolean>>() {}
const faultyStorage: Layer.Layer<SyncStorage.Services | StorageDown> = Layer.effectContext(Effect.gen(function*() {
  const down = yield* Ref.make(false)
  const services = yield* Effect.context<SyncStorage.Services>()
  const log = Context.get(services, ChangeLog.ChangeLog)
  const failing = ChangeLog.ChangeLog.of({
    ...log,
    append: (scope, changes) =>
      Effect.flatMap(Ref.get(down), (isDown) =>
        isDown ? Effect.fail(new StorageError({ reason: "unavailable", message: "connection refused" })) : log.append(scope, changes))
  })
  return services.pipe(Context.add(ChangeLog.ChangeLog, failing), Context.add(StorageDown, down))
})).pipe(Layer.provide(SyncStorage.layerMemory))

const SnapshotOf = (base: string, scope: string) =>
  Effect.map(post(`${base}/_sync/snapshot`, JSON.stringify({ scope }), json), (r) => decodeAs(Protocol.SnapshotResponse, r.json))

/**
 * The same requests through both of the server's edges: @effect/platform's
 * router (tracing on) and, with `tracing: false`, `SyncHttp.nodeHandler` on
 * Node's request event (test "which edge answers" shows which one took them).
 */
const edges = [
  { edge: "the platform's router (tracing on)", tracing: true },
  { edge: "Node's request event (tracing: false)", tracing: false }
] as const

describe.each(edges)("sync over HTTP, $edge", ({ tracing }) => {
  layer(layerServer({ registry, tracing }, Layer.mergeAll(SyncStorage.layerMemory, LivePubSub.layerMemory, authorizer)))("endpoints", (it) => {
    it.effect("the seed's client bodies work as written", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const push = yield* post(`${base}/_sync/push`, JSON.stringify({
          mutations: [{ name: "todo/create", scope: "user:123:todos", args: { id: "seed-1", title: "Buy milk" } }]
        }))
        assert.strictEqual(push.status, 200)
        assert.strictEqual(push.headers.get("content-type"), "application/json")
        const pushed = decodeAs(Protocol.PushResponse, push.json)
        assert.deepStrictEqual(pushed.results[0].ok, true)
        const pull = yield* post(`${base}/_sync/pull`, JSON.stringify({ scope: "user:123:todos", cursor: 0 }))
        assert.strictEqual(pull.status, 200)
        const pulled = decodeAs(Protocol.PullResponse, pull.json)
        assert.strictEqual(pulled.changes.length, 1)
        assert.deepStrictEqual(pulled.changes[0].data, { id: "seed-1", title: "Buy milk", completed: false })
        assert.strictEqual(pulled.cursor, pulled.changes[0].cursor)
        assert.isFalse(pulled.has_more)
        const snap = yield* SnapshotOf(base, "user:123:todos")
        assert.deepStrictEqual(snap.data, { todo: { "seed-1": { id: "seed-1", title: "Buy milk", completed: false } } })
        // protocol: 1 is accepted, a charset in the content type too
        const v1 = yield* post(`${base}/_sync/pull`, JSON.stringify({ protocol: 1, scope: "user:123:todos", cursor: 1 }), {
          "content-type": "application/json; charset=utf-8"
        })
        assert.strictEqual(v1.status, 200)
      }))

    it.effect("every bad request gets its protocol error and leaves state unchanged", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const scope = freshScope("bad")
        const good = (id: string) => ({ name: "todo/create", scope, args: { id, title: id } })
        yield* post(`${base}/_sync/push`, JSON.stringify({ mutations: [good("before")] }))
        const before = yield* SnapshotOf(base, scope)

        const tooBig = JSON.stringify({ mutations: [{ ...good("big"), args: { id: "big", title: "x".repeat(1024 * 1024) } }] })
        const cases: Array<{ what: string; path: string; body: string; headers?: Record<string, string>; method?: string; status: number; code: string; mentions?: string }> = [
          { what: "not JSON", path: "push", body: "{not json", status: 400, code: "invalid_request", mentions: "JSON" },
          { what: "truncated JSON", path: "push", body: JSON.stringify({ mutations: [good("t")] }).slice(0, 20), status: 400, code: "invalid_request" },
          { what: "JSON but not an object", path: "push", body: "[1,2,3]", status: 400, code: "invalid_request" },
          { what: "wrong content type", path: "push", body: JSON.stringify({ mutations: [good("ct")] }), headers: { "content-type": "text/plain" }, status: 415, code: "unsupported_media_type" },
          { what: "no content type", path: "push", body: JSON.stringify({ mutations: [good("ct2")] }), headers: {}, status: 415, code: "unsupported_media_type" },
          { what: "body over the 1 MiB limit", path: "push", body: tooBig, status: 413, code: "payload_too_large" },
          { what: "missing mutations", path: "push", body: JSON.stringify({}), status: 400, code: "invalid_request", mentions: "mutations" },
          { what: "missing mutation name", path: "push", body: JSON.stringify({ mutations: [{ scope, args: {} }] }), status: 400, code: "invalid_request", mentions: "mutations.0.name" },
          { what: "name of the wrong type", path: "push", body: JSON.stringify({ mutations: [{ name: 7, scope }] }), status: 400, code: "invalid_request", mentions: "mutations.0.name" },
          { what: "0 mutations", path: "push", body: JSON.stringify({ mutations: [] }), status: 400, code: "invalid_request", mentions: "mutations" },
          { what: "1,001 mutations", path: "push", body: JSON.stringify({ mutations: range(1001).map((i) => good(`m${i}`)) }), status: 400, code: "invalid_request", mentions: "mutations" },
          { what: "scope with a space", path: "push", body: JSON.stringify({ mutations: [{ ...good("sp"), scope: "user 1" }] }), status: 400, code: "invalid_request", mentions: "scope" },
          { what: "scope with unicode", path: "pull", body: JSON.stringify({ scope: "usér", cursor: 0 }), status: 400, code: "invalid_request", mentions: "scope" },
          { what: "scope of 257 chars", path: "pull", body: JSON.stringify({ scope: "a".repeat(257), cursor: 0 }), status: 400, code: "invalid_request", mentions: "scope" },
          { what: "empty scope", path: "snapshot", body: JSON.stringify({ scope: "" }), status: 400, code: "invalid_request", mentions: "scope" },
          { what: "negative cursor", path: "pull", body: JSON.stringify({ scope, cursor: -1 }), status: 400, code: "invalid_request", mentions: "cursor" },
          { what: "fractional cursor", path: "pull", body: JSON.stringify({ scope, cursor: 1.5 }), status: 400, code: "invalid_request", mentions: "cursor" },
          { what: "cursor beyond safe integers", path: "pull", body: JSON.stringify({ scope, cursor: 2 ** 60 }), status: 400, code: "invalid_request", mentions: "cursor" },
          { what: "cursor as a string", path: "pull", body: JSON.stringify({ scope, cursor: "0" }), status: 400, code: "invalid_request", mentions: "cursor" },
          { what: "limit 0", path: "pull", body: JSON.stringify({ scope, cursor: 0, limit: 0 }), status: 400, code: "invalid_request", mentions: "limit" },
          { what: "limit 1001", path: "pull", body: JSON.stringify({ scope, cursor: 0, limit: 1001 }), status: 400, code: "invalid_request", mentions: "limit" },
          { what: "bad client_id", path: "push", body: JSON.stringify({ client_id: "a b", mutations: [{ ...good("cid"), id: 1 }] }), status: 400, code: "invalid_request", mentions: "client_id" },
          { what: "mutation id 0", path: "push", body: JSON.stringify({ client_id: "c1", mutations: [{ ...good("id0"), id: 0 }] }), status: 400, code: "invalid_request", mentions: "id" },
          { what: "client_id without mutation ids", path: "push", body: JSON.stringify({ client_id: "c2", mutations: [good("noid")] }), status: 400, code: "invalid_request", mentions: "id" },
          { what: "protocol version 2", path: "push", body: JSON.stringify({ protocol: 2, mutations: [good("v2")] }), status: 400, code: "version_not_supported" },
          { what: "unknown route under the prefix", path: "nope", body: "{}", status: 404, code: "not_found" },
          { what: "GET instead of POST", path: "pull", body: "", method: "GET", status: 405, code: "method_not_allowed" },
          { what: "PUT instead of POST", path: "push", body: JSON.stringify({ mutations: [good("put")] }), method: "PUT", status: 405, code: "method_not_allowed" },
          { what: "forbidden scope", path: "push", body: JSON.stringify({ mutations: [good("ok1"), { ...good("f"), scope: "secret:x" }] }), status: 403, code: "forbidden" },
          { what: "forbidden scope on pull", path: "pull", body: JSON.stringify({ scope: "secret:x", cursor: 0 }), status: 403, code: "forbidden" },
          { what: "forbidden scope on snapshot", path: "snapshot", body: JSON.stringify({ scope: "secret:x" }), status: 403, code: "forbidden" },
          { what: "no credentials", path: "pull", body: JSON.stringify({ scope: "private:x", cursor: 0 }), status: 401, code: "unauthorized" },
          { what: "cursor ahead of the head", path: "pull", body: JSON.stringify({ scope, cursor: 99 }), status: 409, code: "cursor_ahead" }
        ]
        for (const c of cases) {
          const res = yield* Effect.promise(() =>
            fetch(`${base}/_sync/${c.path}`, {
              method: c.method ?? "POST",
              headers: c.headers ?? json,
              ...(c.method === "GET" ? {} : { body: c.body })
            }).then(async (r) => ({ status: r.status, body: await r.json() as unknown }))
          )
          assert.strictEqual(res.status, c.status, c.what)
          const body = decodeAs(Protocol.ErrorBody, res.body)
          assert.strictEqual(body.error.code, c.code, c.what)
          assert.isAbove(body.error.message.length, 0, c.what)
          if (c.mentions) assert.include(body.error.message, c.mentions, c.what)
          if (c.code === "version_not_supported") assert.deepStrictEqual(body.error.details, { supported: [1] })
        }
        assert.deepStrictEqual(yield* SnapshotOf(base, scope), before)
        // a token lets the caller into private scopes
        const withToken = yield* post(`${base}/_sync/pull`, JSON.stringify({ scope: "private:x", cursor: 0 }), { ...json, authorization: "Bearer let-me-in" })
        assert.strictEqual(withToken.status, 200)
      }))

    it.effect("an oversized body without content-length (chunked) also gets 413, and the server stays up", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const url = new URL(`${base}/_sync/push`)
        const result = yield* Effect.async<{ status: number; body: string }>((resume) => {
          const req = Http.request({ host: url.hostname, port: url.port, path: url.pathname, method: "POST", headers: { "content-type": "application/json", "transfer-encoding": "chunked" } }, (res) => {
            let body = ""
            res.on("data", (d: Buffer) => (body += d.toString()))
            res.on("end", () => resume(Effect.succeed({ status: res.statusCode ?? 0, body })))
          })
          req.on("error", () => undefined) // the server may stop reading once it has answered
          const chunk = "x".repeat(64 * 1024)
          let sent = 0
          const pump = () => {
            while (sent < 40) {
              sent++
              if (!req.write(chunk)) return req.once("drain", pump)
            }
            req.end()
          }
          pump()
        })
        assert.strictEqual(result.status, 413)
        assert.strictEqual(decodeAs(Protocol.ErrorBody, JSON.parse(result.body)).error.code, "payload_too_large")
        const after = yield* post(`${base}/_sync/pull`, JSON.stringify({ scope: "user:1", cursor: 0 }))
        assert.strictEqual(after.status, 200)
      }))

    it.effect("a rejected mutation pushed again (its reply lost) is answered the same rejection with duplicate: true", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const scope = freshScope("retry")
        const clientId = freshClient()
        const body = JSON.stringify({
          client_id: clientId,
          mutations: [
            { id: 1, name: "todo/create", scope, args: { id: "a", title: "a" } },
            { id: 2, name: "todo/toggle", scope, args: { id: "missing" } }
          ]
        })
        const first = yield* post(`${base}/_sync/push`, body)
        assert.strictEqual(first.status, 200)
        const rejection = { code: "rejected" as const, message: "todo missing not found" }
        assert.deepStrictEqual(decodeAs(Protocol.PushResponse, first.json).results, [
          { id: 1, ok: true, cursor: 1 },
          { id: 2, ok: false, cursor: 1, error: rejection }
        ])
        const second = yield* post(`${base}/_sync/push`, body)
        assert.strictEqual(second.status, 200)
        // the exact JSON on the wire, not only what the Schema decodes
        assert.deepStrictEqual(second.json, {
          results: [
            { id: 1, ok: true, duplicate: true, cursor: 1 },
            { id: 2, ok: false, duplicate: true, cursor: 1, error: rejection }
          ]
        })
        assert.strictEqual((yield* SnapshotOf(base, scope)).cursor, 1)
      }))

    it.effect("a defect in a mutator answers 500 internal without leaking, and applies nothing", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const scope = freshScope()
        const res = yield* post(`${base}/_sync/push`, JSON.stringify({
          client_id: "defect-client",
          mutations: [{ id: 1, name: "todo/create", scope, args: { id: "a", title: "a" } }, { id: 2, name: "test/half-die", scope, args: { id: "b" } }]
        }))
        assert.strictEqual(res.status, 500)
        const body = decodeAs(Protocol.ErrorBody, res.json)
        assert.deepStrictEqual(body.error, { code: "internal", message: "internal error" })
        assert.deepStrictEqual((yield* SnapshotOf(base, scope)).cursor, 0)
      }))

    it.effect("cursor_too_old after a trim, via HTTP", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const log = yield* ChangeLog.ChangeLog
        const scope = freshScope()
        yield* post(`${base}/_sync/push`, JSON.stringify({ mutations: range(3).map((i) => ({ name: "todo/create", scope, args: { id: `t${i}`, title: "t" } })) }))
        yield* log.trim(scope, 2)
        const res = yield* post(`${base}/_sync/pull`, JSON.stringify({ scope, cursor: 1 }))
        assert.strictEqual(res.status, 410)
        assert.strictEqual(decodeAs(Protocol.ErrorBody, res.json).error.code, "cursor_too_old")
      }))
  })

  // `faultyStorage` appears twice in one build, so both uses share one instance (layers are memoized).
  layer(Layer.merge(layerServer({ registry, tracing, prefix: "/api/sync", maxBodyBytes: 1000 }, Layer.mergeAll(faultyStorage, LivePubSub.layerMemory, Authorizer.layerAllowAll)), faultyStorage))("storage failures and options", (it) => {
    it.effect("storage down: 503 unavailable, nothing applied; it recovers by itself", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const down = yield* StorageDown
        const scope = freshScope()
        const body = JSON.stringify({ client_id: "c-503", mutations: [{ id: 1, name: "todo/create", scope, args: { id: "a", title: "a" } }] })
        yield* Ref.set(down, true)
        const failed = yield* post(`${base}/api/sync/push`, body)
        assert.strictEqual(failed.status, 503)
        assert.strictEqual(decodeAs(Protocol.ErrorBody, failed.json).error.code, "unavailable")
        yield* Ref.set(down, false)
        const snap = decodeAs(Protocol.SnapshotResponse, (yield* post(`${base}/api/sync/snapshot`, JSON.stringify({ scope, client_id: "c-503" }))).json)
        assert.deepStrictEqual(snap, { data: {}, cursor: 0, last_mutation_id: 0, checksum: 0 })
        const ok = yield* post(`${base}/api/sync/push`, body)
        assert.deepStrictEqual(decodeAs(Protocol.PushResponse, ok.json).results, [{ id: 1, ok: true, cursor: 1 }])
      }))

    it.effect("the prefix and body limit are configurable", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const big = yield* post(`${base}/api/sync/pull`, JSON.stringify({ scope: "a", cursor: 0, pad: "x".repeat(1000) }))
        assert.strictEqual(big.status, 413)
        const old = yield* post(`${base}/_sync/pull`, JSON.stringify({ scope: "a", cursor: 0 }))
        assert.strictEqual(old.status, 404)
      }))
  })
})

describe("which edge answers", () => {
  const pushBody = (scope: string) => JSON.stringify({ mutations: [{ name: "todo/create", scope, args: { id: "e1", title: "edge" } }] })

  /** A server on a Node server of the test's own: what reaches the platform's request listener, and the answers. */
  const platformSees = (options: Partial<Server.Options>) =>
    Effect.gen(function*() {
      const node = Http.createServer()
      const seen: Array<string> = []
      // registered before the platform's listener: it sees exactly the requests the platform sees
      node.prependListener("request", (req: Http.IncomingMessage) => seen.push(`${req.method} ${req.url}`))
      const context = yield* Layer.build(Server.layer({ registry, ...options }).pipe(
        Layer.provideMerge(layerMemoryDeps),
        Layer.provideMerge(Server.layerNodeHttpServer(() => node, { port: 0, host: "127.0.0.1" }))
      ))
      const address = Context.get(context, HttpServer.HttpServer).address
      const base = `http://127.0.0.1:${address._tag === "TcpAddress" ? address.port : 0}`
      const scope = freshScope("edge")
      const push = yield* post(`${base}/_sync/push`, pushBody(scope))
      const pull = yield* post(`${base}/_sync/pull`, JSON.stringify({ scope, cursor: 0 }))
      const metrics = yield* request(`${base}/_sync/metrics`)
      return { seen, statuses: [push.status, pull.status, metrics.status], pulled: decodeAs(Protocol.PullResponse, pull.json).changes.length }
    })

  it.scoped("tracing: false: push and pull are answered on Node's request event, the rest by the platform", () =>
    Effect.gen(function*() {
      const { pulled, seen, statuses } = yield* platformSees({ tracing: false })
      assert.deepStrictEqual(statuses, [200, 200, 200])
      assert.strictEqual(pulled, 1)
      assert.deepStrictEqual(seen, ["GET /_sync/metrics"])
    }))

  it.scoped("tracing on, or nodeFastPath: false: every request goes through the platform", () =>
    Effect.gen(function*() {
      for (const options of [{ tracing: true }, { tracing: false, nodeFastPath: false }]) {
        const { pulled, seen, statuses } = yield* platformSees(options)
        assert.deepStrictEqual(statuses, [200, 200, 200], JSON.stringify(options))
        assert.strictEqual(pulled, 1)
        assert.deepStrictEqual(seen, ["POST /_sync/push", "POST /_sync/pull", "GET /_sync/metrics"], JSON.stringify(options))
      }
    }))

  it.scoped("SyncHttp.nodeHandler on a plain node:http server: it answers the sync endpoints and leaves everything else to the app", () =>
    Effect.gen(function*() {
      const engine = yield* Layer.build(Server.layerEngine(registry).pipe(
        Layer.provide(Layer.mergeAll(SyncStorage.layerMemory, PokeBroker.layerFunction(() => Effect.void), Authorizer.layerAllowAll))
      ))
      const handler = yield* Effect.provide(SyncHttp.nodeHandler({ prefix: "/sync", maxBodyBytes: 2000 }), engine)
      const node = Http.createServer((req, res) => {
        if (handler(req, res)) return
        res.writeHead(418, { "content-type": "text/plain" })
        res.end("the app's")
      })
      const port = yield* Effect.acquireRelease(
        Effect.async<number>((resume) => {
          node.listen(0, "127.0.0.1", () => resume(Effect.succeed((node.address() as { port: number }).port)))
        }),
        () =>
          Effect.async<void>((resume) => {
            node.close(() => resume(Effect.void))
          })
      )
      const base = `http://127.0.0.1:${port}`
      const scope = freshScope("plain")
      const push = yield* post(`${base}/sync/push`, pushBody(scope))
      assert.strictEqual(push.status, 200)
      assert.strictEqual(push.headers.get("content-type"), "application/json")
      assert.deepStrictEqual(decodeAs(Protocol.PushResponse, push.json).results, [{ ok: true, cursor: 1 }])
      const pull = yield* post(`${base}/sync/pull`, JSON.stringify({ scope, cursor: 0 }))
      assert.deepStrictEqual(decodeAs(Protocol.PullResponse, pull.json).changes.map((c) => c.id), ["e1"])
      // hostile bodies get the protocol's answers, as through the router: not JSON, over the limit, the wrong type
      const bad = [
        { body: "{nope", headers: json, status: 400, code: "invalid_request" },
        { body: JSON.stringify({ scope, cursor: 0, pad: "x".repeat(2000) }), headers: json, status: 413, code: "payload_too_large" },
        { body: JSON.stringify({ scope, cursor: 0 }), headers: { "content-type": "text/plain" }, status: 415, code: "unsupported_media_type" },
        { body: JSON.stringify({ scope, cursor: -1 }), headers: json, status: 400, code: "invalid_request" }
      ]
      for (const c of bad) {
        const res = yield* post(`${base}/sync/pull`, c.body, c.headers)
        assert.strictEqual(res.status, c.status, c.code)
        assert.strictEqual(decodeAs(Protocol.ErrorBody, res.json).error.code, c.code)
      }
      // not its requests: another method, a query string, another path, no such endpoint, an inherited property name
      for (const [method, path] of [["GET", "/sync/pull"], ["POST", "/sync/pull?x=1"], ["POST", "/elsewhere"], ["POST", "/sync/nope"], ["POST", "/sync/constructor"]]) {
        const res = yield* request(`${base}${path}`, { method, ...(method === "GET" ? {} : { body: "{}", headers: json }) })
        assert.strictEqual(res.status, 418, `${method} ${path}`)
        assert.strictEqual(res.text, "the app's")
      }
      // nothing of that changed the scope
      const after = yield* post(`${base}/sync/pull`, JSON.stringify({ scope, cursor: 0 }))
      assert.strictEqual(decodeAs(Protocol.PullResponse, after.json).cursor, 1)
    }))
})
