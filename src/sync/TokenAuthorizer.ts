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
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as Authorizer from "./Authorizer.js"

/** What a token may do: may it use `scope` for `action`? */
export type Grant = (scope: string, action: Authorizer.Action) => boolean

/** The grant of a bearer token; `None` for a token that is not known (→ `unauthorized`). */
export type Resolve = (token: string) => Effect.Effect<Option.Option<Grant>>

/** Options of `layer`. */
export interface Options {
  /** Token → the scope patterns it may use (for every action). An empty token never matches. */
  readonly tokens: Readonly<Record<string, ReadonlyArray<string>>>
}

const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

/** Whether `scope` matches the glob `pattern` (whole scope; `*` is any run of characters). */
export const matches = (pattern: string): (scope: string) => boolean => {
  const regexp = new RegExp(`^${pattern.split("*").map(escapeRegExp).join("[^]*")}$`)
  return (scope) => regexp.test(scope)
}

/** The grant of a list of patterns: every action on every scope one of them matches. */
export const grantOf = (patterns: ReadonlyArray<string>): Grant => {
  const tests = patterns.map(matches)
  return (scope) => tests.some((test) => test(scope))
}

/** An authorizer from a token resolver. */
export const make = (resolve: Resolve): Authorizer.Authorizer["Type"] =>
  Authorizer.Authorizer.of({
    authorize: (request) => {
      const token = request.token
      if (token === undefined || token === "") return Authorizer.unauthorized("a bearer token is required")
      return Effect.flatMap(resolve(token), (grant) =>
        Option.isNone(grant)
          ? Authorizer.unauthorized("unknown token")
          : grant.value(request.scope, request.action)
          ? Effect.void
          : Authorizer.forbidden(`may not ${request.action} ${request.scope}`))
    }
  })

/** The authorizer of a token resolver (signed tokens, a token store). */
export const layerResolve = (resolve: Resolve): Layer.Layer<Authorizer.Authorizer> =>
  Layer.succeed(Authorizer.Authorizer, make(resolve))

/** The authorizer of a static table of tokens and their scope patterns. */
export const layer = (options: Options): Layer.Layer<Authorizer.Authorizer> => {
  // a Map of the table's own entries: a token like "constructor" or "__proto__" finds nothing inherited
  const table = new Map(
    Object.entries(options.tokens).filter(([token]) => token !== "").map(([token, patterns]) => [token, grantOf(patterns)])
  )
  return layerResolve((token) => Effect.succeed(Option.fromNullable(table.get(token))))
}

const TokenTable = Schema.parseJson(Schema.Record({ key: Schema.String, value: Schema.Array(Schema.String) }))
const decodeTable = Schema.decodeUnknownEither(TokenTable)

/**
 * The authorizer of a token table from configuration: a JSON object of
 * token → patterns, `AUTH_TOKENS` by default (a secret: read as `Config.redacted`),
 * e.g. `{"token-ann": ["user:ann:*", "team:1"]}`. A malformed value fails at start.
 */
export const layerConfig = (name = "AUTH_TOKENS"): Layer.Layer<Authorizer.Authorizer, ConfigError.ConfigError> =>
  Layer.unwrapEffect(
    Config.redacted(name).pipe(
      Config.mapOrFail((value) =>
        Either.mapLeft(
          decodeTable(Redacted.value(value)),
          // the message names the variable, never its (secret) value
          () => ConfigError.InvalidData([], `${name} must be a JSON object of token -> array of scope patterns`)
        )
      ),
      Effect.map((tokens) => layer({ tokens }))
    )
  )
