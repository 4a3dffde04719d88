/**
 * The sync endpoints over @effect/platform's HTTP router:
 * `POST {prefix}/push | pull | snapshot`, prefix `/_sync` by default.
 *
 * Every body is hostile until decoded: the content type, the size (1 MiB by
 * default, checked from `content-length` first and again while reading), the
 * JSON, the `protocol` version and finally the body's Schema are checked, in
 * that order, before the engine sees anything. Every failure is an
 * `ErrorBody` with the protocol's code; a defect answers `500 internal`
 * without leaking its message.
 *
 * @since 0.1.0
 */
import type * as HttpRouter from "@effect/platform/HttpRouter"
import type * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import type * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import type * as Effect from "effect/Effect"
import type * as Either from "effect/Either"
import type * as Schema from "effect/Schema"
import type { IncomingMessage, ServerResponse } from "node:http"
import type { ProtocolError } from "../protocol/Sync.js"
import * as internal from "./internal/syncHttp.js"
import type { Caller, SyncEngine } from "./SyncEngine.js"

/**
 * Options of the sync router.
 *
 * @since 0.1.0
 * @category options
 */
export interface Options {
  /** Mount prefix, `/_sync` by default. */
  readonly prefix?: `/${string}`
  /** Largest accepted body in bytes, 1 MiB by default. */
  readonly maxBodyBytes?: number
}

/**
 * The `ErrorBody` response of a protocol error.
 *
 * @since 0.1.0
 * @category conversions
 */
export const errorResponse: (error: ProtocolError) => HttpServerResponse.HttpServerResponse = internal.errorResponse

/**
 * Decode a body's text with a protocol Schema: JSON, nesting depth, the
 * `protocol` version, then the Schema, in that order; the first failure is
 * the `ProtocolError` to answer. Other transports use it for the same rules.
 *
 * @since 0.1.0
 * @category conversions
 */
export const decodeBody: <A, I>(schema: Schema.Schema<A, I>) => (text: string) => Either.Either<A, ProtocolError> =
  internal.decodeBody

/**
 * The caller of an HTTP request: its `Authorization: Bearer …` token and its headers.
 *
 * @since 0.1.0
 * @category conversions
 */
export const callerOf: (request: HttpServerRequest.HttpServerRequest) => Caller = internal.callerOf

/**
 * The sync routes, for an app to add to its own router
 * (`HttpRouter.concat(appRouter, SyncHttp.router())`). Every method is
 * routed so that non-POST requests get `405`; every answer, failures and
 * defects included, is the protocol's JSON.
 *
 * @since 0.1.0
 * @category constructors
 */
export const router: (options?: Options) => HttpRouter.HttpRouter<never, SyncEngine> = internal.router

/**
 * The `404 not_found` response for unknown routes.
 *
 * @since 0.1.0
 * @category constants
 */
export const notFound: HttpServerResponse.HttpServerResponse = internal.notFound

/**
 * The sync endpoints as a Node `request` listener, for a Node HTTP server
 * to answer them before @effect/platform's router sees the request: the
 * same checks in the same order and the same answers as `router` (one
 * implementation), without the platform's per-request work (its request
 * object, scope, router and response conversion), which costs more CPU
 * than a whole push (bench/README.md, "The platform's own floor").
 *
 * The listener takes `POST {prefix}/push | pull | snapshot | ranges | rows`
 * with no query string and returns `true`; for anything else it returns
 * `false` and leaves the request alone. It makes no request span:
 * `Server.layer({ tracing: false })` uses it on a server from
 * `Server.layerNodeHttpServer` (or `layerNodeServer`), and with tracing on
 * every request goes through the platform, which traces it.
 *
 * @since 0.1.0
 * @category constructors
 */
export const nodeHandler: (
  options?: Options
) => Effect.Effect<(request: IncomingMessage, response: ServerResponse) => boolean, never, SyncEngine> = internal.nodeHandler
