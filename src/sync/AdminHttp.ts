/**
 * The operator view over HTTP: `GET {prefix}/admin/scopes` and
 * `GET {prefix}/admin/clients` (prefix `/_sync` by default), one keyset page
 * of `Operator.scopes` / `Operator.clients` each, as JSON
 * (`Admin.ScopesResponse` / `Admin.ClientsResponse`).
 *
 * Guarded by an operator token (`ADMIN_TOKEN`, or the `token` option), not
 * by the app's `Authorizer`: the sync endpoints' authorization does not
 * apply here, and the operator token grants nothing there.
 *
 * - No token configured: both routes answer exactly as an unknown route
 *   does (`404 not_found`, `SyncHttp.notFound`), so their existence is not
 *   revealed.
 * - Token configured: `Authorization: Bearer <token>` is required; a
 *   missing, malformed (`Basic …`) or wrong one answers `401 unauthorized`
 *   with one message for all, and nothing else. The comparison hashes both
 *   tokens with SHA-256 and compares the digests with
 *   `crypto.timingSafeEqual`, so neither the bytes nor the length of the
 *   token show in the time taken. Surrounding whitespace is ignored on both
 *   sides. The token is never logged.
 * - Then: a method other than GET answers `405`; a bad `after` / `limit`
 *   answers `400 invalid_request` naming the parameter; a storage failure
 *   `503 unavailable`; a storage family without an `Operator` `404`.
 *   Responses carry `Cache-Control: no-store`.
 *
 * @since 0.1.0
 */
import type * as HttpRouter from "@effect/platform/HttpRouter"
import type * as Config from "effect/Config"
import type * as Option from "effect/Option"
import type * as Redacted from "effect/Redacted"
import * as internal from "./internal/adminHttp.js"

/**
 * Options of the operator router.
 *
 * @since 0.1.0
 * @category options
 */
export interface Options {
  /** Mount prefix, `/_sync` by default (the sync routes' prefix). */
  readonly prefix?: `/${string}`
  /** The operator token. Absent: the routes are hidden (answer 404 as unknown routes do). */
  readonly token?: Redacted.Redacted | string | undefined
}

/**
 * The operator routes (see the module header), for an app to add to its own
 * router; `Server.router` mounts them. They need nothing from context: the
 * `Operator` is looked up when a request is answered.
 *
 * @since 0.1.0
 * @category constructors
 */
export const router: (options?: Options) => HttpRouter.HttpRouter = internal.router

/**
 * `ADMIN_TOKEN` from `Config`: the operator token, if set (redacted). An
 * empty or blank value fails naming the variable, so a token is never
 * "configured" by accident.
 *
 * @since 0.1.0
 * @category config
 */
export const tokenConfig: Config.Config<Option.Option<Redacted.Redacted>> = internal.tokenConfig
