/**
 * The todo app as server options: its mutations, its live page and its own
 * files. `server.ts` runs it; tests serve the same thing on a free port.
 */
import { HttpRouter, HttpServerResponse } from "@effect/platform"
import { Effect } from "effect"
import type { Server } from "mizu-sync-live"
import * as NodeFs from "node:fs/promises"
import { registry } from "./mutations.js"
import { TodoPage } from "./page.js"

const file = (path: string, contentType: string) =>
  Effect.tryPromise(() => NodeFs.readFile(new URL(path, import.meta.url))).pipe(
    Effect.map((body) => HttpServerResponse.uint8Array(body, { contentType, headers: { "cache-control": "no-cache" } })),
    Effect.orElseSucceed(() => HttpServerResponse.text(`${path} is missing: run \`npm run build\``, { status: 404 }))
  )

/** The app's own files; the mutations module is the one the server runs, compiled to JS by `npm run build`. */
export const routes = HttpRouter.empty.pipe(
  HttpRouter.get("/", file("./public/index.html", "text/html; charset=utf-8")),
  HttpRouter.get("/app.js", file("./public/app.js", "text/javascript; charset=utf-8")),
  HttpRouter.get("/app.css", file("./public/app.css", "text/css; charset=utf-8")),
  HttpRouter.get("/todo/mutations.js", file("../../dist/examples/todo/mutations.js", "text/javascript; charset=utf-8"))
)

/** Everything `Server.layer` needs to know about the app. */
export const options: Server.Options = { registry, pages: [TodoPage], routes }
