/**
 * The floor of our HTTP path: the real sync routes (`SyncHttp.router`: method,
 * media type, bounded body read, JSON, the protocol Schema decode, the
 * response encode) on `NodeHttpServer`, tracing off, over an engine that
 * costs nothing (push answers `ok` for every mutation at once, without
 * storage). What push-pull measures against it is what the platform and the
 * protocol edge cost by themselves: no engine can make ours faster than this.
 *
 * Argument (JSON): {}.
 */
import * as HttpMiddleware from "@effect/platform/HttpMiddleware"
import * as HttpServer from "@effect/platform/HttpServer"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { SyncEngine, SyncHttp } from "mizu-sync-live"
import { createServer } from "node:http"
import * as Control from "../lib/control.js"

const free = SyncEngine.SyncEngine.of({
  push: (request) => Effect.succeed({ results: request.mutations.map((m, i) => ({ ...(m.id === undefined ? {} : { id: m.id }), ok: true, cursor: i + 1 })) }),
  pull: (request) => Effect.succeed({ changes: [], cursor: request.cursor, has_more: false }),
  pullBody: (request) => Effect.succeed(`{"changes":[],"cursor":${request.cursor},"has_more":false}`),
  snapshot: () => Effect.succeed({ data: {}, cursor: 0 }),
  ranges: () => Effect.succeed({ cursor: 0, checksum: 0, ranges: [] }),
  rows: () => Effect.succeed({ cursor: 0, rows: [], has_more: false })
})

const served = HttpMiddleware.withTracerDisabledWhen(HttpServer.serve(SyncHttp.router()), () => true)

const main = Effect.gen(function*() {
  const server = yield* HttpServer.HttpServer
  Control.serve({})
  Control.ready({ port: server.address._tag === "TcpAddress" ? server.address.port : 0, pid: process.pid })
  return yield* Effect.never
}).pipe(
  Effect.provide(served.pipe(
    Layer.provide(Layer.succeed(SyncEngine.SyncEngine, free)),
    Layer.provideMerge(NodeHttpServer.layer(createServer, { port: 0, host: "127.0.0.1" }))
  ))
)

NodeRuntime.runMain(main)
