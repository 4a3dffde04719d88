/**
 * The one place that runs an Effect of the clients to a Promise and maps
 * its `Cause` to the Promise API's errors (`PromiseErrors`): a Promise of
 * the clients rejects with a `MizuError` and nothing else.
 *
 * @since 0.1.0
 * @internal
 */
import * as Cause from "effect/Cause"
import type * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as ManagedRuntime from "effect/ManagedRuntime"
import * as Option from "effect/Option"
import type * as Protocol from "../../protocol/Sync.js"
import type * as Entity from "../../sync/Entity.js"
import type * as ClientStorage from "../ClientStorage.js"
import type * as LiveClient from "../LiveClient.js"
import {
  ClientStorageError,
  DiscardError,
  LiveError,
  MizuError,
  MutateError,
  QueryError,
  SyncError
} from "../PromiseErrors.js"
import type * as SyncClient from "../SyncClient.js"
import type * as SyncTransport from "../SyncTransport.js"

/**
 * Every failure of the Effect API a Promise of the clients may see.
 */
export type Failure =
  | SyncClient.MutateError
  | SyncClient.DiscardError
  | Entity.EntityError
  | SyncClient.SyncError
  | SyncTransport.TransportError
  | Protocol.ProtocolError
  | ClientStorage.ClientStorageError
  | LiveClient.LiveError

/**
 * The Promise API's error for a failure of the Effect API: the class of its
 * kind, with the failure itself as `cause`.
 */
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
const fromCause = (cause: Cause.Cause<Failure>): MizuError => {
  // `originalError`: inside a span Effect wraps errors in a Proxy; `cause` is the instance that was thrown or failed with
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) return fromFailure(Cause.originalError(failure.value))
  if (Cause.isInterruptedOnly(cause)) return new MizuError({ code: "interrupted", message: "the operation was interrupted", cause })
  const defect = Cause.originalError(Cause.squash(cause))
  return new MizuError({ code: "defect", message: `unexpected error: ${defect instanceof Error ? defect.message : String(defect)}`, cause: defect })
}

/**
 * The error of a call on a closed client (`code: "closed"`).
 */
export const closed = (what: string): MizuError => new MizuError({ code: "closed", message: `${what} is closed` })

/**
 * Run an effect on a client runtime: resolves with its value, or rejects
 * with a `MizuError` and nothing else (see the module comment).
 */
export const runPromise = <A, E extends Failure, R>(
  runtime: ManagedRuntime.ManagedRuntime<R, Failure>,
  effect: Effect.Effect<A, E, R>
): Promise<A> =>
  runtime.runPromiseExit(effect).then((exit) => Exit.isSuccess(exit) ? exit.value : Promise.reject(fromCause(exit.cause)))
