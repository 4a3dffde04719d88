/**
 * The platform's own floor, without any of our code: `POST /_sync/push`
 * reads the body as text and answers a constant JSON body, and anything
 * else answers the same for `/_sync/pull` and `/_sync/metrics`.
 *
 * Argument (JSON): `{ mode }`:
 * - `"router"`: an `HttpRouter` on `NodeHttpServer`, tracing off (as
 *   `Server.layer({ tracing: false })` serves);
 * - `"app"`: the same as a bare `HttpApp` (one Effect that looks at the URL),
 *   no router;
 * - `"raw"`: `node:http` with a plain request listener doing the same.
 *
 * For `tools/http-profile.ts --server=platform-router|platform-app|platform-raw`.
 */
import * as HttpMiddleware from "@effect/platform/HttpMiddleware"
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Http from "node:http"
import * as Control from "../lib/control.js"

const { mode } = Control.argument<{ readonly mode: "router" | "app" | "raw" }>()
const answer = `{"results":[{"id":1,"ok":true,"cursor":1}]}`

if (mode === "raw") {
  const server = Http.createServer((req, res) => {
    const chunks: Array<Buffer> = []
    req.on("data", (chunk: Buffer) => chunks.push(chunk))
    req.on("end", () => {
      Buffer.concat(chunks).toString("utf8")
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(answer) })
      res.end(answer)
    })
  })
  Control.listenReady(server, {})
  process.on("SIGTERM", () => {
    server.close()
    process.exit(0)
  })
} else {
  const respond = Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
    Effect.as(request.text, HttpServerResponse.text(answer, { contentType: "application/json" })))
  const app = mode === "router"
    ? HttpRouter.empty.pipe(
      HttpRouter.post("/_sync/push", respond),
      HttpRouter.post("/_sync/pull", respond),
      HttpRouter.get("/_sync/metrics", HttpServerResponse.text(""))
    )
    : respond
  const served = HttpMiddleware.withTracerDisabledWhen(HttpServer.serve(Effect.withTracerEnabled(app, false)), () => true)
  const main = Effect.gen(function*() {
    const server = yield* HttpServer.HttpServer
    Control.serve({})
    Control.ready({ port: server.address._tag === "TcpAddress" ? server.address.port : 0, pid: process.pid })
    return yield* Effect.never
  }).pipe(Effect.provide(served.pipe(Layer.provideMerge(NodeHttpServer.layer(Http.createServer, { port: 0, host: "127.0.0.1" })))))
  NodeRuntime.runMain(main)
}
