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

export class StorageError extends Data.TaggedError("StorageError")<{
  readonly reason: "unavailable" | "conflict" | "corrupt" | "invalid"
  readonly message: string
  readonly cause?: unknown
}> {}

/** Wrap any failure (a driver exception, an `SqlError`) as a `StorageError`. */
export const fromCause = (message: string) => (cause: unknown): StorageError =>
  new StorageError({ reason: "unavailable", message, cause })
