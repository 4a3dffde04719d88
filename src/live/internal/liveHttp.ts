/**
 * The live server of a process: the `ws` server that does the upgrades, the
 * admission counts, the registry of running sessions with its one ticker,
 * the drain, and the page and runtime routes.
 *
 * Invariants:
 * - A slot (process and remote address) is taken before the upgrade and
 *   given back exactly once: when the session ends, when the upgrade fails,
 *   or when the server is closing as the socket comes out (it is cut off).
 * - Sessions run in root fibers held by the server's `FiberSet` (interrupted
 *   when the server's scope closes), not in or under their upgrade request's
 *   fiber (which ends once the socket is handed over), with only the
 *   services they use in context and the request's span known by its ids:
 *   an idle session holds no HTTP request, response, request fiber or
 *   handler stack.
 * - Every running session is in the registry, ticked by one fiber.
 *
 * @internal
 */
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import type * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import * as FiberRefs from "effect/FiberRefs"
import * as FiberSet from "effect/FiberSet"
import * as Runtime from "effect/Runtime"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Tracer from "effect/Tracer"
import * as NodeFs from "node:fs/promises"
import { type WebSocket, WebSocketServer } from "ws"
import * as Live from "../../protocol/Live.js"
import { ProtocolError } from "../../protocol/Sync.js"
import * as Authorizer from "../../sync/Authorizer.js"
import { ChangeLog } from "../../sync/ChangeLog.js"
import * as StorageErrors from "../../sync/StorageError.js"
import { type Caller, SyncEngine } from "../../sync/SyncEngine.js"
import { callerOf, errorResponse } from "../../sync/SyncHttp.js"
import type { LiveServer, Options } from "../LiveHttp.js"
import { LiveHub } from "../LiveHub.js"
import * as Page from "../Page.js"
import * as Session from "../Session.js"
import * as PageRender from "./pageRender.js"

// -- admission ----------------------------------------------------------------------------------

/** The admission counts of a server: open sessions, per remote address. */
interface Admission {
  readonly maxSessions: number
  readonly maxPerAddress: number
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

/** Take a slot for `address`, or say why not. */
const admit = (admission: Admission, address: string): Slot | string => {
  if (admission.open >= admission.maxSessions) return "this server holds as many live sessions as it may"
  const n = admission.perAddress.get(address) ?? 0
  if (n >= admission.maxPerAddress) return "too many live sessions from this address"
  admission.open++
  admission.perAddress.set(address, n + 1)
  return new Slot(admission, address)
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

// -- the upgrade --------------------------------------------------------------------------------

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

/** The `ws` server of the upgrades: `maxPayload` bounds a frame while `ws` reads its header (1009). */
const makeWss = (options: Options): Effect.Effect<WebSocketServer, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() =>
      new WebSocketServer({
        noServer: true,
        maxPayload: options.maxFrameBytes ?? 64 * 1024,
        handleProtocols: (protocols) => (protocols.has(Live.SUBPROTOCOL) ? Live.SUBPROTOCOL : false)
      })
    ),
    (wss) => Effect.async<void>((resume) => wss.close(() => resume(Effect.void)))
  )

/**
 * Upgrade the request's socket with `wss`; `undefined` when `ws` refused the
 * handshake (it destroys the socket without calling back). The slot is given
 * back unless a socket came out of it.
 */
const upgrade = (wss: WebSocketServer, request: HttpServerRequest.HttpServerRequest, slot: Slot) => {
  const incoming = NodeHttpServerRequest.toIncomingMessage(request)
  let wsListeners: ReadonlyArray<Function> = []
  return Effect.async<WebSocket | undefined>((resume) => {
    const gone = () => resume(Effect.succeed(undefined))
    incoming.socket.once("close", gone)
    const before = incoming.socket.listeners("close")
    wss.handleUpgrade(incoming, incoming.socket, Buffer.alloc(0), (ws) => {
      incoming.socket.off("close", gone)
      wsListeners = incoming.socket.listeners("close").filter((listener) => !before.includes(listener))
      resume(Effect.succeed(ws))
    })
  }).pipe(
    Effect.onExit((exit) =>
      Effect.sync(() => {
        if (exit._tag === "Failure" || exit.value === undefined) slot.release()
      })
    ),
    Effect.map((ws) => (ws === undefined ? undefined : { ws, wsListeners }))
  )
}

// -- the server ---------------------------------------------------------------------------------

/** Send every session `CLOSE {reason: "shutdown"}`, in up to 20 batches spread over the drain period. */
const drainAll = (sessions: ReadonlySet<Session.Handle>, drainPeriod: Duration.DurationInput | undefined): Effect.Effect<void> =>
  Effect.gen(function*() {
    const all = [...sessions]
    if (all.length === 0) return
    const period = Duration.toMillis(drainPeriod ?? "10 seconds")
    const batches = Math.min(all.length, 20)
    const size = Math.ceil(all.length / batches)
    for (let i = 0; i < all.length; i += size) {
      for (const session of all.slice(i, i + size)) session.shutdown()
      if (i + size < all.length) yield* Effect.sleep(Duration.millis(period / batches))
    }
    yield* Effect.sleep(Duration.millis(100))
  })

/** The one ticker of the process's sessions (deadlines, limits, flushes), in the server's scope. */
const tickAll = (sessions: ReadonlySet<Session.Handle>, options: Options): Effect.Effect<void, never, Scope.Scope> =>
  Effect.sync(() => {
    const now = Date.now()
    for (const session of sessions) session.tick(now)
  }).pipe(
    Effect.repeat(Schedule.spaced(options.tickInterval ?? Duration.millis(Session.tickMillis(options)))),
    Effect.interruptible,
    Effect.forkScoped,
    Effect.asVoid
  )

type SessionServices = Exclude<Session.Requirements, Scope.Scope>

/** A parent span by its ids only: a live session's span links to its request's without holding it (and its exit). */
const detached = (span: Tracer.AnySpan): Tracer.AnySpan =>
  span._tag === "ExternalSpan" ? span : Tracer.externalSpan({ spanId: span.spanId, traceId: span.traceId, sampled: span.sampled })

const ended = (cause: Cause.Cause<unknown>) => Effect.logDebug("live session ended", cause)

/** A session that never fails (a defect is logged), its span ended with its exit; made here, its closures hold nothing of the request. */
const sessionEffect = (
  ws: WebSocket,
  options: Session.Options & { readonly registry: Session.SessionRegistry },
  slot: Slot,
  span: Tracer.Span
): Effect.Effect<void, never, SessionServices> =>
  Session.run(ws, options, slot).pipe(
    Effect.catchAllCause(ended),
    Effect.onExit((exit) => Effect.map(Clock.currentTimeNanos, (now) => span.end(now, exit)))
  )

export const make = (options: Options = {}): Effect.Effect<LiveServer["Type"], never, Scope.Scope> =>
  Effect.gen(function*() {
    const sessions = new Set<Session.Handle>()
    const wss = yield* makeWss(options)
    yield* tickAll(sessions, options)
    const fibers = yield* FiberSet.make()
    // set before the FiberSet is closed (finalizers run in reverse): no session starts after that
    let closing = false
    yield* Effect.addFinalizer(() => Effect.sync(() => (closing = true)))
    const sessionOptions = { ...options, registry: sessions }
    const admission: Admission = {
      maxSessions: options.maxSessions ?? 50_000,
      maxPerAddress: options.maxSessionsPerAddress ?? 1_000,
      open: 0,
      perAddress: new Map()
    }

    // Built here, not in the request handler: a closure made there would keep the request alive.
    // The session gives its slot back when it ends.
    const runSession = (ws: WebSocket, slot: Slot) =>
      Effect.suspend(() => {
        if (closing) {
          ws.terminate()
          return Effect.sync(() => slot.release())
        }
        return Effect.flatMap(Effect.makeSpan("LiveSession", { captureStackTrace: false }), (span) =>
          Effect.map(Effect.runtime<SessionServices>(), (runtime) => {
            // A root fiber (no parent): a fiber forked from the request's keeps that fiber, its
            // context and its exit alive as long as it runs. The session's span is its parent span
            // from the start (no `withSpan` frame on the stack of a fiber held 10,000+ times).
            const fiber = Runtime.runFork(
              Runtime.make({
                context: Context.add(runtime.context, Tracer.ParentSpan, span),
                // the request's context is not kept below the session's in the fiber's refs
                fiberRefs: FiberRefs.delete(runtime.fiberRefs, FiberRef.currentContext),
                runtimeFlags: runtime.runtimeFlags
              }),
              sessionEffect(ws, sessionOptions, slot, span),
              { immediate: false }
            )
            FiberSet.unsafeAdd(fibers, fiber)
          }))
      }).pipe(
        // the session's fiber starts with the services it uses, not the whole request context (it
        // would keep the request alive with it), and its span's parent is the request's, by its ids
        Effect.mapInputContext((context: Context.Context<SessionServices>) => {
          const picked = Context.pick(LiveHub, ChangeLog, Authorizer.Authorizer, Page.LivePages, SyncEngine)(context)
          const parent = Context.getOption(context, Tracer.ParentSpan)
          return parent._tag === "None" ? picked : Context.add(picked, Tracer.ParentSpan, detached(parent.value))
        })
      )

    const handle = Effect.gen(function*() {
      const request = yield* HttpServerRequest.HttpServerRequest
      if (request.headers["upgrade"]?.toLowerCase() !== "websocket") {
        return errorResponse(new ProtocolError({ code: "invalid_request", message: "expected a WebSocket upgrade" }))
      }
      const peer = NodeHttpServerRequest.toIncomingMessage(request).socket.remoteAddress
      const slot = admit(admission, addressOf(request, peer, options.trustForwardedFor === true))
      if (typeof slot === "string") return errorResponse(new ProtocolError({ code: "unavailable", message: slot }))
      const upgraded = yield* upgrade(wss, request, slot)
      if (upgraded === undefined) return HttpServerResponse.empty()
      handOver(request, upgraded.wsListeners)
      yield* runSession(upgraded.ws, slot)
      return HttpServerResponse.empty()
    })

    return { options, handle, sessionCount: Effect.sync(() => sessions.size), drain: drainAll(sessions, options.drainPeriod) }
  })

// -- runtime and pages --------------------------------------------------------------------------

const runtimeCandidates = [
  new URL("../../../dist/runtime.js", import.meta.url), // running from src/ (tsx)
  new URL("../../../runtime.js", import.meta.url) // running from dist/src/
]

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
  pushMutation: (mutation) => Effect.map(engine.push({ mutations: [mutation] }, caller), (response) => response.results[0]),
  broadcast: () => Effect.void,
  subscribe: (scope) =>
    authorizer.authorize({ action: "subscribe", scope, token: caller.token, clientId: undefined, headers: caller.headers }).pipe(
      Effect.mapError(Authorizer.toProtocolError),
      Effect.tapError((e) => Effect.sync(() => (denied.error = e))),
      Effect.zipRight(log.head(scope).pipe(Effect.mapError(StorageErrors.toProtocolError)))
    ),
  sendAfter: () => Effect.void,
  command: () => Effect.void,
  redirect: () => Effect.void
})

type PageServices = Page.LivePages | SyncEngine | ChangeLog | Authorizer.Authorizer

/** `GET page.path`: the page mounted for the request's caller and rendered as a whole document. */
const renderPage = (page: Page.Any) =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const registry = yield* Page.LivePages
    const engine = yield* SyncEngine
    const log = yield* ChangeLog
    const authorizer = yield* Authorizer.Authorizer
    const url = new URL(request.url, "http://x")
    const denied: { error: ProtocolError | undefined } = { error: undefined }
    const ctx = httpContext(Object.fromEntries(url.searchParams), engine, log, authorizer, callerOf(request), denied)
    const state = yield* registry.provide(page.mount(ctx)).pipe(
      Effect.flatMap((s) => PageRender.checkState(page, s)),
      // a mount that failed because the caller may not read its scope: 401 / 403, not 500
      Effect.mapError((e) => denied.error ?? e)
    )
    return HttpServerResponse.html(PageRender.document(page, state, { runtimeUrl: "/_live/runtime.js", url: url.pathname + url.search }))
  }).pipe(
    Effect.catchTag("ProtocolError", (e) => Effect.succeed(errorResponse(e))),
    Effect.catchAllCause((cause) =>
      Effect.as(
        Effect.logError("live page render failed", cause),
        errorResponse(new ProtocolError({ code: "internal", message: "internal error" }))
      )
    )
  )

export const pagesRouter = (pages: ReadonlyArray<Page.Any>): HttpRouter.HttpRouter<never, PageServices> =>
  pages.reduce<HttpRouter.HttpRouter<never, PageServices>>(
    (router, page) => HttpRouter.get(router, page.path, renderPage(page)),
    HttpRouter.empty
  )
