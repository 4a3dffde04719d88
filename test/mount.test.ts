/**
 * The mount recipe of the README: an app serves its own `HttpRouter` (with a
 * route that needs a service of its own) concatenated with `Server.router()`,
 * through its own `HttpServer.serve`, over `Server.layerServices` plus
 * storage, pub/sub and an authorizer. The app's routes and the sync + live
 * endpoints answer on one server, a replacement poke broker built on the
 * default one sees every commit, and live sessions drain on shutdown.
 */
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { assert, describe, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import { Authorizer, LivePubSub, PokeBroker, Server, SyncPokeBroker, SyncStorage } from "mizu-sync-live"
import { registry } from "./suites/EngineSuite.js"
import { freshScope } from "./suites/util.js"
import { BaseUrl, layerNodeServer, post } from "./support/TestServer.js"
import { connect, is, join, request, T } from "./support/WsClient.js"

/** A service of the app's own, needed by one of its routes and by its poke broker. */
class Audit extends Context.Tag("app/Audit")<Audit, { readonly seen: Array<string> }>() {}

const appRouter = HttpRouter.empty.pipe(
  HttpRouter.get("/health", Effect.succeed(HttpServerResponse.text("ok"))),
  HttpRouter.get("/audit", Effect.map(Audit, (audit) => HttpServerResponse.unsafeJson(audit.seen)))
)

/** The app's broker: the default bridge (POKE the sessions), plus a line in the app's audit. */
const auditingBroker = Layer.effect(
  PokeBroker.PokeBroker,
  Effect.gen(function*() {
    const live = yield* SyncPokeBroker.make
    const audit = yield* Audit
    return PokeBroker.PokeBroker.of({
      poke: (scope, cursor) => Effect.zipRight(live.poke(scope, cursor), Effect.sync(() => audit.seen.push(`${scope}@${cursor}`)))
    })
  })
)

const app = HttpServer.serve(Server.toApp(HttpRouter.concat(appRouter, Server.router())))

const layerApp = (drainPeriod: Duration.DurationInput) =>
  app.pipe(
    Layer.provide(Server.layerServices({ registry, pokeBroker: auditingBroker, live: { drainPeriod } })),
    Layer.provide(Layer.mergeAll(SyncStorage.layerMemory, LivePubSub.layerMemory, Authorizer.layerAllowAll)),
    Layer.provide(Layer.sync(Audit, () => ({ seen: [] }))),
    Layer.provideMerge(layerNodeServer)
  )

const pushTodo = (base: string, scope: string, id: string) =>
  post(`${base}/_sync/push`, JSON.stringify({ mutations: [{ name: "todo/create", scope, args: { id, title: id } }] }))

/** The standalone server with the app's routes: what they need appears in the layer's requirements. */
const standalone: Layer.Layer<Server.Services, never, HttpServer.HttpServer | Server.ServicesRequirements | Audit> = Server
  .layer({ registry, routes: appRouter })

describe("mounted in an app's own router", () => {
  it.live("Server.layer serves `routes` that need the app's services", () =>
    Effect.gen(function*() {
      const base = yield* BaseUrl
      const res = yield* Effect.promise(() => fetch(`${base}/audit`).then(async (r) => [r.status, await r.json()]))
      assert.deepStrictEqual(res, [200, ["from the app"]])
    }).pipe(Effect.provide(standalone.pipe(
      Layer.provide(Layer.mergeAll(SyncStorage.layerMemory, LivePubSub.layerMemory, Authorizer.layerAllowAll)),
      Layer.provide(Layer.sync(Audit, () => ({ seen: ["from the app"] }))),
      Layer.provideMerge(layerNodeServer)
    ))))

  it.live("the app's routes and the sync + live endpoints answer on the same server", () =>
    Effect.gen(function*() {
      const base = yield* BaseUrl
      const health = yield* Effect.promise(() => fetch(`${base}/health`).then(async (r) => [r.status, await r.text()]))
      assert.deepStrictEqual(health, [200, "ok"])

      const scope = freshScope()
      const client = yield* connect(base)
      const reply = yield* join(client)
      assert.strictEqual(reply.status, "ok")
      const sub = yield* request(client, { type: T.SUBSCRIBE, payload: { scopes: [scope] } })
      assert.deepStrictEqual(sub.cursors, { [scope]: 0 })

      const pushed = yield* pushTodo(base, scope, "a")
      assert.deepStrictEqual([pushed.status, pushed.json], [200, { results: [{ ok: true, cursor: 1 }] }])
      const poke = yield* client.waitFor(is(T.POKE, (f) => f.payload.scope === scope))
      assert.deepStrictEqual(poke.payload, { scope, cursor: 1 })

      const pulled = yield* post(`${base}/_sync/pull`, JSON.stringify({ scope, cursor: 0 }))
      assert.strictEqual(pulled.status, 200)
      assert.deepStrictEqual((pulled.json as { changes: Array<{ id: string }> }).changes.map((c) => c.id), ["a"])

      // the app's broker saw the commit, and its route (which needs the app's service) says so
      const audit = yield* Effect.promise(() => fetch(`${base}/audit`).then((r) => r.json()))
      assert.deepStrictEqual(audit, [`${scope}@1`])

      const missing = yield* post(`${base}/nowhere`, "{}")
      assert.deepStrictEqual([missing.status, (missing.json as { error: { code: string } }).error.code], [404, "not_found"])
    }).pipe(Effect.scoped, Effect.provide(layerApp("100 millis"))))

  it.live("on shutdown its live sessions get CLOSE {reason: shutdown}", () =>
    Effect.gen(function*() {
      const outer = yield* Scope.make()
      const client = yield* Effect.gen(function*() {
        const base = yield* BaseUrl
        const c = yield* connect(base).pipe(Scope.extend(outer))
        assert.strictEqual((yield* join(c)).status, "ok")
        return c
      }).pipe(Effect.provide(layerApp("100 millis")))
      // the layer is released: the session was drained before the server went away
      const close = yield* client.waitFor(is(T.CLOSE))
      assert.strictEqual(close.payload.reason, "shutdown")
      assert.strictEqual((yield* client.closed).code, 1001)
      yield* Scope.close(outer, Exit.void)
    }))
})
