/**
 * The todo example server (`npm start`): sync + live on SQLite by default
 * (`DATABASE_URL`, `PUBSUB_URL`, `PORT` select otherwise), serving
 *  - `/`            the todo app: a plain page using the client from /_live/runtime.js
 *  - `/live/todos`  the same list as a server-rendered live page
 */
import { HttpRouter, HttpServerResponse } from "@effect/platform"
import { NodeRuntime } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { Authorizer, Server } from "mizu-sync-live"
import * as NodeFs from "node:fs/promises"
import { registry } from "./mutations.js"
import { TodoPage } from "./page.js"

const file = (path: string, contentType: string) =>
  Effect.tryPromise(() => NodeFs.readFile(new URL(path, import.meta.url))).pipe(
    Effect.map((body) => HttpServerResponse.uint8Array(body, { contentType, headers: { "cache-control": "no-cache" } })),
    Effect.orElseSucceed(() => HttpServerResponse.text(`${path} is missing: run \`npm run build\``, { status: 404 }))
  )

/** The app's own files; the mutations module is the one the server runs, compiled to JS by `npm run build`. */
const routes = HttpRouter.empty.pipe(
  HttpRouter.get("/", file("./public/index.html", "text/html; charset=utf-8")),
  HttpRouter.get("/app.js", file("./public/app.js", "text/javascript; charset=utf-8")),
  HttpRouter.get("/app.css", file("./public/app.css", "text/css; charset=utf-8")),
  HttpRouter.get("/todo/mutations.js", file("../../dist/examples/todo/mutations.js", "text/javascript; charset=utf-8"))
)

const ServerLive = Server.layerConfig({ registry, pages: [TodoPage], routes, authorizer: Authorizer.layerAllowAll })

NodeRuntime.runMain(Layer.launch(ServerLive))
