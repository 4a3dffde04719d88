/**
 * How a client reaches the sync endpoints: push, pull and snapshot, each
 * returning the decoded protocol response or a typed error. The default layer
 * speaks HTTP with `fetch` (browsers and Node 20); tests provide their own to
 * drop, duplicate, delay or reorder requests and responses.
 *
 * Guarantees of `layerFetch`:
 * - a 2xx response is returned only if it decodes with the protocol Schema;
 * - a non-2xx response with an `ErrorBody` whose code the protocol knows fails
 *   with that `ProtocolError` (code and status as the server sent them);
 * - everything else (no connection, timeout, a body that is not the protocol)
 *   fails with `TransportError`, never a defect.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Protocol from "../protocol/Sync.js"
import { ProtocolError } from "../protocol/Sync.js"

/** A failure below the protocol: no answer, or an answer that is not the protocol. */
export class TransportError extends Data.TaggedError("TransportError")<{
  readonly reason: "network" | "timeout" | "http" | "decode"
  readonly message: string
  readonly status?: number
  readonly cause?: unknown
}> {}

/** What a transport call may fail with. */
export type SyncTransportError = TransportError | ProtocolError

/** The three sync endpoints as typed calls: decoded responses or typed errors, never a defect. */
export class SyncTransport extends Context.Tag("@mizu/client/SyncTransport")<SyncTransport, {
  readonly push: (request: Protocol.PushRequest) => Effect.Effect<Protocol.PushResponse, SyncTransportError>
  readonly pull: (request: Protocol.PullRequest) => Effect.Effect<Protocol.PullResponse, SyncTransportError>
  readonly snapshot: (request: Protocol.SnapshotRequest) => Effect.Effect<Protocol.SnapshotResponse, SyncTransportError>
}>() {}

/** Whether retrying the same request later may succeed (network trouble, 5xx, a 429). */
export const isRetryable = (error: SyncTransportError): boolean =>
  error._tag === "TransportError"
    ? error.reason !== "http" || error.status === undefined || error.status >= 500 || error.status === 429 || error.status === 408
    : error.code === "unavailable" || error.code === "internal"

/** Whether the error means "the server could not be reached" (as opposed to "the server said no"). */
export const isOffline = (error: SyncTransportError): boolean =>
  error._tag === "TransportError" && (error.reason === "network" || error.reason === "timeout")

/** Options of the `fetch` transport. */
export interface FetchOptions {
  /** The server's origin, e.g. `https://app.example.com`; `""` for same-origin in a browser. */
  readonly baseUrl: string
  /** Mount prefix of the sync endpoints, `/_sync` by default. */
  readonly prefix?: string
  /** A bearer token, or a function giving the current one (called per request). */
  readonly token?: string | (() => string | undefined)
  /** Extra headers for every request. */
  readonly headers?: Readonly<Record<string, string>>
  /** Per-request timeout, 30 s by default. */
  readonly timeout?: Duration.DurationInput
  /** The `fetch` to use, the global one by default. */
  readonly fetch?: typeof globalThis.fetch
}

const decodeErrorBody = Schema.decodeUnknownEither(Protocol.ErrorBody)
const isErrorCode = Schema.is(Protocol.ErrorCode)

/** Build the `fetch` transport. */
export const makeFetch = (options: FetchOptions): SyncTransport["Type"] => {
  const prefix = options.prefix ?? "/_sync"
  const timeout = Duration.decode(options.timeout ?? Duration.seconds(30))
  const request = <A, I, Req, ReqI>(
    path: "push" | "pull" | "snapshot",
    requestSchema: Schema.Schema<Req, ReqI>,
    responseSchema: Schema.Schema<A, I>,
    body: Req
  ): Effect.Effect<A, SyncTransportError> =>
    Effect.gen(function*() {
      const encoded = yield* Schema.encode(requestSchema)(body).pipe(
        Effect.mapError((e) =>
          new TransportError({ reason: "decode", message: `request does not match the protocol: ${Protocol.formatParseError(e)}` })
        )
      )
      const headers: Record<string, string> = { "content-type": "application/json", ...options.headers }
      const token = typeof options.token === "function" ? options.token() : options.token
      if (token !== undefined) headers["authorization"] = `Bearer ${token}`
      const doFetch = options.fetch ?? globalThis.fetch
      const url = `${options.baseUrl}${prefix}/${path}`
      const response = yield* Effect.tryPromise({
        try: (signal) => doFetch(url, { method: "POST", headers, body: JSON.stringify(encoded), signal }),
        catch: (cause) => new TransportError({ reason: "network", message: `${path}: could not reach ${url}`, cause })
      }).pipe(
        Effect.timeoutFail({
          duration: timeout,
          onTimeout: () => new TransportError({ reason: "timeout", message: `${path}: no answer within ${Duration.format(timeout)}` })
        })
      )
      const text = yield* Effect.tryPromise({
        try: () => response.text(),
        catch: (cause) => new TransportError({ reason: "network", message: `${path}: the response was cut off`, cause })
      }).pipe(
        Effect.timeoutFail({
          duration: timeout,
          onTimeout: () => new TransportError({ reason: "timeout", message: `${path}: the body did not arrive in time` })
        })
      )
      const json = yield* Effect.try({
        try: (): unknown => JSON.parse(text),
        catch: (cause) =>
          new TransportError({ reason: response.ok ? "decode" : "http", status: response.status, message: `${path}: HTTP ${response.status}, body is not JSON`, cause })
      })
      if (!response.ok) {
        const body = decodeErrorBody(json)
        if (Either.isRight(body) && isErrorCode(body.right.error.code)) {
          return yield* new ProtocolError({
            code: body.right.error.code,
            message: body.right.error.message,
            ...(body.right.error.details === undefined ? {} : { details: body.right.error.details })
          })
        }
        return yield* new TransportError({ reason: "http", status: response.status, message: `${path}: HTTP ${response.status}` })
      }
      return yield* Schema.decodeUnknown(responseSchema)(json).pipe(
        Effect.mapError((e) =>
          new TransportError({ reason: "decode", status: response.status, message: `${path}: ${Protocol.formatParseError(e)}` })
        )
      )
    }).pipe(Effect.withSpan(`SyncTransport.${path}`))

  return SyncTransport.of({
    push: (body) => request("push", Protocol.PushRequest, Protocol.PushResponse, body),
    pull: (body) => request("pull", Protocol.PullRequest, Protocol.PullResponse, body),
    snapshot: (body) => request("snapshot", Protocol.SnapshotRequest, Protocol.SnapshotResponse, body)
  })
}

/** The `fetch` transport as a layer. */
export const layerFetch = (options: FetchOptions): Layer.Layer<SyncTransport> =>
  Layer.succeed(SyncTransport, makeFetch(options))
