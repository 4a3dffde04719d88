/**
 * The floor of our HTTP path: the real sync endpoints (method, media type,
 * bounded body read, JSON, the protocol Schema decode, the response encode)
 * served as `Server.layer({ tracing: false })` serves them — on Node's
 * request event (`SyncHttp.nodeHandler` on `Server.layerNodeHttpServer`),
 * the router (`SyncHttp.router`) behind it — over an engine that
 * costs nothing (push answers `ok` for every mutation at once, without
 * storage). What push-pull measures against it is what the platform and the
 * protocol edge cost by themselves: no engine can make ours faster than this.
 *
 * Argument (JSON): `{ filename? }`. With a `filename` (a migrated SQLite
 * file) the same routes run over the real engine instead (`Server.layerEngine`
 * on `SqlStorage.layerSqlite`, pokes to nowhere): the sync routes and the
 * engine and nothing else of `Server.layer` (no live routes, hub or pages),
 * for `tools/http-profile.ts --server=http-engine`.
 */
import * as HttpMiddleware from "@effect/platform/HttpMiddleware"
import * as HttpServer from "@effect/platform/HttpServer"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { Authorizer, PokeBroker, Server, SqlStorage, SyncEngine, SyncHttp } from "mizu-sync-live"
import { createServer } from "node:http"
import { registry } from "../../examples/todo/mutations.js"
import * as Control from "../lib/control.js"

const arg = Control.argument<{ readonly filename?: string }>()

const free = SyncEngine.SyncEngine.of({
  push: (request) => Effect.succeed({ results: request.mutations.map((m, i) => ({ ...(m.id === undefined ? {} : { id: m.id }), ok: true, cursor: i + 1 })) }),
  pull: (request) => Effect.succeed({ changes: [], cursor: request.cursor, has_more: false }),
  pullBody: (request) => Effect.succeed(`{"changes":[],"cursor":${request.cursor},"has_more":false}`),
  snapshot: () => Effect.succeed({ data: {}, cursor: 0 }),
  ranges: () => Effect.succeed({ cursor: 0, checksum: 0, ranges: [] }),
  rows: () => Effect.succeed({ cursor: 0, rows: [], has_more: false })
})

const noPokes = Layer.succeed(PokeBroker.PokeBroker, PokeBroker.PokeBroker.of({ poke: () => Effect.void }))

const engine: Layer.Layer<SyncEngine.SyncEngine> = arg.filename === undefined
  ? Layer.succeed(SyncEngine.SyncEngine, free)
  : Server.layerEngine(registry).pipe(
    Layer.provide(Layer.mergeAll(SqlStorage.layerSqlite({ filename: arg.filename }), noPokes, Authorizer.layerAllowAll)),
    Layer.orDie
  )

// tracing off as `Server.layer({ tracing: false })` turns it off: no request span, no span under it
const served = Layer.merge(
  HttpMiddleware.withTracerDisabledWhen(HttpServer.serve(Effect.withTracerEnabled(SyncHttp.router(), false)), () => true),
  Layer.scopedDiscard(Effect.flatMap(
    Server.NodeRequests,
    (requests) => Effect.flatMap(Effect.withTracerEnabled(SyncHttp.nodeHandler(), false), requests.intercept)
  ))
)

const main = Effect.gen(function*() {
  const server = yield* HttpServer.HttpServer
  Control.serve({})
  Control.ready({ port: server.address._tag === "TcpAddress" ? server.address.port : 0, pid: process.pid })
  return yield* Effect.never
}).pipe(
  Effect.provide(served.pipe(
    Layer.provide(engine),
    Layer.provideMerge(Server.layerNodeHttpServer(createServer, { port: 0, host: "127.0.0.1" }))
  ))
)

NodeRuntime.runMain(main)
