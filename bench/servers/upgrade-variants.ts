/**
 * Instrumentation and alternative upgrade paths for the session-open
 * investigation (bench/ws-open.ts), mounted in our server process next to the
 * real routes:
 *
 * - `GET /bench/platform`: the platform's own path, `HttpServerRequest.upgrade`
 *   (its internal `ws` server), then `socket.runRaw` with a no-op handler.
 * - `GET /bench/own-wss`: what `LiveHttp` does before the session — our own
 *   `WebSocketServer` (maxPayload) wrapped by `Socket.fromWebSocket` — then
 *   `runRaw` with a no-op handler: no `Session`.
 * - `GET /bench/direct`: `handleUpgrade` called synchronously in the route
 *   handler, then the fiber waits for the socket's close: the least Effect
 *   can do.
 *
 * `instrument(server)` timestamps each connection's `upgrade` event and the
 * call of `WebSocketServer#handleUpgrade` (which writes the 101 response
 * synchronously), for every `ws` server in the process (ours, the
 * platform's, the variants').
 */
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Socket from "@effect/platform/Socket"
import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import * as Effect from "effect/Effect"
import type * as Http from "node:http"
import { type WebSocket, WebSocketServer } from "ws"
import { summarize } from "../lib/stats.js"

const wss = new WebSocketServer({
  noServer: true,
  maxPayload: 64 * 1024,
  handleProtocols: (protocols) => (protocols.has("mizu-live-v1") ? "mizu-live-v1" : false)
})

const done = Effect.succeed(HttpServerResponse.empty())
const noop = () => {}

export const router: HttpRouter.HttpRouter<never, never> = HttpRouter.empty.pipe(
  HttpRouter.get(
    "/bench/platform",
    Effect.flatMap(HttpServerRequest.upgrade, (socket) => socket.runRaw(noop)).pipe(
      Effect.catchAllCause(() => Effect.void),
      Effect.zipRight(done)
    )
  ),
  HttpRouter.get(
    "/bench/own-wss",
    Effect.gen(function*() {
      const incoming = NodeHttpServerRequest.toIncomingMessage(yield* HttpServerRequest.HttpServerRequest)
      const socket = yield* Socket.fromWebSocket(
        Effect.acquireRelease(
          Effect.async<globalThis.WebSocket>((resume) => {
            wss.handleUpgrade(incoming, incoming.socket, Buffer.alloc(0), (ws) => {
              resume(Effect.succeed(ws as unknown as globalThis.WebSocket))
            })
          }),
          (ws) => Effect.sync(() => ws.close())
        ),
        { closeCodeIsError: () => false }
      )
      yield* socket.runRaw(noop)
    }).pipe(Effect.scoped, Effect.catchAllCause(() => Effect.void), Effect.zipRight(done))
  ),
  HttpRouter.get(
    "/bench/direct",
    Effect.gen(function*() {
      const incoming = NodeHttpServerRequest.toIncomingMessage(yield* HttpServerRequest.HttpServerRequest)
      yield* Effect.async<void>((resume) => {
        wss.handleUpgrade(incoming, incoming.socket, Buffer.alloc(0), (ws: WebSocket) => {
          ws.on("message", noop)
          ws.once("close", () => resume(Effect.void))
        })
      })
    }).pipe(Effect.zipRight(done))
  )
)

const upgradeAt = new WeakMap<object, number>()
let samples: Array<number> = []
let patched = false

/** Timestamp `upgrade` events of this server and `handleUpgrade` calls of every `ws` server. */
export const instrument = (server: Http.Server): void => {
  server.prependListener("upgrade", (_req, socket) => upgradeAt.set(socket, performance.now()))
  if (patched) return
  patched = true
  const original = WebSocketServer.prototype.handleUpgrade
  WebSocketServer.prototype.handleUpgrade = function(this: WebSocketServer, ...args: Parameters<typeof original>) {
    const t = upgradeAt.get(args[1])
    if (t !== undefined) samples.push(performance.now() - t)
    return original.apply(this, args)
  }
}

/** Time from each `upgrade` event to its `handleUpgrade` call (ms) since the last call; resets. */
export const takeStats = () => {
  const s = summarize(samples)
  samples = []
  return s
}
