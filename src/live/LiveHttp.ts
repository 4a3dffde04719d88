/**
 * `GET /_live/websocket` on the same @effect/platform server as sync.
 *
 * The upgrade is done by a `ws` server of our own with `maxPayload`, so a
 * frame over the limit is refused by `ws` while it reads the frame header
 * (close code 1009) instead of being buffered first. The session reads and
 * writes the `ws` socket directly (its listeners feed the session's inbox),
 * and runs in a fiber of the server's `FiberSet`, not in the upgrade
 * request's fiber, which ends once the socket is handed over: an idle
 * session costs its socket, its state and one fiber parked on its inbox.
 *
 * `LiveServer` keeps the registry of sessions of this process: one ticker
 * fiber drives every session's idle check and backlog flush, and on shutdown
 * sessions get `CLOSE {reason: "shutdown"}` in batches spread over the drain
 * period, so a deploy causes no reconnect stampede.
 *
 * Admission: at most `maxSessions` sessions per process and
 * `maxSessionsPerAddress` per remote address (the socket's peer, or with
 * `trustForwardedFor` the last address of `X-Forwarded-For`, the one the
 * trusted proxy added); an upgrade over either is refused with HTTP 503
 * `unavailable` before it becomes a WebSocket. A slot is taken before the
 * upgrade and given back when the session ends or the upgrade fails.
 *
 * @since 0.1.0
 */
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import type * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as FiberSet from "effect/FiberSet"
import * as Schedule from "effect/Schedule"
import * as Tracer from "effect/Tracer"
import type * as Scope from "effect/Scope"
import * as NodeFs from "node:fs/promises"
import { type WebSocket, WebSocketServer } from "ws"
import * as Live from "../protocol/Live.js"
import { ProtocolError } from "../protocol/Sync.js"
import { ChangeLog as ChangeLogTag, type ChangeLog } from "../sync/ChangeLog.js"
import * as Authorizer from "../sync/Authorizer.js"
import * as StorageErrors from "../sync/StorageError.js"
import { type Caller, SyncEngine } from "../sync/SyncEngine.js"
import { callerOf, errorResponse } from "../sync/SyncHttp.js"
import { LiveHub } from "./LiveHub.js"
import * as Page from "./Page.js"
import * as Session from "./Session.js"

export interface Options extends Session.Options {
  /** Path of the endpoint (`/_live/websocket`). */
  readonly path?: `/${string}`
  /** Largest accepted frame in bytes (64 KiB); bigger closes the connection with 1009. */
  readonly maxFrameBytes?: number
  /** How long shutdown spreads the sessions' CLOSE frames over (10 s). */
  readonly drainPeriod?: Duration.DurationInput
  /** How often sessions are ticked (deadlines, limits, backlog flush): 1 s, or less for short idle / JOIN timeouts. */
  readonly tickInterval?: Duration.DurationInput
  /** Most open sessions on this process (50,000); an upgrade over it is refused with 503 `unavailable`. */
  readonly maxSessions?: number
  /** Most open sessions from one remote address (1,000); an upgrade over it is refused with 503 `unavailable`. */
  readonly maxSessionsPerAddress?: number
  /**
   * Take the remote address from `X-Forwarded-For` (its last entry, the one
   * the proxy in front added) instead of the socket (false). Only behind a
   * proxy that sets it: otherwise a client names its own address.
   */
  readonly trustForwardedFor?: boolean
}

export const DEFAULT_PATH: `/${string}` = "/_live/websocket"

/** The admission counts of a server: open sessions, per remote address. */
interface Admission {
  open: number
  readonly perAddress: Map<string, number>
}

/** A session's slot of one remote address: given back once (a method on the prototype: no closure per session). */
class Slot implements Session.Lease {
  released = false
  constructor(readonly admission: Admission, readonly address: string) {}
  release(): void {
    if (this.released) return
    this.released = true
    const { admission } = this
    admission.open--
    const n = (admission.perAddress.get(this.address) ?? 1) - 1
    if (n <= 0) admission.perAddress.delete(this.address)
    else admission.perAddress.set(this.address, n)
  }
}

/** The remote address a session is counted under. */
const addressOf = (request: HttpServerRequest.HttpServerRequest, peer: string | undefined, trustForwardedFor: boolean): string => {
  const forwarded = trustForwardedFor ? request.headers["x-forwarded-for"] : undefined
  if (forwarded !== undefined) {
    const last = forwarded.split(",").pop()?.trim()
    if (last !== undefined && last !== "") return last
  }
  return peer ?? "unknown"
}

/**
 * The upgraded socket belongs to `ws` now: end the platform's response for
 * this request without writing it, so the HTTP layer writes nothing on the
 * socket when the route handler returns (it would write an HTTP response into
 * the WebSocket stream). The response was never started: detaching it from
 * the socket and ending it only marks it finished.
 */
const handOver = (request: HttpServerRequest.HttpServerRequest, wsListeners: ReadonlyArray<Function>): void => {
  const response = NodeHttpServerRequest.toServerResponse(request)
  if (response.socket !== null) response.detachSocket(response.socket)
  response.end()
  // The HTTP layer's "close" listener on the socket (it interrupts the request's fiber, which is
  // over) would keep the request, its response and its fiber alive as long as the socket: once
  // the upgrade handler has returned, drop every "close" listener that is not the `ws` socket's.
  const socket = NodeHttpServerRequest.toIncomingMessage(request).socket
  setImmediate(() => {
    for (const listener of socket.listeners("close")) {
      if (!wsListeners.includes(listener)) socket.off("close", listener as (...args: Array<unknown>) => void)
    }
  })
}

/** The process's live sessions. */
export class LiveServer extends Context.Tag("@mizu/live/LiveServer")<LiveServer, {
  readonly options: Options
  /** Upgrade the current request and run a session on it until it ends. */
  readonly handle: Effect.Effect<
    HttpServerResponse.HttpServerResponse,
    never,
    HttpServerRequest.HttpServerRequest | Exclude<Session.Requirements, Scope.Scope>
  >
  /** Sessions open on this process. */
  readonly sessionCount: Effect.Effect<number>
  /** Send every session `CLOSE {reason: "shutdown"}`, in batches spread over the drain period. */
  readonly drain: Effect.Effect<void>
}>() {}

export const make = (options: Options = {}): Effect.Effect<LiveServer["Type"], never, Scope.Scope> =>
  Effect.gen(function*() {
    const sessions = new Set<Session.Handle>()
    const wss = yield* Effect.acquireRelease(
      Effect.sync(() =>
        new WebSocketServer({
          noServer: true,
          maxPayload: options.maxFrameBytes ?? 64 * 1024,
          handleProtocols: (protocols) => (protocols.has(Live.SUBPROTOCOL) ? Live.SUBPROTOCOL : false)
        })
      ),
      (wss) => Effect.async<void>((resume) => wss.close(() => resume(Effect.void)))
    )

    const tick = options.tickInterval ?? Duration.millis(Session.tickMillis(options))
    yield* Effect.sync(() => {
      const now = Date.now()
      for (const session of sessions) session.tick(now)
    }).pipe(Effect.repeat(Schedule.spaced(tick)), Effect.interruptible, Effect.forkScoped)

    // Shutdown: CLOSE {reason: "shutdown"} in batches over the drain period.
    const drain = Effect.gen(function*() {
        const all = [...sessions]
        if (all.length === 0) return
        const period = Duration.toMillis(options.drainPeriod ?? "10 seconds")
        const batches = Math.min(all.length, 20)
        const size = Math.ceil(all.length / batches)
        for (let i = 0; i < all.length; i += size) {
          for (const session of all.slice(i, i + size)) session.shutdown()
          if (i + size < all.length) yield* Effect.sleep(Duration.millis(period / batches))
        }
        yield* Effect.sleep(Duration.millis(100))
      })

    // Sessions run in fibers of the server's own, not in their upgrade request's fiber: the
    // request fiber ends once the socket is handed to `ws`, so an idle session holds no HTTP
    // handler stack (bench/README.md, "Fan-out": memory per idle session).
    const fibers = yield* FiberSet.make()
    const sessionOptions = { ...options, registry: sessions }
    const ended = (cause: Cause.Cause<unknown>) => Effect.logDebug("live session ended", cause)

    // Admission: slots per process and per address, taken before the upgrade.
    const maxSessions = options.maxSessions ?? 50_000
    const maxPerAddress = options.maxSessionsPerAddress ?? 1_000
    const admission: Admission = { open: 0, perAddress: new Map() }
    /** Take a slot for `address`, or say why not. */
    const admit = (address: string): Slot | string => {
      if (admission.open >= maxSessions) return "this server holds as many live sessions as it may"
      const n = admission.perAddress.get(address) ?? 0
      if (n >= maxPerAddress) return "too many live sessions from this address"
      admission.open++
      admission.perAddress.set(address, n + 1)
      return new Slot(admission, address)
    }

    // Built here, not in the request handler: a closure made there would keep the request alive.
    // The session gives its slot back when it ends.
    const runSession = (ws: WebSocket, slot: Slot) =>
      FiberSet.run(fibers, Session.run(ws, sessionOptions, slot).pipe(Effect.scoped, Effect.catchAllCause(ended))).pipe(
        // the session's fiber starts with the services it uses (and the request's span as its
        // parent), not the whole request context: it would keep the request alive with it
        Effect.mapInputContext((context: Context.Context<Exclude<Session.Requirements, Scope.Scope>>) =>
          Context.pick(LiveHub, ChangeLogTag, Authorizer.Authorizer, Page.LivePages, SyncEngine, Tracer.ParentSpan)(context)
        )
      )

    const handle = Effect.gen(function*() {
      const request = yield* HttpServerRequest.HttpServerRequest
      if (request.headers["upgrade"]?.toLowerCase() !== "websocket") {
        return errorResponse(new ProtocolError({ code: "invalid_request", message: "expected a WebSocket upgrade" }))
      }
      const incoming = NodeHttpServerRequest.toIncomingMessage(request)
      const slot = admit(addressOf(request, incoming.socket.remoteAddress, options.trustForwardedFor === true))
      if (typeof slot === "string") return errorResponse(new ProtocolError({ code: "unavailable", message: slot }))
      let wsListeners: ReadonlyArray<Function> = []
      const ws = yield* Effect.async<WebSocket | undefined>((resume) => {
        // `ws` refuses a bad handshake by destroying the socket, without calling back
        const gone = () => resume(Effect.succeed(undefined))
        incoming.socket.once("close", gone)
        const before = incoming.socket.listeners("close")
        wss.handleUpgrade(incoming, incoming.socket, Buffer.alloc(0), (ws) => {
          incoming.socket.off("close", gone)
          wsListeners = incoming.socket.listeners("close").filter((listener) => !before.includes(listener))
          resume(Effect.succeed(ws))
        })
      }).pipe(Effect.onExit((exit) => Effect.sync(() => {
        if (exit._tag === "Failure" || exit.value === undefined) slot.release()
      })))
      if (ws === undefined) return HttpServerResponse.empty()
      handOver(request, wsListeners)
      yield* runSession(ws, slot)
      return HttpServerResponse.empty()
    })

    return LiveServer.of({ options, handle, sessionCount: Effect.sync(() => sessions.size), drain })
  })

/** The live server registry (one per process). */
export const layer = (options: Options = {}): Layer.Layer<LiveServer> => Layer.scoped(LiveServer, make(options))

/** The live routes, for an app to add to its router. */
export const router = (options: Pick<Options, "path"> = {}) =>
  HttpRouter.empty.pipe(HttpRouter.get(options.path ?? DEFAULT_PATH, Effect.flatMap(LiveServer, (server) => server.handle)))

const runtimeCandidates = [
  new URL("../../dist/runtime.js", import.meta.url), // running from src/ (tsx)
  new URL("../../runtime.js", import.meta.url) // running from dist/src/
]

/**
 * `GET /_live/runtime.js`: the browser build of the clients and the live page
 * runtime (built by `npm run build`), so a page needs no bundler.
 */
export const runtimeRouter = HttpRouter.empty.pipe(
  HttpRouter.get(
    "/_live/runtime.js",
    Effect.gen(function*() {
      for (const candidate of runtimeCandidates) {
        const body = yield* Effect.tryPromise(() => NodeFs.readFile(candidate)).pipe(Effect.option)
        if (body._tag === "Some") {
          return HttpServerResponse.uint8Array(body.value, {
            contentType: "text/javascript; charset=utf-8",
            headers: { "cache-control": "no-cache" }
          })
        }
      }
      return errorResponse(new ProtocolError({ code: "not_found", message: "runtime.js is not built: run `npm run build`" }))
    })
  )
)

/**
 * The context a page is mounted with for its HTTP render: the request's caller,
 * so `subscribe` asks the `Authorizer` as it does on the socket. A refusal is
 * kept in `denied`, for the response to answer 401 / 403 with it.
 */
const httpContext = (
  params: Readonly<Record<string, unknown>>,
  engine: SyncEngine["Type"],
  log: ChangeLog["Type"],
  authorizer: Authorizer.Authorizer["Type"],
  caller: Caller,
  denied: { error: ProtocolError | undefined }
): Page.PageContext => ({
  sessionId: "http",
  params,
  pushMutation: (mutation) =>
    Effect.map(engine.push({ mutations: [mutation] }, caller), (response) => response.results[0]),
  broadcast: () => Effect.void,
  subscribe: (scope) =>
    authorizer.authorize({ action: "subscribe", scope, token: caller.token, clientId: undefined, headers: caller.headers }).pipe(
      Effect.mapError(Authorizer.toProtocolError),
      Effect.tapError((e) => Effect.sync(() => (denied.error = e))),
      Effect.zipRight(
        log.head(scope).pipe(Effect.mapError(StorageErrors.toProtocolError))
      )
    ),
  sendAfter: () => Effect.void,
  command: () => Effect.void,
  redirect: () => Effect.void
})

/** `GET path` for each page: the whole document, rendered over HTTP (works without JavaScript). */
export const pagesRouter = (
  pages: ReadonlyArray<Page.Any>
): HttpRouter.HttpRouter<never, Page.LivePages | SyncEngine | ChangeLog | Authorizer.Authorizer> =>
  pages.reduce<HttpRouter.HttpRouter<never, Page.LivePages | SyncEngine | ChangeLog | Authorizer.Authorizer>>(
    (router, page) =>
      HttpRouter.get(
        router,
        page.path,
        Effect.gen(function*() {
          const request = yield* HttpServerRequest.HttpServerRequest
          const registry = yield* Page.LivePages
          const engine = yield* SyncEngine
          const log = yield* ChangeLogTag
          const authorizer = yield* Authorizer.Authorizer
          const url = new URL(request.url, "http://x")
          const denied: { error: ProtocolError | undefined } = { error: undefined }
          const ctx = httpContext(Object.fromEntries(url.searchParams), engine, log, authorizer, callerOf(request), denied)
          const state = yield* registry.provide(page.mount(ctx)).pipe(
            Effect.flatMap((s) => Page.checkState(page, s)),
            // a mount that failed because the caller may not read its scope: 401 / 403, not 500
            Effect.mapError((e) => denied.error ?? e)
          )
          return HttpServerResponse.html(Page.document(page, state, { runtimeUrl: "/_live/runtime.js", url: url.pathname + url.search }))
        }).pipe(
          Effect.catchTag("ProtocolError", (e) => Effect.succeed(errorResponse(e))),
          Effect.catchAllCause((cause) =>
            Effect.as(
              Effect.logError("live page render failed", cause),
              errorResponse(new ProtocolError({ code: "internal", message: "internal error" }))
            )
          )
        )
      ),
    HttpRouter.empty
  )
