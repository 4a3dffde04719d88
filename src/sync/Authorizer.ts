/**
 * Decides who may do what to which scope. Asked once per scope per request
 * (every scope of a push, the scope of a pull or snapshot, every scope of a
 * SUBSCRIBE), before anything is read or written.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { ProtocolError } from "../protocol/Sync.js"

/**
 * What is asked: sync requests (`push`, `pull`, `snapshot`), live
 * subscriptions (`subscribe`, also JOIN's scopes and a page's
 * `ctx.subscribe`), and ephemeral traffic on a topic (`broadcast`: EVENT
 * relays and presence), so a read-only principal can be kept read-only.
 *
 * @since 0.1.0
 * @category models
 */
export type Action = "push" | "pull" | "snapshot" | "subscribe" | "broadcast"

/**
 * What the authorizer sees of a request.
 *
 * @since 0.1.0
 * @category models
 */
export interface Request {
  readonly action: Action
  readonly scope: string
  /** The bearer token: the `Authorization: Bearer …` header of HTTP, JOIN's `token` on live. */
  readonly token: string | undefined
  readonly clientId: string | undefined
  /** HTTP request headers (lower-cased names); empty on live. */
  readonly headers: Readonly<Record<string, string | undefined>>
}

/**
 * `unauthorized`: no or bad credentials; `forbidden`: valid caller, not this scope.
 *
 * @since 0.1.0
 * @category errors
 */
export class Denied extends Data.TaggedError("Denied")<{
  readonly reason: "unauthorized" | "forbidden"
  readonly message: string
}> {}

/**
 * The protocol error a denial answers with (`401 unauthorized` or
 * `403 forbidden`, its message unchanged): the one mapping used by every route
 * and session.
 *
 * @since 0.1.0
 * @category conversions
 */
export const toProtocolError = (denied: Denied): ProtocolError => new ProtocolError({ code: denied.reason, message: denied.message })

/**
 * Who is asking, as the authorizer identified them. `id` is a stable subject
 * id: a `client_id` belongs to the principal that first used it, so two
 * callers with the same `id` may use each other's client ids and two with
 * different ids may not. `expiresAt` (epoch ms), when set, is when the
 * credentials stop being valid: an open live session is re-checked then.
 *
 * @since 0.1.0
 * @category models
 */
export interface Principal {
  readonly id: string
  readonly expiresAt?: number | undefined
}

/**
 * The one principal of callers that are not told apart (allow-all, a
 * function that returns nothing); it never owns a client id.
 *
 * @since 0.1.0
 * @category constants
 */
export const anonymous: Principal = { id: "anonymous" }

/**
 * Decides who may do what to which scope, once per scope per request,
 * before anything is read or written; a denial fails the request whole.
 *
 * @since 0.1.0
 * @category services
 */
export class Authorizer extends Context.Tag("@mizu/sync/Authorizer")<Authorizer, {
  /** Allow the request (yielding who asks) or refuse it; asked before anything is read or written. */
  readonly authorize: (request: Request) => Effect.Effect<Principal, Denied>
}>() {}

/**
 * Lets everyone do everything, as the one `anonymous` principal (so anyone
 * may use any client id). Explicit, so a server is never open by accident.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerAllowAll: Layer.Layer<Authorizer> = Layer.succeed(
  Authorizer,
  Authorizer.of({ authorize: () => Effect.succeed(anonymous) })
)

/**
 * An authorizer from a function. It yields the caller's principal, or
 * nothing: then every caller it allows is the `anonymous` principal.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerFunction = (
  authorize: (request: Request) => Effect.Effect<Principal | void, Denied>
): Layer.Layer<Authorizer> =>
  Layer.succeed(
    Authorizer,
    Authorizer.of({ authorize: (request) => Effect.map(authorize(request), (principal) => principal ?? anonymous) })
  )

/**
 * Fail with `forbidden` (HTTP 403, live `REPLY {reason: "forbidden"}`): a
 * known caller, not allowed this scope or client id.
 *
 * @since 0.1.0
 * @category constructors
 */
export const forbidden = (message = "forbidden"): Effect.Effect<never, Denied> =>
  Effect.fail(new Denied({ reason: "forbidden", message }))

/**
 * Fail with `unauthorized` (HTTP 401): no credentials, or credentials
 * that are unknown or expired.
 *
 * @since 0.1.0
 * @category constructors
 */
export const unauthorized = (message = "unauthorized"): Effect.Effect<never, Denied> =>
  Effect.fail(new Denied({ reason: "unauthorized", message }))
