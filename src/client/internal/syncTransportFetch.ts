/**
 * The `fetch` transport of `SyncTransport`: one POST per call, a `401`
 * answered by one shared token refresh and one more try, every failure a
 * typed error (see the guarantees in `SyncTransport`).
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import * as Protocol from "../../protocol/Sync.js"
import { ProtocolError } from "../../protocol/Sync.js"
import { type FetchOptions, SyncTransport, type SyncTransportError, TransportError } from "../SyncTransport.js"
import * as Token from "../Token.js"

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
 * See `SyncTransport.makeFetch`. A builder: `send` (one fetch with its timeout
 * and token) and `request` (encode, send, decode) named inside, and the three
 * endpoints over them.
 */
export const makeFetch = (options: FetchOptions): SyncTransport["Type"] => {
  const prefix = options.prefix ?? "/_sync"
  const timeout = Duration.decode(options.timeout ?? Duration.seconds(30))
  const tokens = makeTokens(options)

  /** One HTTP exchange with a given token: the status and JSON of a 2xx, or a typed error. */
  const send = (
    path: "push" | "pull" | "snapshot" | "ranges" | "rows",
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
    path: "push" | "pull" | "snapshot" | "ranges" | "rows",
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
    snapshot: (body) => request("snapshot", Protocol.SnapshotRequest, Protocol.SnapshotResponse, body),
    ranges: (body) => request("ranges", Protocol.RangesRequest, Protocol.RangesResponse, body),
    rows: (body) => request("rows", Protocol.RowsRequest, Protocol.RowsResponse, body)
  })
}
