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
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Protocol from "../protocol/Sync.js"
import type { ProtocolError } from "../protocol/Sync.js"
import * as internal from "./internal/syncTransportFetch.js"
import type * as Token from "./Token.js"

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
 * The sync endpoints as typed calls: decoded responses or typed errors, never a defect.
 *
 * @since 0.1.0
 * @category services
 */
export class SyncTransport extends Context.Tag("@mizu/client/SyncTransport")<SyncTransport, {
  readonly push: (request: Protocol.PushRequest) => Effect.Effect<Protocol.PushResponse, SyncTransportError>
  readonly pull: (request: Protocol.PullRequest) => Effect.Effect<Protocol.PullResponse, SyncTransportError>
  readonly snapshot: (request: Protocol.SnapshotRequest) => Effect.Effect<Protocol.SnapshotResponse, SyncTransportError>
  /**
   * Optional, for incremental repair: the checksums of key ranges
   * (`POST /_sync/ranges`). Without `ranges` and `rows` a checksum mismatch
   * resets the scope from a snapshot.
   */
  readonly ranges?: (request: Protocol.RangesRequest) => Effect.Effect<Protocol.RangesResponse, SyncTransportError>
  /** Optional, for incremental repair: the rows of a key range (`POST /_sync/rows`). */
  readonly rows?: (request: Protocol.RowsRequest) => Effect.Effect<Protocol.RowsResponse, SyncTransportError>
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

/**
 * Build the `fetch` transport.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeFetch: (options: FetchOptions) => SyncTransport["Type"] = internal.makeFetch

/**
 * The `fetch` transport as a layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerFetch = (options: FetchOptions): Layer.Layer<SyncTransport> =>
  Layer.succeed(SyncTransport, makeFetch(options))
