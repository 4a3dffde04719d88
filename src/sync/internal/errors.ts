/**
 * How the engine's failures leave it: each kind mapped to its protocol error
 * by its own module (`StorageError.toProtocolError`,
 * `Authorizer.toProtocolError`), storage failures logged and counted, and a
 * transaction that lost a lock conflict retried a few times.
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as Schedule from "effect/Schedule"
import * as Metrics from "../../Metrics.js"
import type { ProtocolError } from "../../protocol/Sync.js"
import * as Authorizer from "../Authorizer.js"
import * as StorageErrors from "../StorageError.js"
import type { StorageError } from "../StorageError.js"

/** Map the engine's internal failures to protocol errors (each kind has one mapping, in its own module). */
const toProtocolError = (e: StorageError | Authorizer.Denied | ProtocolError): ProtocolError =>
  e._tag === "ProtocolError" ? e : e._tag === "Denied" ? Authorizer.toProtocolError(e) : StorageErrors.toProtocolError(e)

/**
 * Log and count a storage failure (the warning annotated with
 * `annotations`, when given), then map every failure to its protocol error;
 * one step on the way out when nothing failed.
 */
export const logStorageError = <A, R>(
  self: Effect.Effect<A, StorageError | Authorizer.Denied | ProtocolError, R>,
  annotations?: Readonly<Record<string, string>>
): Effect.Effect<A, ProtocolError, R> =>
  Effect.catchAll(self, (e) => {
    if (e._tag !== "StorageError") return Effect.fail(toProtocolError(e))
    const warning = Effect.logWarning("storage failure", e.cause ?? e.message)
    return Effect.zipRight(
      Effect.zipRight(annotations === undefined ? warning : Effect.annotateLogs(warning, annotations), Metric.increment(Metrics.storageErrors)),
      Effect.fail(toProtocolError(e))
    )
  })

const isConflict = (e: unknown): boolean =>
  typeof e === "object" && e !== null && "_tag" in e && e._tag === "StorageError" && (e as StorageError).reason === "conflict"

/** After a first lost conflict: up to 4 more attempts, ~10, 20, 40 ms apart, jittered. */
const conflictRetries = Schedule.exponential("10 millis").pipe(Schedule.jittered, Schedule.intersect(Schedule.recurs(3)))

/**
 * A transaction that lost a lock conflict (a Postgres deadlock or
 * serialization failure, SQLITE_BUSY) was rolled back whole, so it is safe
 * to run again; a few jittered retries spare the client a 503. The retry
 * machinery is only set up once a conflict happened.
 */
export const retryConflicts = <A, E>(self: Effect.Effect<A, E | StorageError>): Effect.Effect<A, E | StorageError> =>
  Effect.catchIf(self, isConflict, () =>
    Effect.retry(Effect.delay(self, Duration.millis(5 + Math.random() * 10)), { schedule: conflictRetries, while: isConflict }))

