/**
 * The one error storage layers fail with. The engine maps it to
 * `503 unavailable`: the request was not applied and may be retried —
 * except `invalid`: the database refused a value itself (a string it cannot
 * hold, a key too large for its index), which no retry can cure; inside a
 * mutation that mutation fails with `invalid_args`, elsewhere the request
 * with `400 invalid_request`.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"
import { ProtocolError } from "../protocol/Sync.js"

/**
 * What a storage layer fails with: nothing of the unit was applied.
 * `conflict` may succeed on a retry of the whole transaction, `invalid` never
 * (the database refused a value), `corrupt` is stored data that does not read.
 *
 * @since 0.1.0
 * @category errors
 */
export class StorageError extends Data.TaggedError("StorageError")<{
  readonly reason: "unavailable" | "conflict" | "corrupt" | "invalid"
  readonly message: string
  readonly cause?: unknown
}> {}

/**
 * Wrap any failure (a driver exception, an `SqlError`) as a `StorageError`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromCause = (message: string) => (cause: unknown): StorageError =>
  new StorageError({ reason: "unavailable", message, cause })

/**
 * The protocol error a `StorageError` answers with, the one mapping used by
 * every route and session: `invalid` is `invalid_request` (a retry fails the
 * same way), anything else `unavailable` (nothing was applied; retry).
 *
 * @since 0.1.0
 * @category conversions
 */
export const toProtocolError = (error: StorageError): ProtocolError =>
  error.reason === "invalid"
    ? new ProtocolError({ code: "invalid_request", message: "the database cannot store a value of this request" })
    : new ProtocolError({ code: "unavailable", message: "storage unavailable, retry later" })
