/**
 * The raw statement path of the SQL storage family: SQL text with
 * positional parameters, run straight on a connection.
 *
 * Invariants:
 * - Inside a transaction a statement runs on the transaction's connection
 *   (`SqlClient.TransactionConnection`) with no `Statement` of `@effect/sql`:
 *   no template compile, no `sql.execute` span, no connection acquire per
 *   statement (statements, not SQL work, are what an operation pays for; the
 *   driver's prepared-statement cache still applies). On our SQLite
 *   connection it runs in the caller's very fiber step (`SqliteDriver.runNow`).
 * - `query` runs a statement and reads its rows in that same step, with
 *   its error mapped there too: an operation of one statement is one step
 *   (plus the step that returns its value), not a chain of `map`,
 *   `mapError` and `flatMap` steps.
 * - Outside one, a statement on Postgres is an ordinary pooled statement; on
 *   SQLite it holds the connection's permit for its whole run, so it never
 *   runs inside another fiber's open transaction (the platform client takes
 *   the permit only to look the connection up).
 * - Every text is normalized once, when a builder is made (`Statements.q`):
 *   one line (the driver's statement cache hashes the text), `?`
 *   placeholders renumbered `$1, $2, …` on Postgres.
 * - An `SqlError` becomes a `StorageError` in one place (`toStorageError`),
 *   and unreadable stored data is `corrupt`, never a defect.
 *
 * @internal
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { SqlError } from "@effect/sql/SqlError"
import type * as SqlConnection from "@effect/sql/SqlConnection"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as StorageError from "../../StorageError.js"
import { SqliteDriver } from "./sqliteDriver.js"

/** What every builder of the family runs its SQL with. */
export interface Statements {
  readonly isPg: boolean
  /** Our SQLite connection (`SqlStorage.layerSqlite`), when the client is ours: its statements and transactions take shortcuts. */
  readonly sqlite: SqliteDriver["Type"] | undefined
  /** SQL text written with `?` placeholders, as the dialect wants it, on one line. */
  readonly q: (text: string) => string
  /** Run one statement (text from `q`): on the transaction's connection, or standalone (see the header). */
  readonly exec: <A extends object>(text: string, params: ReadonlyArray<unknown>) => Effect.Effect<ReadonlyArray<A>, SqlError>
  /**
   * Run one statement (text from `q`) of the operation `what` (e.g.
   * `"Store.get"`) and read its rows with `read`, failing with
   * `toStorageError("<what> failed")` when the statement fails and `corrupt`
   * when `read` throws (rows that are not what we wrote). On our SQLite
   * connection in a transaction the statement, `read` and the error mapping
   * are one fiber step; elsewhere `exec`, then `read`.
   */
  readonly query: <A extends object, B>(
    text: string,
    params: ReadonlyArray<unknown>,
    what: string,
    read: (rows: ReadonlyArray<A>) => B
  ) => Effect.Effect<B, StorageError.StorageError>
  /**
   * Run `use` with a connection of its own until it ends: on SQLite the one
   * connection with its permit held, elsewhere a reserved pool connection.
   */
  /** Whether a fiber of `context` runs statements on our SQLite connection, in its transaction, in its own step (`querySync` then may run). */
  readonly syncIn: (context: Context.Context<never>) => boolean
  /**
   * `query` as a plain call, for a fiber of `context` where `syncIn` holds:
   * its value, or it throws the `StorageError` that `query` fails with.
   */
  readonly querySync: <A extends object, B>(
    text: string,
    params: ReadonlyArray<unknown>,
    what: string,
    read: (rows: ReadonlyArray<A>) => B,
    context: Context.Context<never>
  ) => B
  readonly withConnection: <A, E, R>(
    use: (connection: SqlConnection.Connection) => Effect.Effect<A, E, R>
  ) => Effect.Effect<A, E | SqlError, R>
}

/** The statement path over the `SqlClient` in context (and our `SqliteDriver`, when it is there). */
export const make: Effect.Effect<Statements, never, SqlClient.SqlClient> = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const dialect = sql.onDialectOrElse({
    pg: () => "pg" as const,
    sqlite: () => "sqlite" as const,
    orElse: () => "unsupported" as const
  })
  if (dialect === "unsupported") {
    return yield* Effect.dieMessage("SqlStorage supports the sqlite and pg dialects only")
  }
  const isPg = dialect === "pg"
  // Our SQLite client (layerSqlite): a permit without a Scope. Any other client: `sql.reserve`.
  const found = Option.getOrUndefined(yield* Effect.serviceOption(SqliteDriver))
  const driver = isPg ? undefined : found

  const q = (text: string): string => {
    const compact = text.replace(/\s+/g, " ").trim()
    if (!isPg) return compact
    let n = 0
    return compact.replace(/\?/g, () => `$${++n}`)
  }

  const standalone = <A extends object>(text: string, params: ReadonlyArray<unknown>): Effect.Effect<ReadonlyArray<A>, SqlError> =>
    isPg
      ? sql.unsafe<A>(text, params)
      : driver !== undefined
      ? driver.withPermit(driver.connection.execute(text, params, undefined))
      : Effect.scoped(Effect.flatMap(sql.reserve, (connection) => connection.execute(text, params, undefined)))

  const exec = <A extends object>(text: string, params: ReadonlyArray<unknown>): Effect.Effect<ReadonlyArray<A>, SqlError> =>
    Effect.withFiberRuntime((fiber): Effect.Effect<ReadonlyArray<A>, SqlError> => {
      const current = Context.getOption(fiber.currentContext, SqlClient.TransactionConnection)
      if (Option.isNone(current)) return standalone(text, params)
      const connection = current.value[0]
      // on our SQLite connection, in this very step
      return driver !== undefined && connection === driver.connection
        ? driver.runNow(text, params, fiber.currentContext)
        : connection.execute(text, params, undefined)
    })

  /** Whether a fiber of `context` runs statements on our SQLite connection in its transaction (then `querySync` may run). */
  const syncIn = (context: Context.Context<never>): boolean => {
    if (driver === undefined) return false
    const current = Context.getOption(context, SqlClient.TransactionConnection)
    return Option.isSome(current) && current.value[0] === driver.connection
  }

  // only called where `syncIn` holds, so with our driver
  const runSync: SqliteDriver["Type"]["runSync"] = driver !== undefined
    ? driver.runSync
    : () => {
      throw new SqlError({ cause: undefined, message: "not on SqlStorage's SQLite connection" })
    }

  const querySync = <A extends object, B>(
    text: string,
    params: ReadonlyArray<unknown>,
    what: string,
    read: (rows: ReadonlyArray<A>) => B,
    context: Context.Context<never>
  ): B => {
    let rows: ReadonlyArray<A>
    try {
      rows = runSync(text, params, context) as ReadonlyArray<A>
    } catch (cause) {
      const error = cause instanceof SqlError ? cause : new SqlError({ cause, message: "Failed to execute statement" })
      throw toStorageError(`${what} failed`)(error)
    }
    try {
      return read(rows)
    } catch (cause) {
      throw unreadable(`data (${what})`, cause)
    }
  }

  const query = <A extends object, B>(
    text: string,
    params: ReadonlyArray<unknown>,
    what: string,
    read: (rows: ReadonlyArray<A>) => B
  ): Effect.Effect<B, StorageError.StorageError> =>
    Effect.withFiberRuntime((fiber): Effect.Effect<B, StorageError.StorageError> => {
      if (!syncIn(fiber.currentContext)) {
        return Effect.flatMap(mapSqlError(`${what} failed`)(exec<A>(text, params)), (rows) => decodeRows(`data (${what})`, () => read(rows)))
      }
      try {
        return Effect.succeed(querySync(text, params, what, read, fiber.currentContext))
      } catch (error) {
        return Effect.fail(error as StorageError.StorageError)
      }
    })

  const withConnection = <A, E, R>(
    use: (connection: SqlConnection.Connection) => Effect.Effect<A, E, R>
  ): Effect.Effect<A, E | SqlError, R> =>
    driver !== undefined
      ? driver.withPermit(use(driver.connection))
      : Effect.uninterruptibleMask((restore) =>
        Effect.scoped(Effect.flatMap(sql.reserve, (connection) => restore(use(connection))))
      )

  return { isPg, sqlite: driver, q, exec, query, syncIn, querySync, withConnection }
})

/** How many rows one SQLite multi-row `INSERT` carries at most (at most 8 parameters each: 4,000, far below SQLite's limit of 32,766). */
export const rowsPerInsert = 500

/**
 * A statement text for `rows` rows of `tuple` (`INSERT … VALUES tuple, tuple, …`
 * then `suffix`), normalized by `q`. The texts of up to 64 rows are kept, and
 * the text of a full chunk (`fullChunk` rows: what `chunked` or a caller's
 * own split sends for every chunk but the last), which a large group commit
 * would otherwise build and normalize again for each chunk.
 */
export const multiRow = (
  q: Statements["q"],
  prefix: string,
  tuple: string,
  suffix = "",
  fullChunk: number = rowsPerInsert
): (rows: number) => string => {
  const texts = new Map<number, string>()
  return (rows) => {
    let text = texts.get(rows)
    if (text === undefined) {
      text = q(`${prefix} ${Array.from({ length: rows }, () => tuple).join(", ")} ${suffix}`)
      if (rows <= 64 || rows === fullChunk) texts.set(rows, text)
    }
    return text
  }
}

/** Run one statement per run of at most `rowsPerInsert` of `count` rows, in order: `run(start, end)` for each. */
export const chunked = <E>(
  count: number,
  run: (start: number, end: number) => Effect.Effect<unknown, E>
): Effect.Effect<unknown, E> => {
  if (count <= rowsPerInsert) return run(0, count)
  const chunks: Array<Effect.Effect<unknown, E>> = []
  for (let start = 0; start < count; start += rowsPerInsert) chunks.push(run(start, Math.min(count, start + rowsPerInsert)))
  return Effect.all(chunks, { discard: true })
}

const conflictCodes: ReadonlySet<string> = new Set([
  "40001", // serialization_failure
  "40P01", // deadlock_detected
  "55P03" // lock_not_available
])

const codeOf = (cause: unknown): string | undefined =>
  typeof cause === "object" && cause !== null && "code" in cause && typeof cause.code === "string" ? cause.code : undefined

/**
 * Whether the database refused a value as such: a Postgres data exception
 * (class 22, e.g. 22021 for U+0000 in text) or program limit (54000, e.g. an
 * index row too large), SQLite's SQLITE_TOOBIG.
 */
const isInvalidValue = (code: string): boolean =>
  code.startsWith("22") || code === "54000" || code.startsWith("SQLITE_TOOBIG")

/**
 * Map an `SqlError` to the `StorageError` of the protocol: `conflict` when a
 * retry of the whole transaction may succeed (serialization failure,
 * deadlock, SQLITE_BUSY / SQLITE_LOCKED), `invalid` when the database refused
 * a value (no retry can cure it; see `StorageError`), `unavailable` otherwise.
 */
export const toStorageError = (message: string) => (error: SqlError): StorageError.StorageError => {
  const wrapped = StorageError.fromCause(message)(error)
  const code = codeOf(error.cause)
  if (code === undefined) return wrapped
  if (conflictCodes.has(code) || code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED")) {
    return new StorageError.StorageError({ reason: "conflict", message: wrapped.message, cause: error })
  }
  if (isInvalidValue(code)) {
    return new StorageError.StorageError({ reason: "invalid", message: `${message}: the database cannot store a value (${code})`, cause: error })
  }
  return wrapped
}

/** `Effect.mapError(toStorageError(message))`. */
export const mapSqlError = (message: string) => Effect.mapError(toStorageError(message))

/** Stored data that is not what we wrote: `corrupt`, never a defect. */
const unreadable = (what: string, cause: unknown) =>
  new StorageError.StorageError({ reason: "corrupt", message: `unreadable ${what}`, cause })

/** Parse stored rows; a row that is not what we wrote is `corrupt`, never a defect. */
export const decodeRows = <A>(what: string, f: () => A): Effect.Effect<A, StorageError.StorageError> =>
  Effect.try({ try: f, catch: (cause) => unreadable(what, cause) })

/** Text for a JSON value; `undefined` (not JSON) is stored as `null`. */
export const encodeJson = (data: unknown): string => JSON.stringify(data) ?? "null"

/** Whether an error is an `SqlError` (also when it arrives as a defect). */
export const isSqlError = (u: unknown): u is SqlError => u instanceof SqlError
