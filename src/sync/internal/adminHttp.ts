/**
 * The operator routes' implementation (`AdminHttp`): the guard (no token
 * configured: the unknown-route 404; else a bearer token compared in
 * constant time over SHA-256 digests), the method, the query decoded with
 * `Admin.PageQuery`, then one `Operator` page; every failure or defect
 * answered with the protocol's `ErrorBody`.
 *
 * @internal
 */
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { createHash, timingSafeEqual } from "node:crypto"
import * as Admin from "../../protocol/Admin.js"
import { ProtocolError } from "../../protocol/Sync.js"
import type { Options } from "../AdminHttp.js"
import { Operator } from "../Operator.js"
import { logStorageError } from "./errors.js"
import { errorResponse, handleErrorsAs, notFound } from "./syncHttp.js"

const DEFAULT_PREFIX: `/${string}` = "/_sync"

const sha256 = (text: string): Buffer => createHash("sha256").update(text, "utf8").digest()

/** The bearer token of an `Authorization` header (`Bearer <token>`, the scheme case-insensitive); `undefined` for anything else. */
const bearerOf = (header: string | undefined): string | undefined => {
  if (header === undefined) return undefined
  const match = /^bearer[ \t]+(.*)$/i.exec(header)
  if (match === null) return undefined
  const token = match[1].trim()
  return token === "" ? undefined : token
}

/**
 * Whether a request carries the operator token: both sides hashed with
 * SHA-256 and the digests compared with `timingSafeEqual`, so neither the
 * token's bytes nor its length show in the time taken.
 */
const isOperator = (expected: Buffer) => (request: HttpServerRequest.HttpServerRequest): boolean => {
  const token = bearerOf(request.headers["authorization"])
  // an absent token is still hashed and compared, so it takes the time a wrong one does
  const match = timingSafeEqual(sha256(token ?? ""), expected)
  return token !== undefined && match
}

const unauthorized: HttpServerResponse.HttpServerResponse = errorResponse(
  new ProtocolError({ code: "unauthorized", message: "a valid operator token is required (Authorization: Bearer <token>)" })
).pipe(HttpServerResponse.setHeader("www-authenticate", `Bearer realm="mizu-admin"`))

const fail = (code: ProtocolError["code"], message: string) => Effect.fail(new ProtocolError({ code, message }))

/** The search parameters of a request URL, a repeated one as an array (which the Schema then refuses). */
const searchParamsOf = (url: string): Record<string, string | Array<string>> => {
  const out: Record<string, string | Array<string>> = {}
  const query = url.indexOf("?")
  if (query === -1) return out
  for (const [key, value] of new URLSearchParams(url.slice(query + 1))) {
    if (key === "__proto__") continue
    const seen = Object.hasOwn(out, key) ? out[key] : undefined
    out[key] = seen === undefined ? value : Array.isArray(seen) ? [...seen, value] : [seen, value]
  }
  return out
}

const decodeQuery = Schema.decodeUnknownEither(Admin.PageQuery, { errors: "first", onExcessProperty: "ignore" })

/**
 * The first issue of a query's decode failure, naming its parameter: only
 * the first, since an optional parameter's failure also lists its
 * `undefined` alternative, which would echo the value a second time.
 */
const describeIssue = (error: ParseResult.ParseError): string => {
  const [issue] = ParseResult.ArrayFormatter.formatErrorSync(error)
  if (issue === undefined) return "invalid query"
  return issue.path.length === 0 ? `query: ${issue.message}` : `query parameter ${issue.path.map(String).join(".")}: ${issue.message}`
}

/** The query of a request, or the `400 invalid_request` naming the parameter. */
const queryOf = (request: HttpServerRequest.HttpServerRequest): Effect.Effect<Admin.PageQuery, ProtocolError> =>
  Either.match(decodeQuery(searchParamsOf(request.url)), {
    onLeft: (e) => fail("invalid_request", describeIssue(e)),
    onRight: Effect.succeed
  })

/** Every failure and defect as the protocol's error response. */
const handleErrors = handleErrorsAs("admin request")

const noStore = HttpServerResponse.setHeader("cache-control", "no-store")

/** One guarded listing: the guard, GET only, the query, one page of the `Operator`. */
const listing = (
  guard: ((request: HttpServerRequest.HttpServerRequest) => boolean) | undefined,
  read: (operator: Operator["Type"], page: Admin.PageQuery) => Effect.Effect<unknown, ProtocolError>
) =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    if (guard === undefined) return notFound
    if (!guard(request)) return unauthorized
    if (request.method !== "GET") return yield* fail("method_not_allowed", `${request.method} is not allowed; use GET`)
    const page = yield* queryOf(request)
    const operator = yield* Effect.serviceOption(Operator)
    if (Option.isNone(operator)) return yield* fail("not_found", "this server's storage provides no operator view")
    const body = yield* read(operator.value, page)
    return noStore(HttpServerResponse.unsafeJson(body))
  }).pipe(handleErrors)

/** The configured token's digest; `undefined` when no token is configured (the routes are hidden). */
const expectedOf = (token: Options["token"]): Buffer | undefined => {
  if (token === undefined) return undefined
  return sha256((typeof token === "string" ? token : Redacted.value(token)).trim())
}

/** The operator routes (see `AdminHttp.router`). */
export const router = (options: Options = {}): HttpRouter.HttpRouter => {
  const prefix = options.prefix ?? DEFAULT_PREFIX
  const expected = expectedOf(options.token)
  const guard = expected === undefined ? undefined : isOperator(expected)
  return HttpRouter.empty.pipe(
    HttpRouter.all(
      `${prefix}/admin/scopes`,
      listing(guard, (operator, page) => logStorageError(operator.scopes(page), { route: "admin/scopes" }))
    ),
    HttpRouter.all(
      `${prefix}/admin/clients`,
      listing(guard, (operator, page) => logStorageError(operator.clients(page), { route: "admin/clients" }))
    )
  )
}

/** `ADMIN_TOKEN`: the operator token, if set; an empty or blank value is a configuration error. */
export const tokenConfig: Config.Config<Option.Option<Redacted.Redacted>> = Config.option(
  Config.redacted("ADMIN_TOKEN").pipe(
    Config.validate({ message: "ADMIN_TOKEN must not be empty", validation: (token) => Redacted.value(token).trim() !== "" })
  )
)
