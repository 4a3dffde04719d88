/**
 * `GET /_live/websocket` on the same @effect/platform server as sync, the
 * live pages' HTTP renders and the browser runtime.
 *
 * - The upgrade is done by a `ws` server of our own with `maxPayload`, so a
 *   frame over `maxFrameBytes` is refused by `ws` while it reads the frame
 *   header (close code 1009) instead of being buffered first.
 * - Admission: at most `maxSessions` sessions per process and
 *   `maxSessionsPerAddress` per remote address (the socket's peer, or with
 *   `trustForwardedFor` the last address of `X-Forwarded-For`, the one the
 *   trusted proxy added); an upgrade over either is refused with HTTP 503
 *   `unavailable` before it becomes a WebSocket. A slot is taken before the
 *   upgrade and given back when the session ends or the upgrade fails.
 * - One ticker fiber drives every session's deadlines and flushes; on
 *   shutdown sessions get `CLOSE {reason: "shutdown"}` in batches spread over
 *   the drain period, so a deploy causes no reconnect stampede.
 *
 * @since 0.1.0
 */
import * as HttpRouter from "@effect/platform/HttpRouter"
import type * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import type * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import type * as Authorizer from "../sync/Authorizer.js"
import type { ChangeLog } from "../sync/ChangeLog.js"
import type { SyncEngine } from "../sync/SyncEngine.js"
import * as internal from "./internal/liveHttp.js"
import type * as Page from "./Page.js"
import type * as Session from "./Session.js"

/**
 * The live server's options: the session limits (`Session.Options`) and the
 * endpoint's own.
 *
 * @since 0.1.0
 * @category options
 */
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

/**
 * The process's live server: it upgrades, admits and runs every session of
 * this process, and drains them on shutdown.
 *
 * @since 0.1.0
 * @category services
 */
export class LiveServer extends Context.Tag("@mizu/live/LiveServer")<LiveServer, {
  readonly options: Options
  /** Upgrade the current request and run a session on it (in the server's fibers) until it ends. */
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

/**
 * Build the live server in the current Scope; closing it stops the ticker,
 * interrupts every session and closes the `ws` server.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: (options?: Options) => Effect.Effect<LiveServer["Type"], never, Scope.Scope> = internal.make

/**
 * The live server as a layer (one per process).
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<LiveServer> => Layer.scoped(LiveServer, make(options))

/**
 * `GET path` (`/_live/websocket` by default): the WebSocket endpoint, for an
 * app to add to its router; the `LiveServer` comes from context.
 *
 * @since 0.1.0
 * @category layers
 */
export const router = (
  options: Pick<Options, "path"> = {}
): HttpRouter.HttpRouter<never, LiveServer | Exclude<Session.Requirements, Scope.Scope>> =>
  HttpRouter.empty.pipe(HttpRouter.get(options.path ?? "/_live/websocket", Effect.flatMap(LiveServer, (server) => server.handle)))

/**
 * `GET /_live/runtime.js`: the browser build of the clients and the live page
 * runtime (built by `npm run build`), so a page needs no bundler; 404
 * `not_found` when it is not built.
 *
 * @since 0.1.0
 * @category layers
 */
export const runtimeRouter: HttpRouter.HttpRouter<never, never> = internal.runtimeRouter

/**
 * `GET path` for each page: the whole document, rendered over HTTP (it works
 * without JavaScript), mounted for the request's caller; a mount refused by
 * the `Authorizer` answers 401 / 403, a defect 500 `internal`.
 *
 * @since 0.1.0
 * @category layers
 */
export const pagesRouter: (
  pages: ReadonlyArray<Page.Any>
) => HttpRouter.HttpRouter<never, Page.LivePages | SyncEngine | ChangeLog | Authorizer.Authorizer> = internal.pagesRouter
