/**
 * The errors of the Promise API (`MizuSync`, `MizuLive`), and the one place
 * that runs an Effect of the clients to a Promise and maps its `Cause`:
 * - a failure (a tagged error of the Effect API) becomes the class of its
 *   kind, with `code`, a `reason` and the tagged error itself as `cause`;
 * - a defect or an interruption becomes a `MizuError` (`code: "defect"` or
 *   `"interrupted"`) with the defect, or the interruption's `Cause`, as `cause`.
 *
 * So a Promise of these clients rejects with a `MizuError` and nothing else.
 * The Effect API (`SyncClient`, `LiveClient`) keeps its tagged errors; these
 * classes exist only at the Promise boundary.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import type * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as ManagedRuntime from "effect/ManagedRuntime"
import * as Option from "effect/Option"
import type * as Protocol from "../protocol/Sync.js"
import type * as Entity from "../sync/Entity.js"
import type * as ClientStorage from "./ClientStorage.js"
import type * as LiveClient from "./LiveClient.js"
import type * as SyncClient from "./SyncClient.js"
import type * as SyncTransport from "./SyncTransport.js"

/** What kind of error a `MizuError` is; each subclass has one code. */
export type MizuErrorCode = "mutate" | "discard" | "query" | "sync" | "live" | "storage" | "closed" | "defect" | "interrupted"

/**
 * The base of every error a `MizuSync` or `MizuLive` Promise rejects with.
 * Instances of the base class itself are `closed` (the client was closed
 * before the call), `defect` (a bug: `cause` is the thrown value) or
 * `interrupted` (the call was cut short, e.g. by `close()`: `cause` is the
 * interruption's `Cause`).
 */
export class MizuError extends Error {
  override readonly name: string = "MizuError"
  readonly code: MizuErrorCode
  constructor(options: { readonly code: MizuErrorCode; readonly message: string; readonly cause?: unknown }) {
    super(options.message, { cause: options.cause })
    this.code = options.code
  }
}

/** A mutation refused before it was queued (`cause`: the Effect API's `SyncClient.MutateError`). */
export class MutateError extends MizuError {
  override readonly name: string = "MutateError"
  declare readonly code: "mutate"
  /** Why: the mutation is not in the registry, its args do not decode, its scope is invalid, or its handler rejected it locally. */
  readonly reason: SyncClient.MutateError["reason"]
  constructor(options: { readonly reason: SyncClient.MutateError["reason"]; readonly message: string; readonly cause?: unknown }) {
    super({ code: "mutate", message: options.message, cause: options.cause })
    this.reason = options.reason
  }
}

/** `discard` found nothing to drop (`cause`: the Effect API's `SyncClient.DiscardError`). */
export class DiscardError extends MizuError {
  override readonly name: string = "DiscardError"
  declare readonly code: "discard"
  /** `not_pending`: no such pending mutation; `accepted`: the server already applied it. */
  readonly reason: SyncClient.DiscardError["reason"]
  constructor(options: { readonly reason: SyncClient.DiscardError["reason"]; readonly message: string; readonly cause?: unknown }) {
    super({ code: "discard", message: options.message, cause: options.cause })
    this.reason = options.reason
  }
}

/** A query read a row that does not decode with its entity, or an entity outside the registry (`cause`: the `EntityError`). */
export class QueryError extends MizuError {
  override readonly name: string = "QueryError"
  declare readonly code: "query"
  readonly reason: Entity.EntityError["reason"]
  constructor(options: { readonly reason: Entity.EntityError["reason"]; readonly message: string; readonly cause?: unknown }) {
    super({ code: "query", message: options.message, cause: options.cause })
    this.reason = options.reason
  }
}

/** Why a push, pull or sync failed: a transport reason, the server's protocol error code, or the client's own. */
export type SyncErrorReason = SyncTransport.TransportError["reason"] | Protocol.ErrorCode | SyncClient.SyncError["reason"]

/**
 * A push, pull or sync that did not complete (`cause`: the Effect API's
 * `TransportError`, `ProtocolError` or `SyncClient.SyncError`). The queue is
 * kept: the background work retries what is retryable by itself.
 */
export class SyncError extends MizuError {
  override readonly name: string = "SyncError"
  declare readonly code: "sync"
  readonly reason: SyncErrorReason
  /** The HTTP status, when the server answered. */
  readonly status: number | undefined
  constructor(options: { readonly reason: SyncErrorReason; readonly message: string; readonly status?: number; readonly cause?: unknown }) {
    super({ code: "sync", message: options.message, cause: options.cause })
    this.reason = options.reason
    this.status = options.status
  }
}

/** A live request that could not be completed (`cause`: the Effect API's `LiveClient.LiveError`). */
export class LiveError extends MizuError {
  override readonly name: string = "LiveError"
  declare readonly code: "live"
  readonly reason: LiveClient.LiveError["reason"]
  constructor(options: { readonly reason: LiveClient.LiveError["reason"]; readonly message: string; readonly cause?: unknown }) {
    super({ code: "live", message: options.message, cause: options.cause })
    this.reason = options.reason
  }
}

/** The client's local storage failed (`cause`: the Effect API's `ClientStorage.ClientStorageError`); nothing was committed. */
export class ClientStorageError extends MizuError {
  override readonly name: string = "ClientStorageError"
  declare readonly code: "storage"
  readonly reason: ClientStorage.ClientStorageError["reason"]
  constructor(options: { readonly reason: ClientStorage.ClientStorageError["reason"]; readonly message: string; readonly cause?: unknown }) {
    super({ code: "storage", message: options.message, cause: options.cause })
    this.reason = options.reason
  }
}

/** Every failure of the Effect API a Promise of the clients may see. */
export type Failure =
  | SyncClient.MutateError
  | SyncClient.DiscardError
  | Entity.EntityError
  | SyncClient.SyncError
  | SyncTransport.TransportError
  | Protocol.ProtocolError
  | ClientStorage.ClientStorageError
  | LiveClient.LiveError

/** The Promise API's error for a failure of the Effect API. */
export const fromFailure = (error: Failure): MizuError => {
  switch (error._tag) {
    case "MutateError":
      return new MutateError({ reason: error.reason, message: error.message, cause: error })
    case "DiscardError":
      return new DiscardError({ reason: error.reason, message: error.message, cause: error })
    case "EntityError":
      return new QueryError({ reason: error.reason, message: error.message, cause: error })
    case "SyncError":
      return new SyncError({ reason: error.reason, message: error.message, cause: error })
    case "TransportError":
      return new SyncError({ reason: error.reason, message: error.message, ...(error.status === undefined ? {} : { status: error.status }), cause: error })
    case "ProtocolError":
      return new SyncError({ reason: error.code, message: error.message, status: error.status, cause: error })
    case "ClientStorageError":
      return new ClientStorageError({ reason: error.reason, message: error.message, cause: error })
    case "LiveError":
      return new LiveError({ reason: error.reason, message: error.message, cause: error })
  }
}

/** The Promise API's error for a whole `Cause`: its first failure, else its interruption or defect. */
export const fromCause = (cause: Cause.Cause<Failure>): MizuError => {
  // `originalError`: inside a span Effect wraps errors in a Proxy; `cause` is the instance that was thrown or failed with
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) return fromFailure(Cause.originalError(failure.value))
  if (Cause.isInterruptedOnly(cause)) return new MizuError({ code: "interrupted", message: "the operation was interrupted", cause })
  const defect = Cause.originalError(Cause.squash(cause))
  return new MizuError({ code: "defect", message: `unexpected error: ${defect instanceof Error ? defect.message : String(defect)}`, cause: defect })
}

/** The error of a call on a closed client. */
export const closed = (what: string): MizuError => new MizuError({ code: "closed", message: `${what} is closed` })

/** Run an effect on a client runtime: its value, or a rejection with a `MizuError` (see the module comment). */
export const runPromise = <A, E extends Failure, R>(
  runtime: ManagedRuntime.ManagedRuntime<R, Failure>,
  effect: Effect.Effect<A, E, R>
): Promise<A> =>
  runtime.runPromiseExit(effect).then((exit) => Exit.isSuccess(exit) ? exit.value : Promise.reject(fromCause(exit.cause)))
