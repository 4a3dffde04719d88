/**
 * The sync endpoints' implementation: every body checked in order (method,
 * content type, declared size, size while reading, JSON, depth, version,
 * Schema) before the engine sees it, and every failure or defect answered
 * with the protocol's `ErrorBody`.
 *
 * @internal
 */
import * as Headers from "@effect/platform/Headers"
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as FiberId from "effect/FiberId"
import * as Runtime from "effect/Runtime"
import * as Schema from "effect/Schema"
import type { IncomingMessage, ServerResponse } from "node:http"
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
const readBody = (incoming: IncomingMessage, limit: number): Effect.Effect<string, ProtocolError> =>
  Effect.async<string, ProtocolError>((resume) => {
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
export const callerOf = (request: HttpServerRequest.HttpServerRequest): Caller => callerOfHeaders(request.headers)

const callerOfHeaders = (headers: Headers.Headers): Caller => {
  const auth = headers["authorization"]
  const token = auth !== undefined && /^bearer /i.test(auth) ? auth.slice(7).trim() : undefined
  return { token, headers }
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

/** A sync endpoint's answer: a status and a JSON text, an `ErrorBody` when it failed. */
interface Answer {
  readonly status: number
  readonly body: string
}

const errorAnswer = (error: ProtocolError): Answer => ({ status: error.status, body: JSON.stringify(error.toBody()) })

const internalAnswer = errorAnswer(new ProtocolError({ code: "internal", message: "internal error" }))

/** Any failure as its `ErrorBody`, a defect as `500 internal` (logged); an interruption stays one. */
const answered = (self: Effect.Effect<string, ProtocolError>): Effect.Effect<Answer> =>
  Effect.matchCauseEffect(self, {
    onSuccess: (body) => Effect.succeed({ status: 200, body }),
    onFailure: (cause) => {
      const failure = Cause.failureOption(cause)
      if (failure._tag === "Some") return Effect.succeed(errorAnswer(failure.value))
      if (Cause.isInterruptedOnly(cause)) return Effect.failCause(cause as Cause.Cause<never>)
      return Effect.as(Effect.logError("sync request failed with a defect", cause), internalAnswer)
    }
  })

/**
 * One sync endpoint, apart from the HTTP server that serves it: the request's
 * method, headers and Node body stream in, its answer out. The checks in
 * order: method, content type, declared size, size while reading, then
 * `decodeBody`; only then does the engine see the body.
 */
const endpoint = <A, I>(
  schema: Schema.Schema<A, I>,
  maxBodyBytes: number,
  run: (body: A, caller: Caller, engine: SyncEngine["Type"]) => Effect.Effect<string, ProtocolError>
) => {
  const decode = decodeBody(schema)
  return (method: string, headers: Headers.Headers, incoming: IncomingMessage, engine: SyncEngine["Type"]): Effect.Effect<Answer> => {
    if (method !== "POST") {
      return answered(fail("method_not_allowed", `${method} is not allowed; use POST`))
    }
    if (!isJsonContentType(headers["content-type"])) {
      return answered(fail("unsupported_media_type", "Content-Type must be application/json"))
    }
    const length = headers["content-length"]
    if (length !== undefined && Number(length) > maxBodyBytes) {
      return answered(fail("payload_too_large", `body is larger than ${maxBodyBytes} bytes`))
    }
    return answered(Effect.flatMap(readBody(incoming, maxBodyBytes), (text) => {
      const body = decode(text)
      return body._tag === "Left" ? Effect.fail(body.left) : run(body.right, callerOfHeaders(headers), engine)
    }))
  }
}

type Endpoint = ReturnType<typeof endpoint>

/** The five endpoints by name (the last segment of their path). */
const endpoints = (maxBodyBytes: number): Readonly<Record<"push" | "pull" | "snapshot" | "ranges" | "rows", Endpoint>> => ({
  push: endpoint(Protocol.PushRequest, maxBodyBytes, (body, caller, e) => Effect.map(e.push(body, caller), JSON.stringify)),
  // the body as the engine encoded it (once; the page's JSON straight from the database)
  pull: endpoint(Protocol.PullRequest, maxBodyBytes, (body, caller, e) => e.pullBody(body, caller)),
  snapshot: endpoint(Protocol.SnapshotRequest, maxBodyBytes, (body, caller, e) => Effect.map(e.snapshot(body, caller), JSON.stringify)),
  ranges: endpoint(Protocol.RangesRequest, maxBodyBytes, (body, caller, e) => Effect.map(e.ranges(body, caller), JSON.stringify)),
  rows: endpoint(Protocol.RowsRequest, maxBodyBytes, (body, caller, e) => Effect.map(e.rows(body, caller), JSON.stringify))
})

/** An endpoint as a route handler of @effect/platform's router. */
const route = (self: Endpoint) =>
  Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
    Effect.flatMap(SyncEngine, (engine) =>
      Effect.map(
        self(request.method, request.headers, NodeHttpServerRequest.toIncomingMessage(request), engine),
        (answer) => HttpServerResponse.text(answer.body, { status: answer.status, contentType: "application/json" })
      )))

/** The sync routes (see `SyncHttp.router`). */
export const router = (options: Options = {}): HttpRouter.HttpRouter<never, SyncEngine> => {
  const prefix = options.prefix ?? DEFAULT_PREFIX
  const all = endpoints(options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES)
  return HttpRouter.empty.pipe(
    HttpRouter.all(`${prefix}/push`, route(all.push)),
    HttpRouter.all(`${prefix}/pull`, route(all.pull)),
    HttpRouter.all(`${prefix}/snapshot`, route(all.snapshot)),
    HttpRouter.all(`${prefix}/ranges`, route(all.ranges)),
    HttpRouter.all(`${prefix}/rows`, route(all.rows))
  )
}

/**
 * The sync endpoints as a Node `request` listener that takes only what it
 * serves (see `SyncHttp.nodeHandler`): `POST {prefix}/<endpoint>` with no
 * query; anything else returns false, left to the app's router.
 */
export const nodeHandler = (
  options: Options = {}
): Effect.Effect<(request: IncomingMessage, response: ServerResponse) => boolean, never, SyncEngine> =>
  Effect.map(Effect.runtime<SyncEngine>(), (runtime) => {
    const prefix = `${options.prefix ?? DEFAULT_PREFIX}/`
    const all: Readonly<Record<string, Endpoint>> = endpoints(options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES)
    const engine = Context.get(runtime.context, SyncEngine)
    const runFork = Runtime.runFork(runtime)
    return (request, response) => {
      const url = request.url
      if (request.method !== "POST" || url === undefined || !url.startsWith(prefix)) return false
      const name = url.slice(prefix.length)
      const self = Object.hasOwn(all, name) ? all[name] : undefined
      if (self === undefined) return false
      const fiber = runFork(Effect.map(self("POST", Headers.fromInput(request.headers), request, engine), (answer) => {
        if (response.writableEnded || response.destroyed) return
        response.writeHead(answer.status, {
          "content-type": "application/json",
          "content-length": Buffer.byteLength(answer.body)
        })
        response.end(answer.body)
      }))
      // the client went away before its answer: stop working for it, as the platform does
      response.on("close", () => {
        if (!response.writableEnded) fiber.unsafeInterruptAsFork(FiberId.none)
      })
      return true
    }
  })

/** The `404 not_found` response. */
export const notFound: HttpServerResponse.HttpServerResponse = errorResponse(
  new ProtocolError({ code: "not_found", message: "no such route" })
)

