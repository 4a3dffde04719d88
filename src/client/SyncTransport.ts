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
 * - everything else (no connection, timeout, a body that is not the protocol,
 *   a token source that failed) fails with `TransportError`, never a defect;
 * - a `401` is answered by calling `refreshToken` (once for all the requests
 *   that met it concurrently) and sending the request once more; a second
 *   `401` is returned as it is.
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
import * as Token from "./Token.js"

/**
 * A failure below the protocol: no answer, or an answer that is not the protocol.
 *
 * @since 0.1.0
 * @category errors
 */
export class TransportError extends Data.TaggedError("TransportError")<{
  /** `token`: the app's token source (or `refreshToken`) failed, so nothing was sent. */
  readonly reason: "network" | "timeout" | "http" | "decode" | "token"
  readonly message: string
  readonly status?: number
  readonly cause?: unknown
}> {}

/**
 * What a transport call may fail with.
 *
 * @since 0.1.0
 * @category models
 */
export type SyncTransportError = TransportError | ProtocolError

/**
 * The three sync endpoints as typed calls: decoded responses or typed errors, never a defect.
 *
 * @since 0.1.0
 * @category services
 */
export class SyncTransport extends Context.Tag("@mizu/client/SyncTransport")<SyncTransport, {
  readonly push: (request: Protocol.PushRequest) => Effect.Effect<Protocol.PushResponse, SyncTransportError>
  readonly pull: (request: Protocol.PullRequest) => Effect.Effect<Protocol.PullResponse, SyncTransportError>
  readonly snapshot: (request: Protocol.SnapshotRequest) => Effect.Effect<Protocol.SnapshotResponse, SyncTransportError>
}>() {}

/**
 * Whether the error means "the server could not be reached" (as opposed to "the server said no").
 *
 * @since 0.1.0
 * @category guards
 */
export const isOffline = (error: SyncTransportError): boolean =>
  error._tag === "TransportError" && (error.reason === "network" || error.reason === "timeout")

/**
 * Options of the `fetch` transport.
 *
 * @since 0.1.0
 * @category options
 */
export interface FetchOptions {
  /** The server's origin, e.g. `https://app.example.com`; `""` for same-origin in a browser. */
  readonly baseUrl: string
  /** Mount prefix of the sync endpoints, `/_sync` by default. */
  readonly prefix?: string
  /** A bearer token, or a function or an Effect giving the current one (asked per request; a function may return a Promise). */
  readonly token?: Token.Source
  /**
   * Called after a `401`, then the request is sent once more. It may return
   * the new token; with a function or Effect `token`, it may instead update
   * what `token` gives (which is asked again). A token it returns replaces a
   * fixed `token` for later requests too.
   */
  readonly refreshToken?: Token.Source
  /** Extra headers for every request. */
  readonly headers?: Readonly<Record<string, string>>
  /** Per-request timeout, 30 s by default. */
  readonly timeout?: Duration.DurationInput
  /** The `fetch` to use, the global one by default. */
  readonly fetch?: typeof globalThis.fetch
}

const decodeErrorBody = Schema.decodeUnknownEither(Protocol.ErrorBody)
const isErrorCode = Schema.is(Protocol.ErrorCode)

const isUnauthorized = (error: SyncTransportError): boolean =>
  error._tag === "ProtocolError" ? error.code === "unauthorized" : error.reason === "http" && error.status === 401

/**
 * The token of each request, and the refresh after a `401`: concurrent
 * requests that met a `401` from the same token wait for one refresh.
 */
const makeTokens = (options: FetchOptions) => {
  let refreshed: string | undefined
  let epoch = 0
  const lock = Effect.unsafeMakeSemaphore(1)
  const toTransportError = (e: Token.TokenError) => new TransportError({ reason: "token", message: e.message, cause: e.cause })
  const current: Effect.Effect<readonly [epoch: number, token: string | undefined], TransportError> = Effect.suspend(() => {
    const at = epoch
    if (refreshed !== undefined && !Token.isDynamic(options.token)) return Effect.succeed([at, refreshed] as const)
    return Effect.map(Effect.mapError(Token.resolve(options.token), toTransportError), (token) => [at, token] as const)
  })
  /** After a `401` met with the token of `at`: refresh (unless another request did since), then the token to retry with. */
  const refresh = (at: number): Effect.Effect<string | undefined, TransportError> =>
    lock.withPermits(1)(Effect.gen(function*() {
      if (epoch === at) {
        const fresh = yield* Effect.mapError(Token.resolve(options.refreshToken), toTransportError)
        refreshed = fresh ?? refreshed
        epoch++
        if (fresh !== undefined) return fresh
      }
      return (yield* current)[1]
    }))
  return { current, refresh, canRefresh: options.refreshToken !== undefined }
}

/**
 * Build the `fetch` transport.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeFetch = (options: FetchOptions): SyncTransport["Type"] => {
  const prefix = options.prefix ?? "/_sync"
  const timeout = Duration.decode(options.timeout ?? Duration.seconds(30))
  const tokens = makeTokens(options)

  /** One HTTP exchange with a given token: the status and JSON of a 2xx, or a typed error. */
  const send = (
    path: "push" | "pull" | "snapshot",
    body: string,
    token: string | undefined
  ): Effect.Effect<readonly [status: number, json: unknown], SyncTransportError> =>
    Effect.gen(function*() {
      const headers: Record<string, string> = { "content-type": "application/json", ...options.headers }
      if (token !== undefined) headers["authorization"] = `Bearer ${token}`
      const doFetch = options.fetch ?? globalThis.fetch
      const url = `${options.baseUrl}${prefix}/${path}`
      const response = yield* Effect.tryPromise({
        try: (signal) => doFetch(url, { method: "POST", headers, body, signal }),
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
      if (response.ok) return [response.status, json] as const
      const error = decodeErrorBody(json)
      if (Either.isRight(error) && isErrorCode(error.right.error.code)) {
        return yield* new ProtocolError({
          code: error.right.error.code,
          message: error.right.error.message,
          ...(error.right.error.details === undefined ? {} : { details: error.right.error.details })
        })
      }
      return yield* new TransportError({ reason: "http", status: response.status, message: `${path}: HTTP ${response.status}` })
    })

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
      const text = JSON.stringify(encoded)
      const [at, token] = yield* tokens.current
      const [status, json] = yield* send(path, text, token).pipe(
        Effect.catchIf(
          (e) => tokens.canRefresh && isUnauthorized(e),
          () => Effect.flatMap(tokens.refresh(at), (fresh) => send(path, text, fresh))
        )
      )
      return yield* Schema.decodeUnknown(responseSchema)(json).pipe(
        Effect.mapError((e) => new TransportError({ reason: "decode", status, message: `${path}: ${Protocol.formatParseError(e)}` }))
      )
    }).pipe(Effect.withSpan(`SyncTransport.${path}`))

  return SyncTransport.of({
    push: (body) => request("push", Protocol.PushRequest, Protocol.PushResponse, body),
    pull: (body) => request("pull", Protocol.PullRequest, Protocol.PullResponse, body),
    snapshot: (body) => request("snapshot", Protocol.SnapshotRequest, Protocol.SnapshotResponse, body)
  })
}

/**
 * The `fetch` transport as a layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerFetch = (options: FetchOptions): Layer.Layer<SyncTransport> =>
  Layer.succeed(SyncTransport, makeFetch(options))
