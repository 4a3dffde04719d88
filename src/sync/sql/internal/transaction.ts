/**
 * The transaction combinator of the SQL storage family: what
 * `sql.withTransaction` of `@effect/sql` does (`makeWithTransaction` in its
 * `internal/client.ts`), with savepoints that are released.
 *
 * Invariants:
 * - A top-level transaction holds its own connection from BEGIN to
 *   COMMIT/ROLLBACK (on SQLite the one connection's permit, so transactions
 *   of different fibers are serialized, never interleaved). The connection
 *   is provided as `SqlClient.TransactionConnection`, so statements of the
 *   family and `sql` statements or `sql.withTransaction` inside join it.
 * - A nested transaction is a savepoint, RELEASEd when its unit succeeds
 *   and rolled back to (then released) when it fails: its failure undoes
 *   only its own writes. `@effect/sql` never releases its savepoints, and
 *   both databases slow down with the depth of open ones, which would make
 *   a request of many mutations quadratic.
 * - BEGIN, COMMIT, ROLLBACK and the savepoint statements are uninterruptible;
 *   the unit itself is interruptible, and an interrupted unit rolls back.
 * - A failed COMMIT is rolled back (SQLite keeps a transaction open after a
 *   busy COMMIT) and fails the transaction.
 * - On our SQLite connection (`SqlStorage.layerSqlite`) a top-level
 *   transaction is `SqliteDriver.transaction`: the same steps, with BEGIN,
 *   COMMIT or ROLLBACK and the context's change run in the fiber steps
 *   around the unit (a small push is a few dozen steps fewer).
 * - No span of its own: the engine's spans (`SyncEngine.push`,
 *   `SyncEngine.mutation`) are the trace, with the same shape on every layer.
 *
 * @internal
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import type * as SqlConnection from "@effect/sql/SqlConnection"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberRef from "effect/FiberRef"
import * as Option from "effect/Option"
import type * as StorageError from "../../StorageError.js"
import { isSqlError, mapSqlError, type Statements, toStorageError } from "./statements.js"

/** The transactions of one storage family, over its statements. */
export interface Transactions {
  /** `SyncStorage.transaction`: all or nothing; nested, a released savepoint. */
  readonly transaction: <A, E, R>(unit: Effect.Effect<A, E, R>) => Effect.Effect<A, E | StorageError.StorageError, R>
  /** `SyncStorage.readConsistent`: one snapshot (Postgres: REPEATABLE READ, READ ONLY); nested, joins the transaction. */
  readonly readConsistent: <A, E, R>(unit: Effect.Effect<A, E, R>) => Effect.Effect<A, E | StorageError.StorageError, R>
  /**
   * Several statements of the operation `what` as one atomic step: joins the
   * current transaction, or opens one (failing `"<what> failed"` when it cannot).
   */
  readonly atomic: <A, E, R>(self: Effect.Effect<A, E, R>, what: string) => Effect.Effect<A, E | StorageError.StorageError, R>
  /** Whether a transaction is open. */
  readonly inTransaction: Effect.Effect<boolean>
  /** Whether a statement may take write locks: in a transaction that is not a `readConsistent` one. */
  readonly mayLock: Effect.Effect<boolean>
}

type Current = readonly [connection: SqlConnection.Connection, depth: number]

/** Set while running a `readConsistent` unit: nothing may write there (Postgres: READ ONLY). */
const consistentRead = FiberRef.unsafeMake(false)

const currentTransaction = (context: Context.Context<never>): Option.Option<Current> =>
  Context.getOption(context, SqlClient.TransactionConnection)

/** BEGIN, the unit on the connection, then COMMIT (rolled back if it fails) or ROLLBACK. */
const topLevel = <A, E, R>(connection: SqlConnection.Connection, unit: Effect.Effect<A, E, R>): Effect.Effect<A, E | SqlError, R> =>
  Effect.uninterruptibleMask((restore) => {
    const run = (statement: string) => connection.execute(statement, [], undefined)
    const rollback = run("ROLLBACK")
    const inner = Effect.provideService(unit, SqlClient.TransactionConnection, [connection, 0] as const)
    return Effect.zipRight(
      run("BEGIN"),
      Effect.flatMap(
        Effect.exit(restore(inner)),
        (exit): Effect.Effect<A, E | SqlError> =>
          Exit.isSuccess(exit)
            ? Effect.as(Effect.tapError(run("COMMIT"), () => Effect.ignore(rollback)), exit.value)
            : Effect.zipRight(rollback, exit)
      )
    )
  })

/** A savepoint one level below `current`, RELEASEd on success, rolled back to and released on failure. */
const savepoint = <A, E, R>([connection, depth]: Current, unit: Effect.Effect<A, E, R>): Effect.Effect<A, E | SqlError, R> => {
  const name = `mizu_savepoint_${depth + 1}`
  const run = (statement: string) => connection.execute(statement, [], undefined)
  const inner = Effect.provideService(unit, SqlClient.TransactionConnection, [connection, depth + 1] as const)
  return Effect.uninterruptibleMask((restore) =>
    Effect.zipRight(
      run(`SAVEPOINT ${name}`),
      Effect.flatMap(Effect.exit(restore(inner)), (exit) =>
        Effect.zipRight(
          Exit.isSuccess(exit)
            ? run(`RELEASE SAVEPOINT ${name}`)
            : Effect.zipRight(run(`ROLLBACK TO SAVEPOINT ${name}`), run(`RELEASE SAVEPOINT ${name}`)),
          exit
        ))
    )
  )
}

/** The transactions over a family's statements. */
export const make = (statements: Statements): Transactions => {
  /** The combinator: a savepoint inside a transaction, else a top-level one on a connection of its own. */
  const withTransaction = <A, E, R>(unit: Effect.Effect<A, E, R>): Effect.Effect<A, E | SqlError, R> =>
    Effect.withFiberRuntime((fiber) => {
      const current = currentTransaction(fiber.currentContext)
      return Option.isSome(current)
        ? savepoint(current.value, unit)
        : statements.sqlite !== undefined
        ? statements.sqlite.transaction(unit)
        : statements.withConnection((connection) => topLevel(connection, unit))
    })

  /** A failed statement as a `StorageError`, also a failed COMMIT or ROLLBACK inside `sql.withTransaction` (a defect in @effect/sql). */
  const storageCause = <E>(cause: Cause.Cause<E | SqlError>): Effect.Effect<never, E | StorageError.StorageError> => {
    const defect = Cause.find(cause, (reason) => reason._tag === "Die" && isSqlError(reason.defect) ? Option.some(reason.defect) : Option.none())
    if (Option.isSome(defect)) return Effect.fail(toStorageError("transaction failed")(defect.value))
    return Effect.failCause(Cause.map(cause, (e): E | StorageError.StorageError => isSqlError(e) ? toStorageError("transaction failed")(e) : e))
  }

  const transaction = <A, E, R>(unit: Effect.Effect<A, E, R>): Effect.Effect<A, E | StorageError.StorageError, R> =>
    Effect.catchAllCause(withTransaction(unit), storageCause)

  const atomic = <A, E, R>(self: Effect.Effect<A, E, R>, what: string): Effect.Effect<A, E | StorageError.StorageError, R> =>
    Effect.withFiberRuntime((fiber) =>
      Option.isSome(currentTransaction(fiber.currentContext))
        ? self
        : Effect.mapError(withTransaction(self), (e): E | StorageError.StorageError => isSqlError(e) ? toStorageError(`${what} failed`)(e) : e)
    )

  const inTransaction: Effect.Effect<boolean> = Effect.withFiberRuntime((fiber) =>
    Effect.succeed(Option.isSome(currentTransaction(fiber.currentContext)))
  )

  const mayLock: Effect.Effect<boolean> = Effect.withFiberRuntime((fiber) =>
    Effect.succeed(Option.isSome(currentTransaction(fiber.currentContext)) && !fiber.getFiberRef(consistentRead))
  )

  const setSnapshot: Effect.Effect<void, StorageError.StorageError> = statements.isPg
    ? statements.exec("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY", []).pipe(
      Effect.asVoid,
      mapSqlError("readConsistent failed")
    )
    : Effect.void

  const readConsistent = <A, E, R>(unit: Effect.Effect<A, E, R>): Effect.Effect<A, E | StorageError.StorageError, R> =>
    Effect.flatMap(inTransaction, (inTx) =>
      inTx
        ? unit
        : transaction(Effect.zipRight(setSnapshot, Effect.locally(unit, consistentRead, true))))

  return { transaction, readConsistent, atomic, inTransaction, mayLock }
}
