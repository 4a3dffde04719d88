/**
 * The todo app as server options: its mutations, its live page and its own
 * files. `server.ts` runs it; tests serve the same thing on a free port.
 *
 * The page opens offline: `/sw.js` is the app shell's service worker
 * (`AppShell.script`), which caches every file the page loads — the app's
 * own and the library's `/_live/runtime.js` — under a version that is a hash
 * of their contents, so a deploy that changes any of them replaces the
 * cached shell. The page registers it (`AppShell.register` in app.js).
 */
import { HttpRouter, HttpServerResponse } from "@effect/platform"
import { Effect } from "effect"
import type { Server } from "mizu-sync-live"
import { AppShell } from "mizu-sync-live/client"
import * as NodeCrypto from "node:crypto"
import * as NodeFs from "node:fs/promises"
import { registry } from "./mutations.js"
import { TodoPage } from "./page.js"

/** A file of the app shell: the path the page loads it from and where it is on disk. */
export interface ShellFile {
  readonly path: `/${string}`
  /** The file, relative to this module (or absolute). */
  readonly file: URL
  readonly contentType: string
  /** Served by the library (`/_live/runtime.js`), not by these routes: only cached and hashed. */
  readonly servedElsewhere?: boolean
}

const here = (path: string) => new URL(path, import.meta.url)
const js = "text/javascript; charset=utf-8"

/** Everything the page loads; the mutations module is the one the server runs, compiled to JS by `npm run build`. */
export const shellFiles: ReadonlyArray<ShellFile> = [
  { path: "/", file: here("./public/index.html"), contentType: "text/html; charset=utf-8" },
  { path: "/app.js", file: here("./public/app.js"), contentType: js },
  { path: "/app.css", file: here("./public/app.css"), contentType: "text/css; charset=utf-8" },
  { path: "/todo/mutations.js", file: here("../../dist/examples/todo/mutations.js"), contentType: js },
  { path: "/_live/runtime.js", file: here("../../dist/runtime.js"), contentType: js, servedElsewhere: true }
]

const read = (file: URL) => Effect.tryPromise(() => NodeFs.readFile(file))

const serve = ({ contentType, file, path }: ShellFile) =>
  read(file).pipe(
    Effect.map((body) => HttpServerResponse.uint8Array(body, { contentType, headers: { "cache-control": "no-cache" } })),
    Effect.orElseSucceed(() => HttpServerResponse.text(`${path} is missing: run \`npm run build\``, { status: 404 }))
  )

/** The shell's version: a hash of every file's path and contents (a missing file counts as empty). */
const shellVersion = (files: ReadonlyArray<ShellFile>) =>
  Effect.map(
    Effect.forEach(files, (f) => Effect.map(Effect.orElseSucceed(read(f.file), () => new Uint8Array()), (body) => [f.path, body] as const)),
    (bodies) => {
      const hash = NodeCrypto.createHash("sha256")
      for (const [path, body] of bodies) hash.update(`${path}\n${body.length}\n`).update(body)
      return hash.digest("hex").slice(0, 16)
    }
  )

/**
 * `/sw.js`, the service worker caching `files`: hashed at each request, so a
 * rebuild while the server runs is a new version too.
 */
const serviceWorker = (files: ReadonlyArray<ShellFile>) =>
  Effect.map(shellVersion(files), (version) =>
    HttpServerResponse.text(AppShell.script({ version, shell: files.map((f) => f.path) }), {
      contentType: js,
      headers: { "cache-control": "no-cache" }
    }))

/** The app's routes with `extra` files in its shell (a benchmark's page); `routes` is this without extras. */
export const makeRoutes = (extra: ReadonlyArray<ShellFile> = []) => {
  const files = [...shellFiles, ...extra]
  return files.filter((f) => f.servedElsewhere !== true).reduce(
    (router, f) => HttpRouter.get(router, f.path, serve(f)),
    HttpRouter.empty.pipe(HttpRouter.get("/sw.js", serviceWorker(files)))
  )
}

/** The app's own files and its service worker. */
export const routes = makeRoutes()

/** Everything `Server.layer` needs to know about the app. */
export const options: Server.Options = { registry, pages: [TodoPage], routes }
