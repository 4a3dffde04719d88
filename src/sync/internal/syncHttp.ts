/**
 * The sync endpoints' implementation: every body checked in order (method,
 * content type, declared size, size while reading, JSON, depth, version,
 * Schema) before the engine sees it, and every failure or defect answered
 * with the protocol's `ErrorBody`.
 *
 * @internal
 */
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import * as Protocol from "../../protocol/Sync.js"
import { ProtocolError } from "../../protocol/Sync.js"
import { type Caller, SyncEngine } from "../SyncEngine.js"
import type { Options } from "../SyncHttp.js"

const DEFAULT_PREFIX: `/${string}` = "/_sync"
const DEFAULT_MAX_BODY_BYTES = 1024 * 1024

/** The `ErrorBody` response of a protocol error. */
export const errorResponse = (error: ProtocolError): HttpServerResponse.HttpServerResponse =>
  HttpServerResponse.unsafeJson(error.toBody(), { status: error.status })

const fail = (code: Protocol.ErrorCode, message: string, details?: unknown) =>
  Effect.fail(new ProtocolError({ code, message, ...(details === undefined ? {} : { details }) }))

/** Read the raw body with a byte bound; past the bound, stop buffering and answer 413. */
const readBody = (request: HttpServerRequest.HttpServerRequest, limit: number): Effect.Effect<string, ProtocolError> =>
  Effect.async<string, ProtocolError>((resume) => {
    const incoming = NodeHttpServerRequest.toIncomingMessage(request)
    const chunks: Array<Buffer> = []
    let size = 0
    const cleanup = () => {
      incoming.off("data", onData)
      incoming.off("end", onEnd)
      incoming.off("error", onError)
    }
    const onData = (chunk: Buffer) => {
      size += chunk.length
      if (size > limit) {
        cleanup()
        chunks.length = 0
        incoming.resume() // discard the rest without buffering it
        resume(fail("payload_too_large", `body is larger than ${limit} bytes`))
      } else {
        chunks.push(chunk)
      }
    }
    const onEnd = () => {
      cleanup()
      resume(Effect.succeed(Buffer.concat(chunks, size).toString("utf8")))
    }
    const onError = (error: Error) => {
      cleanup()
      resume(fail("invalid_request", `could not read the body: ${error.message}`))
    }
    incoming.on("data", onData)
    incoming.on("end", onEnd)
    incoming.on("error", onError)
    return Effect.sync(cleanup)
  })

const isJsonContentType = (value: string | undefined) => {
  if (value === undefined) return false
  const semi = value.indexOf(";")
  return (semi === -1 ? value : value.slice(0, semi)).trim().toLowerCase() === "application/json"
}

/** Decode a body: JSON, depth, version, then the Schema (see `SyncHttp.decodeBody`). */
export const decodeBody = <A, I>(schema: Schema.Schema<A, I>) => {
  const decode = Schema.decodeUnknownEither(schema, { errors: "first", onExcessProperty: "ignore" })
  return (text: string): Either.Either<A, ProtocolError> => {
    let json: unknown
    try {
      json = Protocol.parseJson(text)
    } catch (e) {
      return Either.left(
        new ProtocolError({ code: "invalid_request", message: `body is not JSON: ${e instanceof Error ? e.message : String(e)}` })
      )
    }
    if (Protocol.jsonDepthExceeds(json)) {
      return Either.left(
        new ProtocolError({ code: "invalid_request", message: `body: JSON nested deeper than ${Protocol.MAX_JSON_DEPTH} levels` })
      )
    }
    if (typeof json === "object" && json !== null && "protocol" in json) {
      const version = (json as { readonly protocol: unknown }).protocol
      if (!Protocol.SUPPORTED_VERSIONS.includes(version as number)) {
        return Either.left(
          new ProtocolError({
            code: "version_not_supported",
            message: `protocol version ${JSON.stringify(version)} is not supported`,
            details: { supported: Protocol.SUPPORTED_VERSIONS }
          })
        )
      }
    }
    return Either.mapLeft(decode(json), (e) =>
      new ProtocolError({
        code: "invalid_request",
        message: Protocol.formatParseError(e)
      }))
  }
}

/** The caller of an HTTP request: its bearer token and headers. */
export const callerOf = (request: HttpServerRequest.HttpServerRequest): Caller => {
  const auth = request.headers["authorization"]
  const token = auth !== undefined && /^bearer /i.test(auth) ? auth.slice(7).trim() : undefined
  return { token, headers: request.headers }
}

/** Turn any failure or defect of a handler into the protocol's error response (a defect logged as `what` failed). */
export const handleErrorsAs = (what: string) =>
<R>(
  self: Effect.Effect<HttpServerResponse.HttpServerResponse, ProtocolError, R>
): Effect.Effect<HttpServerResponse.HttpServerResponse, never, R> =>
  self.pipe(
    Effect.catchAllCause((cause) => {
      const failure = Cause.failureOption(cause)
      if (failure._tag === "Some") return Effect.succeed(errorResponse(failure.value))
      if (Cause.isInterruptedOnly(cause)) return Effect.failCause(cause as Cause.Cause<never>)
      return Effect.logError(`${what} failed with a defect`, cause).pipe(
        Effect.as(errorResponse(new ProtocolError({ code: "internal", message: "internal error" })))
      )
    })
  )

const handleErrors = handleErrorsAs("sync request")

const endpoint = <A, I>(
  schema: Schema.Schema<A, I>,
  maxBodyBytes: number,
  run: (body: A, caller: Caller, engine: SyncEngine["Type"]) => Effect.Effect<HttpServerResponse.HttpServerResponse, ProtocolError>
) => {
  const decode = decodeBody(schema)
  return Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    if (request.method !== "POST") {
      return yield* fail("method_not_allowed", `${request.method} is not allowed; use POST`)
    }
    if (!isJsonContentType(request.headers["content-type"])) {
      return yield* fail("unsupported_media_type", "Content-Type must be application/json")
    }
    const length = request.headers["content-length"]
    if (length !== undefined && Number(length) > maxBodyBytes) {
      return yield* fail("payload_too_large", `body is larger than ${maxBodyBytes} bytes`)
    }
    const body = yield* Effect.flatMap(readBody(request, maxBodyBytes), (text) => decode(text))
    const engine = yield* SyncEngine
    return yield* run(body, callerOf(request), engine)
  }).pipe(handleErrors)
}

const json = (value: unknown) => HttpServerResponse.unsafeJson(value)

const jsonText = (body: string) => HttpServerResponse.text(body, { contentType: "application/json" })

/** The sync routes (see `SyncHttp.router`). */
export const router = (options: Options = {}): HttpRouter.HttpRouter<never, SyncEngine> => {
  const prefix = options.prefix ?? DEFAULT_PREFIX
  const max = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES
  return HttpRouter.empty.pipe(
    HttpRouter.all(`${prefix}/push`, endpoint(Protocol.PushRequest, max, (body, caller, e) => Effect.map(e.push(body, caller), json))),
    // the body as the engine encoded it (once; the page's JSON straight from the database)
    HttpRouter.all(
      `${prefix}/pull`,
      endpoint(Protocol.PullRequest, max, (body, caller, e) => Effect.map(e.pullBody(body, caller), jsonText))
    ),
    HttpRouter.all(
      `${prefix}/snapshot`,
      endpoint(Protocol.SnapshotRequest, max, (body, caller, e) => Effect.map(e.snapshot(body, caller), json))
    ),
    HttpRouter.all(`${prefix}/ranges`, endpoint(Protocol.RangesRequest, max, (body, caller, e) => Effect.map(e.ranges(body, caller), json))),
    HttpRouter.all(`${prefix}/rows`, endpoint(Protocol.RowsRequest, max, (body, caller, e) => Effect.map(e.rows(body, caller), json)))
  )
}

/** The `404 not_found` response. */
export const notFound: HttpServerResponse.HttpServerResponse = errorResponse(
  new ProtocolError({ code: "not_found", message: "no such route" })
)

