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

const protocolError = (code: Protocol.ErrorCode, message: string) => new ProtocolError({ code, message })

/**
 * Read the raw body with a byte bound, then call `done` once: with the text,
 * or with the error to answer (past the bound it stops buffering: 413).
 * Returns a function that stops listening (`done` is then never called).
 */
const readBody = (
  incoming: IncomingMessage,
  limit: number,
  done: (error: ProtocolError | undefined, text: string) => void
): () => void => {
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
      done(protocolError("payload_too_large", `body is larger than ${limit} bytes`), "")
    } else {
      chunks.push(chunk)
    }
  }
  const onEnd = () => {
    cleanup()
    done(undefined, chunks.length === 1 ? chunks[0].toString("utf8") : Buffer.concat(chunks, size).toString("utf8"))
  }
  const onError = (error: Error) => {
    cleanup()
    done(protocolError("invalid_request", `could not read the body: ${error.message}`), "")
  }
  incoming.on("data", onData)
  incoming.on("end", onEnd)
  incoming.on("error", onError)
  return cleanup
}

const isJsonContentType = (value: string | undefined) => {
  if (value === undefined) return false
  const semi = value.indexOf(";")
  return (semi === -1 ? value : value.slice(0, semi)).trim().toLowerCase() === "application/json"
}

/**
 * Decode a body: JSON, depth, version, then the Schema (see
 * `SyncHttp.decodeBody`). With `quick` (a Schema that accepts only what
 * `schema` accepts, decoded alike, and checks it faster) that one is tried
 * first; a body it refuses is decoded with `schema`, which tells the issue.
 */
export const decodeBody = <A, I>(schema: Schema.Schema<A, I>, quick?: Schema.Schema<A, unknown>) => {
  const full = Schema.decodeUnknownEither(schema, { errors: "first", onExcessProperty: "ignore" })
  const first = quick === undefined ? undefined : Schema.decodeUnknownEither(quick, { errors: "first", onExcessProperty: "ignore" })
  const decode = first === undefined ? full : (json: unknown) => {
    const quickly = first(json)
    return Either.isRight(quickly) ? quickly : full(json)
  }
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

const internalError = new ProtocolError({ code: "internal", message: "internal error" })

/** The error to answer for a handler's cause: its failure, or `internal` for a defect (logged as `what` failed); an interruption stays one. */
const errorOf = (what: string) => (cause: Cause.Cause<ProtocolError>): Effect.Effect<ProtocolError> => {
  const failure = Cause.failureOption(cause)
  if (failure._tag === "Some") return Effect.succeed(failure.value)
  if (Cause.isInterruptedOnly(cause)) return Effect.failCause(cause as Cause.Cause<never>)
  return Effect.as(Effect.logError(`${what} failed with a defect`, cause), internalError)
}

/** Turn any failure or defect of a handler into the protocol's error response (a defect logged as `what` failed). */
export const handleErrorsAs = (what: string) => {
  const toError = errorOf(what)
  return <R>(
    self: Effect.Effect<HttpServerResponse.HttpServerResponse, ProtocolError, R>
  ): Effect.Effect<HttpServerResponse.HttpServerResponse, never, R> =>
    Effect.catchAllCause(self, (cause) => Effect.map(toError(cause), errorResponse))
}

/** A sync endpoint's answer: a status and a JSON text, an `ErrorBody` when it failed. */
interface Answer {
  readonly status: number
  readonly body: string
}

const errorAnswer = (error: ProtocolError): Answer => ({ status: error.status, body: JSON.stringify(error.toBody()) })

const syncErrorOf = errorOf("sync request")

/** Any failure as its `ErrorBody`, a defect as `500 internal` (logged); an interruption stays one. */
const answered = (self: Effect.Effect<string, ProtocolError>): Effect.Effect<Answer> =>
  Effect.matchCauseEffect(self, {
    onSuccess: (body) => Effect.succeed({ status: 200, body }),
    onFailure: (cause) => Effect.map(syncErrorOf(cause), errorAnswer)
  })

/**
 * One sync endpoint, apart from the HTTP server that serves it. The checks in
 * order: method, content type and declared size (`check`, before the body
 * is read), the size while reading, then `decode`; only then does the engine
 * see the body (`run`).
 */
const endpoint = <A, I>(
  schema: Schema.Schema<A, I>,
  maxBodyBytes: number,
  run: (body: A, caller: Caller, engine: SyncEngine["Type"]) => Effect.Effect<string, ProtocolError>,
  quick?: Schema.Schema<A, unknown>
) => ({
  maxBodyBytes,
  check: (method: string, headers: Headers.Headers): ProtocolError | undefined => {
    if (method !== "POST") return protocolError("method_not_allowed", `${method} is not allowed; use POST`)
    if (!isJsonContentType(headers["content-type"])) {
      return protocolError("unsupported_media_type", "Content-Type must be application/json")
    }
    const length = headers["content-length"]
    if (length !== undefined && Number(length) > maxBodyBytes) {
      return protocolError("payload_too_large", `body is larger than ${maxBodyBytes} bytes`)
    }
    return undefined
  },
  decode: decodeBody(schema, quick),
  run
})

/** An endpoint over a request's method, headers and Node body stream, in one Effect. */
const serve = <A>(
  self: ReturnType<typeof endpoint<A, any>>,
  method: string,
  headers: Headers.Headers,
  incoming: IncomingMessage,
  engine: SyncEngine["Type"]
): Effect.Effect<Answer> => {
  const error = self.check(method, headers)
  if (error !== undefined) return Effect.succeed(errorAnswer(error))
  return answered(Effect.flatMap(
    Effect.async<string, ProtocolError>((resume) => {
      const stop = readBody(incoming, self.maxBodyBytes, (error, text) => resume(error === undefined ? Effect.succeed(text) : Effect.fail(error)))
      return Effect.sync(stop)
    }),
    (text) => {
      const body = self.decode(text)
      return body._tag === "Left" ? Effect.fail(body.left) : self.run(body.right, callerOfHeaders(headers), engine)
    }
  ))
}

type Endpoint = ReturnType<typeof endpoint<any, any>>

/** The five endpoints by name (the last segment of their path). */
const endpoints = (maxBodyBytes: number): Readonly<Record<"push" | "pull" | "snapshot" | "ranges" | "rows", Endpoint>> => ({
  push: endpoint(Protocol.PushRequest, maxBodyBytes, (body, caller, e) => Effect.map(e.push(body, caller), JSON.stringify), Protocol.PushRequestQuick),
  // the body as the engine encoded it (once; the page's JSON straight from the database)
  pull: endpoint(Protocol.PullRequest, maxBodyBytes, (body, caller, e) => e.pullBody(body, caller), Protocol.PullRequestQuick),
  snapshot: endpoint(Protocol.SnapshotRequest, maxBodyBytes, (body, caller, e) => Effect.map(e.snapshot(body, caller), JSON.stringify)),
  ranges: endpoint(Protocol.RangesRequest, maxBodyBytes, (body, caller, e) => Effect.map(e.ranges(body, caller), JSON.stringify)),
  rows: endpoint(Protocol.RowsRequest, maxBodyBytes, (body, caller, e) => Effect.map(e.rows(body, caller), JSON.stringify))
})

/** An endpoint as a route handler of @effect/platform's router. */
const route = (self: Endpoint) =>
  Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
    Effect.flatMap(SyncEngine, (engine) =>
      Effect.map(
        serve(self, request.method, request.headers, NodeHttpServerRequest.toIncomingMessage(request), engine),
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
    const write = (response: ServerResponse, answer: Answer) => {
      if (response.writableEnded || response.destroyed) return
      response.writeHead(answer.status, {
        "content-type": "application/json",
        "content-length": Buffer.byteLength(answer.body)
      })
      response.end(answer.body)
    }
    return (request, response) => {
      const url = request.url
      if (request.method !== "POST" || url === undefined || !url.startsWith(prefix)) return false
      const name = url.slice(prefix.length)
      const self = Object.hasOwn(all, name) ? all[name] : undefined
      if (self === undefined) return false
      // the checks and the body read without a fiber; one fiber for the engine's work only
      const headers = Headers.fromInput(request.headers)
      const error = self.check("POST", headers)
      if (error !== undefined) {
        write(response, errorAnswer(error))
        return true
      }
      readBody(request, self.maxBodyBytes, (error, text) => {
        if (error !== undefined) return write(response, errorAnswer(error))
        let body: Either.Either<unknown, ProtocolError>
        try {
          body = self.decode(text)
        } catch (defect) {
          // in an event callback a throw would take the process down: answer 500 and log it, as a defect in a fiber is
          return runFork(Effect.map(syncErrorOf(Cause.die(defect)), (error) => write(response, errorAnswer(error))))
        }
        if (body._tag === "Left") return write(response, errorAnswer(body.left))
        const fiber = runFork(answered(self.run(body.right, callerOfHeaders(headers), engine)))
        fiber.addObserver((exit) => {
          if (exit._tag === "Success") write(response, exit.value)
        })
        // the client went away before its answer: stop working for it, as the platform does
        response.once("close", () => {
          if (!response.writableEnded) fiber.unsafeInterruptAsFork(FiberId.none)
        })
      })
      return true
    }
  })

/** The `404 not_found` response. */
export const notFound: HttpServerResponse.HttpServerResponse = errorResponse(
  new ProtocolError({ code: "not_found", message: "no such route" })
)

