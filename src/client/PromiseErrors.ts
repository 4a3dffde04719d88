/**
 * The errors of the Promise API (`MizuSync`, `MizuLive`, `connectPage`):
 * - a failure (a tagged error of the Effect API) becomes the class of its
 *   kind, with `code`, a `reason` and the tagged error itself as `cause`;
 * - a defect or an interruption becomes a `MizuError` (`code: "defect"` or
 *   `"interrupted"`) with the defect, or the interruption's `Cause`, as `cause`.
 *
 * So a Promise of these clients rejects with a `MizuError` and nothing else
 * (one place maps a `Cause`: `internal/promiseErrors.ts`). The Effect API
 * (`SyncClient`, `LiveClient`) keeps its tagged errors; these classes exist
 * only at the Promise boundary.
 *
 * @since 0.1.0
 */
import type * as Protocol from "../protocol/Sync.js"
import type * as Entity from "../sync/Entity.js"
import type * as ClientStorage from "./ClientStorage.js"
import type * as LiveClient from "./LiveClient.js"
import type * as SyncClient from "./SyncClient.js"
import type * as SyncTransport from "./SyncTransport.js"

/**
 * What kind of error a `MizuError` is; each subclass has one code.
 *
 * @since 0.1.0
 * @category models
 */
export type MizuErrorCode = "mutate" | "discard" | "query" | "sync" | "live" | "storage" | "closed" | "defect" | "interrupted"

/**
 * The base of every error a `MizuSync` or `MizuLive` Promise rejects with.
 * Instances of the base class itself are `closed` (the client was closed
 * before the call), `defect` (a bug: `cause` is the thrown value) or
 * `interrupted` (the call was cut short, e.g. by `close()`: `cause` is the
 * interruption's `Cause`).
 *
 * @since 0.1.0
 * @category errors
 */
export class MizuError extends Error {
  override readonly name: string = "MizuError"
  readonly code: MizuErrorCode
  constructor(options: { readonly code: MizuErrorCode; readonly message: string; readonly cause?: unknown }) {
    super(options.message, { cause: options.cause })
    this.code = options.code
  }
}

/** The options of an error of one code with a `reason`. */
interface ReasonOptions<Reason> {
  readonly reason: Reason
  readonly message: string
  readonly cause?: unknown
}

/** A `MizuError` of one `code` that says why with a `reason`. */
type ReasonError<Code extends MizuErrorCode, Reason> = MizuError & { readonly code: Code; readonly reason: Reason }

/** The base class of the errors of one `code` that say why with a `reason` (the tagged error of the Effect API as `cause`). */
const withReason = <const Code extends MizuErrorCode, Reason>(
  code: Code,
  name: string
): new(options: ReasonOptions<Reason>) => ReasonError<Code, Reason> =>
  class extends MizuError {
    override readonly name: string = name
    declare readonly code: Code
    readonly reason: Reason
    constructor(options: ReasonOptions<Reason>) {
      super({ code, message: options.message, cause: options.cause })
      this.reason = options.reason
    }
  }

/**
 * A mutation refused before it was queued (`cause`: the Effect API's
 * `SyncClient.MutateError`). `reason`: the mutation is not in the registry,
 * its args do not decode, its scope is invalid, or its handler rejected it
 * locally.
 *
 * @since 0.1.0
 * @category errors
 */
export class MutateError extends withReason<"mutate", SyncClient.MutateError["reason"]>("mutate", "MutateError") {}

/**
 * `discard` found nothing to drop (`cause`: the Effect API's
 * `SyncClient.DiscardError`). `reason`: `not_pending` (no such pending
 * mutation) or `accepted` (the server already applied it).
 *
 * @since 0.1.0
 * @category errors
 */
export class DiscardError extends withReason<"discard", SyncClient.DiscardError["reason"]>("discard", "DiscardError") {}

/**
 * A query read a row that does not decode with its entity, or an entity
 * outside the registry (`cause`: the `EntityError`).
 *
 * @since 0.1.0
 * @category errors
 */
export class QueryError extends withReason<"query", Entity.EntityError["reason"]>("query", "QueryError") {}

/**
 * Why a push, pull or sync failed: a transport reason, the server's
 * protocol error code, or the client's own.
 *
 * @since 0.1.0
 * @category models
 */
export type SyncErrorReason = SyncTransport.TransportError["reason"] | Protocol.ErrorCode | SyncClient.SyncError["reason"]

/**
 * A push, pull or sync that did not complete (`cause`: the Effect API's
 * `TransportError`, `ProtocolError` or `SyncClient.SyncError`). The queue is
 * kept: the background work retries what is retryable by itself.
 *
 * @since 0.1.0
 * @category errors
 */
export class SyncError extends withReason<"sync", SyncErrorReason>("sync", "SyncError") {
  /** The HTTP status, when the server answered. */
  readonly status: number | undefined
  constructor(options: ReasonOptions<SyncErrorReason> & { readonly status?: number }) {
    super(options)
    this.status = options.status
  }
}

/**
 * A live request that could not be completed (`cause`: the Effect API's
 * `LiveClient.LiveError`).
 *
 * @since 0.1.0
 * @category errors
 */
export class LiveError extends withReason<"live", LiveClient.LiveError["reason"]>("live", "LiveError") {}

/**
 * The client's local storage failed (`cause`: the Effect API's
 * `ClientStorage.ClientStorageError`); nothing was committed.
 *
 * @since 0.1.0
 * @category errors
 */
export class ClientStorageError extends withReason<"storage", ClientStorage.ClientStorageError["reason"]>("storage", "ClientStorageError") {}
