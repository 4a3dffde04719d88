/**
 * The token authorizer's implementation: a token resolved to its access,
 * refused when unknown, expired or not granted the scope; patterns matched
 * without a RegExp (no backtracking); the principal of a token without a
 * subject is a digest, so the token itself is never stored or logged.
 *
 * @internal
 */
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as NodeCrypto from "node:crypto"
import * as Authorizer from "../Authorizer.js"
import type { Access, Grant, Options, Resolve, TokenEntry } from "../TokenAuthorizer.js"

/** The principal id of a token without a subject: a digest, so the token itself is never stored or logged. */
const tokenPrincipal = (token: string): string => `token:${NodeCrypto.createHash("sha256").update(token).digest("hex").slice(0, 32)}`

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
 */
export const matches = (pattern: string): (scope: string) => boolean => {
  const pieces = pattern.split("*")
  if (pieces.length === 1) return (scope) => scope === pattern
  const first = pieces[0]
  const last = pieces[pieces.length - 1]
  const middle = pieces.slice(1, -1).filter((piece) => piece !== "")
  const fixed = first.length + last.length
  return (scope) => {
    if (scope.length < fixed || !scope.startsWith(first) || !scope.endsWith(last)) return false
    const end = scope.length - last.length
    let at = first.length
    for (const piece of middle) {
      const found = scope.indexOf(piece, at)
      if (found === -1 || found + piece.length > end) return false
      at = found + piece.length
    }
    return true
  }
}

/** The grant of a list of patterns: every action on every scope one of them matches. */
const grantOf = (patterns: ReadonlyArray<string>): Grant => {
  const tests = patterns.map(matches)
  return (scope) => tests.some((test) => test(scope))
}

/**
 * An authorizer from a token resolver.
 */
export const make = (resolve: Resolve): Authorizer.Authorizer["Type"] =>
  Authorizer.Authorizer.of({
    authorize: (request) => {
      const token = request.token
      if (token === undefined || token === "") return Authorizer.unauthorized("a bearer token is required")
      return Effect.flatMap(resolve(token), (found): Effect.Effect<Authorizer.Principal, Authorizer.Denied> => {
        if (Option.isNone(found)) return Authorizer.unauthorized("unknown token")
        const access: Access = typeof found.value === "function" ? { allows: found.value } : found.value
        if (access.expiresAt !== undefined && access.expiresAt <= Date.now()) return Authorizer.unauthorized("the token has expired")
        if (!access.allows(request.scope, request.action)) return Authorizer.forbidden(`may not ${request.action} ${request.scope}`)
        return Effect.succeed({ id: access.subject === undefined ? tokenPrincipal(token) : `subject:${access.subject}`, expiresAt: access.expiresAt })
      })
    }
  })

/**
 * The authorizer of a token resolver (signed tokens, a token store).
 */
export const layerResolve = (resolve: Resolve): Layer.Layer<Authorizer.Authorizer> =>
  Layer.succeed(Authorizer.Authorizer, make(resolve))

/**
 * The authorizer of a static table of tokens and their scope patterns.
 */
export const layer = (options: Options): Layer.Layer<Authorizer.Authorizer> => {
  // a Map of the table's own entries: a token like "constructor" or "__proto__" finds nothing inherited
  const table = new Map<string, Access>(
    Object.entries(options.tokens).filter(([token]) => token !== "").map(([token, entry]) => {
      if (isPatterns(entry)) return [token, { allows: grantOf(entry) }]
      return [token, { allows: grantOf(entry.scopes), subject: entry.subject, expiresAt: entry.expiresAt }]
    })
  )
  return layerResolve((token) => Effect.succeed(Option.fromNullable(table.get(token))))
}

const isPatterns = (entry: TokenEntry): entry is ReadonlyArray<string> => Array.isArray(entry)

const TokenTable = Schema.parseJson(Schema.Record({
  key: Schema.String,
  value: Schema.Union(
    Schema.Array(Schema.String),
    Schema.Struct({ scopes: Schema.Array(Schema.String), subject: Schema.optional(Schema.String), expiresAt: Schema.optional(Schema.Number) })
  )
}))
const decodeTable = Schema.decodeUnknownEither(TokenTable)

/**
 * The authorizer of a token table from configuration: a JSON object of
 * token → patterns, `AUTH_TOKENS` by default (a secret: read as `Config.redacted`),
 * e.g. `{"token-ann": ["user:ann:*", "team:1"]}` or, with a subject and an
 * expiry, `{"token-ann": {"scopes": ["user:ann:*"], "subject": "ann", "expiresAt": 1767225600000}}`.
 * A malformed value fails at start.
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
