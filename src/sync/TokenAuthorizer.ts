/**
 * An example `Authorizer`: bearer tokens, each granted the scopes it may use.
 *
 * The token is what `Authorizer.Request.token` carries: the
 * `Authorization: Bearer …` header of HTTP, JOIN's `token` on live. So one
 * table decides push, pull, snapshot, SUBSCRIBE, JOIN's scopes and a live
 * page's `ctx.subscribe`; broadcasts and presence need a subscription, so the
 * same table decides them too.
 *
 * - No token, or one the table does not know: `unauthorized` (HTTP 401).
 * - A known token on a scope none of its patterns matches: `forbidden`
 *   (HTTP 403). (Live answers both with `REPLY {reason: "forbidden"}`.)
 *
 * Patterns are matched against the whole scope; `*` matches any run of
 * characters (the empty run too), everything else matches itself:
 * `"user:ann:*"` matches `user:ann:todos` and `user:ann:a/b`, not
 * `user:anne:todos`; `"team:1"` matches only `team:1`.
 *
 * A static table suits examples, tests and internal tools. For signed tokens
 * (a JWT) or a token store, give `layerResolve` a function from the token to
 * its grant.
 *
 * @since 0.1.0
 */
import type * as ConfigError from "effect/ConfigError"
import type * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import type * as Option from "effect/Option"
import type * as Authorizer from "./Authorizer.js"
import * as internal from "./internal/tokenAuthorizer.js"

/**
 * What a token may do: may it use `scope` for `action`?
 *
 * @since 0.1.0
 * @category models
 */
export type Grant = (scope: string, action: Authorizer.Action) => boolean

/**
 * What a known token gives: its grant, and who it is. `subject` is the
 * principal's stable id (a user id, say: every token of one subject may use
 * the same client ids); without it the principal is the token itself (a
 * digest of it). `expiresAt` (epoch ms): after it the token is refused, and
 * live sessions opened with it are closed.
 *
 * @since 0.1.0
 * @category models
 */
export interface Access {
  readonly allows: Grant
  readonly subject?: string | undefined
  readonly expiresAt?: number | undefined
}

/**
 * The grant (or access) of a bearer token; `None` for a token that is not known (→ `unauthorized`).
 *
 * @since 0.1.0
 * @category models
 */
export type Resolve = (token: string) => Effect.Effect<Option.Option<Grant | Access>>

/**
 * One token of the static table: its scope patterns, or the patterns with a subject and an expiry.
 *
 * @since 0.1.0
 * @category models
 */
export type TokenEntry =
  | ReadonlyArray<string>
  | { readonly scopes: ReadonlyArray<string>; readonly subject?: string | undefined; readonly expiresAt?: number | undefined }

/**
 * Options of `layer`.
 *
 * @since 0.1.0
 * @category options
 */
export interface Options {
  /** Token → the scope patterns it may use (for every action). An empty token never matches. */
  readonly tokens: Readonly<Record<string, TokenEntry>>
}

/**
 * Whether `scope` matches the glob `pattern` (whole scope; `*` is any run of
 * characters, the empty run too; everything else matches itself).
 *
 * No RegExp: the pattern is split at its stars into literal pieces; the
 * first must be a prefix of the scope, the last a suffix, and the ones
 * between are found left to right, each at its first occurrence after the
 * previous one (taking the leftmost occurrence never loses a match, since
 * a star can absorb whatever lies between). So a check costs at most
 * O(scope length × pattern length) character comparisons and never
 * backtracks, whatever the pattern (no hostile pattern costs more).
 *
 * @since 0.1.0
 * @category utils
 */
export const matches: (pattern: string) => (scope: string) => boolean = internal.matches

/**
 * An authorizer from a token resolver.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: (resolve: Resolve) => Authorizer.Authorizer["Type"] = internal.make

/**
 * The authorizer of a token resolver (signed tokens, a token store).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerResolve: (resolve: Resolve) => Layer.Layer<Authorizer.Authorizer> = internal.layerResolve

/**
 * The authorizer of a static table of tokens and their scope patterns.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: (options: Options) => Layer.Layer<Authorizer.Authorizer> = internal.layer

/**
 * The authorizer of a token table from configuration: a JSON object of
 * token → patterns, `AUTH_TOKENS` by default (a secret: read as `Config.redacted`),
 * e.g. `{"token-ann": ["user:ann:*", "team:1"]}` or, with a subject and an
 * expiry, `{"token-ann": {"scopes": ["user:ann:*"], "subject": "ann", "expiresAt": 1767225600000}}`.
 * A malformed value fails at start.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig: (name?: string) => Layer.Layer<Authorizer.Authorizer, ConfigError.ConfigError> = internal.layerConfig
