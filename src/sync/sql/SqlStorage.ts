/**
 * The SQL storage family: `ChangeLog`, `Store`, `Clients` and `SyncStorage`
 * written once over `@effect/sql`'s `SqlClient`, running on SQLite
 * (`@effect/sql-sqlite-node`) and PostgreSQL (`@effect/sql-pg`).
 *
 * Invariants, and why the code is shaped as it is:
 * - **Gap-free cursors across processes.** `append` bumps the scope's head row
 *   with one upsert (`INSERT … ON CONFLICT (scope) DO UPDATE SET head = head + n
 *   RETURNING head`) and inserts the changes `head-n+1 … head`. On Postgres
 *   the upsert holds the head row's lock until the transaction ends, so a
 *   later writer of the scope waits and commits after it: cursors become
 *   visible in order and a reader never sees a gap fill in behind it. SQLite
 *   has one writer. On Postgres the upsert and the insert are one statement
 *   (a data-modifying CTE), so a standalone `append` needs no transaction.
 * - **Few statements, run cheaply.** Statements, not SQL work, are the cost
 *   here (each is a round trip on Postgres; on SQLite a statement takes
 *   ~2 µs in better-sqlite3 and ~35 µs through `@effect/sql`'s `Statement`:
 *   its `sql.execute` span, template compile and connection acquire), so each
 *   operation is as few statements as the dialect allows — `append` of any
 *   number of changes is 1 on Postgres (arrays through `unnest`), 2 on SQLite;
 *   `Clients.record` / `recordAll` 1 on Postgres, 2 on SQLite (recordAll:
 *   still 1 on Postgres when some mutations failed and are remembered, 4 on
 *   SQLite; a push whose mutations all succeeded writes no failure row);
 *   `Clients.lastId` and `Clients.claim` 1 (an upsert that locks the client's row) — and inside a
 *   transaction each runs as SQL text straight on the transaction's
 *   connection (`exec`; the driver's prepared-statement cache still applies).
 *   Tracing keeps the engine's spans, not one per statement.
 * - **Per-client serialization and ownership.** Inside a transaction
 *   `Clients.claim` (and `lastId`) is `INSERT … ON CONFLICT (client_id) DO
 *   UPDATE SET owner = COALESCE(owner, excluded.owner) RETURNING last, owner`:
 *   on Postgres it takes the client's row lock (also when the row is new:
 *   a concurrent inserter waits for the first), so concurrent pushes of one
 *   client run one after the other and see each other's `last`, and of two
 *   principals claiming a fresh id the second sees the first's committed
 *   owner (or, if the first rolled back, becomes the owner itself).
 * - **Transactions.** A top-level `transaction` does what `sql.withTransaction`
 *   does (reserve the connection, BEGIN, provide it as
 *   `SqlClient.TransactionConnection` so `sql` statements inside join it,
 *   COMMIT or ROLLBACK) without its span; a nested one is a savepoint that is
 *   RELEASEd on success (`@effect/sql` leaves them open, which makes a
 *   1,000-mutation request quadratic). `readConsistent` is one transaction,
 *   REPEATABLE READ and READ ONLY on Postgres; nested in a transaction it
 *   simply joins it.
 * - **SQLite's one connection.** `layerSqlite` runs on `SqliteDriver` (built
 *   like `@effect/sql-sqlite-node`'s client, with a cheaper statement path,
 *   see there); both guard their single
 *   connection with a one-permit semaphore: a transaction holds the permit
 *   from BEGIN to COMMIT/ROLLBACK, so transactions of different fibers are
 *   serialized, never interleaved (a reader waits for a writer's commit). A
 *   standalone statement, by the client's code, takes the permit only to
 *   look the connection up and runs after releasing it; were its fiber
 *   descheduled in between, it could run inside another fiber's open
 *   transaction (a stress test did not hit that window). Standalone
 *   statements here therefore hold the permit for their whole run
 *   (`SqliteDriver.withPermit`, or `sql.reserve` on another client), and standalone multi-statement operations
 *   run in a transaction of their own. Across processes, SQLite gives one
 *   writer and `busy_timeout`; a contended deferred transaction that read
 *   before writing fails with SQLITE_BUSY, surfaced as `conflict`.
 * - **Errors.** Every `SqlError` becomes a `StorageError` (reason `conflict`
 *   for serialization failures, deadlocks and SQLITE_BUSY, which a retry can
 *   cure; `unavailable` otherwise), including a failed COMMIT (then rolled
 *   back: SQLite keeps a transaction open after a busy COMMIT). Unreadable
 *   stored JSON is `corrupt`.
 * - **JSON** is stored as text (`JSON.stringify` / `JSON.parse`) so the same
 *   code runs on both databases; `data` is `NULL` for a delete.
 *
 * @since 0.1.0
 */
import * as NodeFs from "node:fs/promises"
import * as NodePath from "node:path"
import * as SqlClient from "@effect/sql/SqlClient"
import { SqlError } from "@effect/sql/SqlError"
import type * as SqlConnection from "@effect/sql/SqlConnection"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberRef from "effect/FiberRef"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import { type Change, type ChangeOp, getOwn, setOwn, type SnapshotData } from "../../protocol/Sync.js"
import { ChangeLog, type ChangeInput, retentionTrimPoint } from "../ChangeLog.js"
import * as Clients from "../Clients.js"
import * as ConnectionUrl from "../ConnectionUrl.js"
import * as StorageError from "../StorageError.js"
import { Store } from "../Store.js"
import { type Services, SyncStorage } from "../SyncStorage.js"
import * as Migrations from "./Migrations.js"
import * as SqliteDriver from "./SqliteDriver.js"

/** Options of the SQL storage family (with `Clients.Options`: how many failed mutations per client are remembered). */
export interface Options extends Clients.Options {
  /**
   * Keep at most this many changes per scope. When an append takes a scope
   * past it, the oldest changes are trimmed (in the append's transaction)
   * down to 90% of it, so trimming runs once every ~N/10 appends rather than
   * on each. Readers behind the trimmed part get `cursor_too_old` and reset
   * from a snapshot. Unset (the default): keep everything.
   */
  readonly maxChangesPerScope?: number | undefined
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

const corrupt = (message: string, cause: unknown) => new StorageError.StorageError({ reason: "corrupt", message, cause })

/** Set while running a `readConsistent` unit: `Clients.lastId` must not write there (Postgres: READ ONLY). */
const consistentRead = FiberRef.unsafeMake(false)

interface HeadRow {
  readonly head: number | string
  readonly floor: number | string
}

interface ChangeRow {
  readonly cursor: number | string
  readonly entity: string
  readonly id: string
  readonly op: string
  readonly data: string | null
  readonly ts: string
}

interface DataRow {
  readonly entity: string
  readonly id: string
  readonly data: string
}

const isOp = (op: string): op is ChangeOp => op === "create" || op === "update" || op === "delete"

const toChange = (scope: string, row: ChangeRow): Change => {
  if (!isOp(row.op)) throw new Error(`unknown op ${JSON.stringify(row.op)} at cursor ${row.cursor}`)
  const base = { cursor: Number(row.cursor), scope, entity: row.entity, id: row.id, op: row.op, ts: row.ts }
  return row.data === null ? base : { ...base, data: JSON.parse(row.data) }
}

/** Text for a JSON value; `undefined` (not JSON) is stored as `null`. */
const encode = (data: unknown): string => JSON.stringify(data) ?? "null"

/** How many change rows one SQLite `INSERT` carries at most (7 parameters each, far below SQLite's limit). */
const rowsPerInsert = 500

/**
 * Build the four storage services over the `SqlClient` in context. Supports
 * the `sqlite` and `pg` dialects (the SQL uses `ON CONFLICT` and `RETURNING`).
 * Expects the schema of `Migrations` to be in place.
 */
export const make = (options: Options = {}): Effect.Effect<Context.Context<Services>, never, SqlClient.SqlClient> =>
  Effect.gen(function*() {
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
    const maxChanges = options.maxChangesPerScope
    if (maxChanges !== undefined && (!Number.isSafeInteger(maxChanges) || maxChanges < 1)) {
      return yield* Effect.dieMessage(`maxChangesPerScope must be a positive integer, got ${maxChanges}`)
    }
    const remembered = yield* Clients.rememberedFailuresOf(options)

    // Our SQLite client (layerSqlite): a permit without a Scope. Any other client: `sql.reserve`.
    const driver = Option.getOrUndefined(yield* Effect.serviceOption(SqliteDriver.SqliteDriver))
    const currentTransaction = Effect.serviceOption(SqlClient.TransactionConnection)
    const inTransaction: Effect.Effect<boolean> = Effect.map(currentTransaction, Option.isSome)

    /**
     * SQL text written with `?` placeholders, as the dialect wants it (`$1, $2, …`
     * on Postgres), on one line: the driver's statement cache hashes the text.
     */
    const q = (text: string): string => {
      const compact = text.replace(/\s+/g, " ").trim()
      if (!isPg) return compact
      let n = 0
      return compact.replace(/\?/g, () => `$${++n}`)
    }

    /**
     * Run one statement (text from `q`, positional parameters). In a
     * transaction it goes straight to the transaction's connection: no
     * `Statement`, so no template compile, `sql.execute` span or connection
     * acquire per statement (see the header). Outside one: on Postgres an
     * ordinary pooled statement; on SQLite the connection is reserved (its
     * permit held) for the statement's whole run.
     */
    const exec = <A extends object>(text: string, params: ReadonlyArray<unknown>): Effect.Effect<ReadonlyArray<A>, SqlError> =>
      Effect.withFiberRuntime((fiber): Effect.Effect<ReadonlyArray<A>, SqlError> => {
        const current = Context.getOption(fiber.currentContext, SqlClient.TransactionConnection)
        if (Option.isSome(current)) {
          const connection = current.value[0]
          // on our SQLite connection, in this very step
          return driver !== undefined && connection === driver.connection
            ? driver.runNow(text, params, fiber.currentContext)
            : connection.execute(text, params, undefined)
        }
        return isPg
          ? sql.unsafe<A>(text, params)
          : driver !== undefined
          ? driver.withPermit(driver.connection.execute(text, params, undefined))
          : Effect.scoped(Effect.flatMap(sql.reserve, (connection) => connection.execute(text, params, undefined)))
      })

    const mapSqlError = (message: string) => Effect.mapError(toStorageError(message))

    /** Parse stored rows; a row that is not what we wrote is `corrupt`, never a defect. */
    const decode = <A>(what: string, f: () => A): Effect.Effect<A, StorageError.StorageError> =>
      Effect.try({ try: f, catch: (cause) => corrupt(`unreadable ${what}`, cause) })

    // ---------------------------------------------------------------------
    // SyncStorage (the transactions first: the services below use `atomic`)

    /**
     * A top-level transaction on a reserved connection (on SQLite: the
     * connection's permit, held until COMMIT/ROLLBACK). What
     * `sql.withTransaction` does, minus its span and with prepared
     * BEGIN/COMMIT; the connection is provided as
     * `SqlClient.TransactionConnection`, so `sql` statements and
     * `sql.withTransaction` inside join it. A failed COMMIT is rolled back
     * (SQLite keeps the transaction open after a busy COMMIT) and fails.
     */
    const onConnection = <A, E, R>(
      connection: SqlConnection.Connection,
      unit: Effect.Effect<A, E, R>
    ): Effect.Effect<A, E | SqlError, R> =>
      Effect.uninterruptibleMask((restore) => {
        const run = (statement: string) => connection.execute(statement, [], undefined)
        const rollback = run("ROLLBACK")
        return Effect.zipRight(
          run("BEGIN"),
          Effect.flatMap(
            Effect.exit(restore(Effect.provideService(unit, SqlClient.TransactionConnection, [connection, 0] as const))),
            (exit): Effect.Effect<A, E | SqlError> =>
              Exit.isSuccess(exit)
                ? Effect.as(Effect.tapError(run("COMMIT"), () => Effect.ignore(rollback)), exit.value)
                : Effect.zipRight(rollback, exit)
          )
        )
      })
    const topLevel = <A, E, R>(unit: Effect.Effect<A, E, R>): Effect.Effect<A, E | SqlError, R> =>
      driver !== undefined && !isPg
        ? driver.withPermit(onConnection(driver.connection, unit))
        : Effect.uninterruptibleMask((restore) =>
          Effect.scoped(Effect.flatMap(sql.reserve, (connection) => onConnection(connection, restore(unit))))
        )

    /**
     * A savepoint inside the current transaction, RELEASEd when the unit
     * succeeds. `sql.withTransaction` never releases its savepoints, so a
     * request of 1,000 mutations would stack 1,000 open savepoints, and both
     * Postgres (subtransaction stack) and SQLite (sub-journal checks) slow
     * down with the depth: measured on Postgres, 2,000 unreleased savepoints
     * each followed by an upsert of one row cost 4.3 ms per step against
     * 0.8 ms when released.
     */
    const savepoint = <A, E, R>(
      current: readonly [connection: SqlConnection.Connection, depth: number],
      unit: Effect.Effect<A, E, R>
    ): Effect.Effect<A, E | SqlError, R> => {
      const [connection, depth] = current
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

    const transaction = <A, E, R>(unit: Effect.Effect<A, E, R>): Effect.Effect<A, E | StorageError.StorageError, R> =>
      Effect.flatMap(
        currentTransaction,
        (current): Effect.Effect<A, E | SqlError, R> => Option.isSome(current) ? savepoint(current.value, unit) : topLevel(unit)
      ).pipe(
        // A failed COMMIT or ROLLBACK inside `sql.withTransaction` is a defect in @effect/sql; still "storage unavailable" to us.
        Effect.catchSomeDefect((defect) => defect instanceof SqlError ? Option.some(Effect.fail(defect)) : Option.none()),
        Effect.mapError((e): E | StorageError.StorageError => e instanceof SqlError ? toStorageError("transaction failed")(e) : e)
      )

    /** Several statements as one atomic step: joins the current transaction or opens one. */
    const atomic = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E | SqlError, R> =>
      Effect.flatMap(currentTransaction, (current) => Option.isSome(current) ? self : topLevel(self))

    const setSnapshot: Effect.Effect<void, StorageError.StorageError> = isPg
      ? exec("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY", []).pipe(
        Effect.asVoid,
        mapSqlError("readConsistent failed")
      )
      : Effect.void

    const readConsistent = <A, E, R>(unit: Effect.Effect<A, E, R>): Effect.Effect<A, E | StorageError.StorageError, R> =>
      Effect.flatMap(inTransaction, (inTx) =>
        inTx
          ? unit
          : transaction(Effect.zipRight(setSnapshot, Effect.locally(unit, consistentRead, true))))

    const storage = SyncStorage.of({ transaction, readConsistent })

    // ---------------------------------------------------------------------
    // ChangeLog

    const trimText = q(`UPDATE mizu_heads
      SET floor = CASE WHEN ? < head THEN ? ELSE head END
      WHERE scope = ? AND floor < CASE WHEN ? < head THEN ? ELSE head END
      RETURNING floor`)
    const deleteTrimmedText = q("DELETE FROM mizu_changes WHERE scope = ? AND cursor <= ?")

    /** Raise the floor to `target` (capped at the head) and drop the changes up to it. */
    const trimTo = (scope: string, upTo: number): Effect.Effect<void, SqlError> =>
      Effect.flatMap(exec<{ readonly floor: number | string }>(trimText, [upTo, upTo, scope, upTo, upTo]), (rows) => {
        const row = rows[0]
        return row === undefined ? Effect.void : Effect.asVoid(exec(deleteTrimmedText, [scope, Number(row.floor)]))
      })

    /** The retention rule after an append that left the scope at `head` / `floor`. */
    const retain = (scope: string, head: number, floor: number): Effect.Effect<void, SqlError> => {
      const upTo = maxChanges === undefined ? undefined : retentionTrimPoint(maxChanges, head, floor)
      return upTo === undefined ? Effect.void : atomic(trimTo(scope, upTo))
    }

    const dataOf = (input: ChangeInput): string | null =>
      input.op === "delete" || input.data === undefined ? null : encode(input.data)

    // Postgres: the head bump and the rows are one statement (a data-modifying CTE over arrays, so the
    // text and the number of parameters are the same for any number of rows).
    const appendPgText = q(`WITH h AS (
        INSERT INTO mizu_heads (scope, head, floor) VALUES (?, ?, 0)
        ON CONFLICT (scope) DO UPDATE SET head = mizu_heads.head + excluded.head
        RETURNING head, floor
      ), c AS (
        INSERT INTO mizu_changes (scope, cursor, entity, id, op, data, ts)
        SELECT ?, h.head - ?::bigint + v.ord, v.entity, v.id, v.op, v.data, ?
        FROM h, unnest(?::text[], ?::text[], ?::text[], ?::text[]) WITH ORDINALITY AS v (entity, id, op, data, ord)
      )
      SELECT head, floor FROM h`)
    const bumpHeadText = q(`INSERT INTO mizu_heads (scope, head, floor) VALUES (?, ?, 0)
      ON CONFLICT (scope) DO UPDATE SET head = mizu_heads.head + excluded.head
      RETURNING head, floor`)
    const insertChangesTexts = new Map<number, string>()
    const insertChangesText = (rows: number): string => {
      let text = insertChangesTexts.get(rows)
      if (text === undefined) {
        text = `INSERT INTO mizu_changes (scope, cursor, entity, id, op, data, ts) VALUES ${
          Array.from({ length: rows }, () => "(?, ?, ?, ?, ?, ?, ?)").join(", ")
        }`
        if (rows <= 64) insertChangesTexts.set(rows, text)
      }
      return text
    }

    /** Bump the head and insert the rows; returns the new head and the floor. */
    const appendRows = (scope: string, inputs: ReadonlyArray<ChangeInput>, ts: string): Effect.Effect<HeadRow, SqlError> => {
      const n = inputs.length
      if (isPg) {
        return Effect.map(
          exec<HeadRow>(appendPgText, [
            scope,
            n,
            scope,
            n,
            ts,
            inputs.map((input) => input.entity),
            inputs.map((input) => input.id),
            inputs.map((input) => input.op),
            inputs.map(dataOf)
          ]),
          (rows) => rows[0] ?? { head: 0, floor: 0 }
        )
      }
      return Effect.flatMap(exec<HeadRow>(bumpHeadText, [scope, n]), (rows) => {
        const row = rows[0] ?? { head: 0, floor: 0 }
        const first = Number(row.head) - n + 1
        const chunks: Array<Effect.Effect<ReadonlyArray<object>, SqlError>> = []
        for (let start = 0; start < n; start += rowsPerInsert) {
          const end = Math.min(n, start + rowsPerInsert)
          const params: Array<unknown> = []
          for (let i = start; i < end; i++) {
            const input = inputs[i]
            params.push(scope, first + i, input.entity, input.id, input.op, dataOf(input), ts)
          }
          chunks.push(exec(insertChangesText(end - start), params))
        }
        return Effect.as(chunks.length === 1 ? chunks[0] : Effect.all(chunks, { discard: true }), row)
      })
    }

    const append = (scope: string, inputs: ReadonlyArray<ChangeInput>): Effect.Effect<ReadonlyArray<Change>, StorageError.StorageError> => {
      if (inputs.length === 0) return Effect.succeed([])
      const ts = new Date().toISOString()
      const n = inputs.length
      const written = Effect.flatMap(inTransaction, (inTx): Effect.Effect<number, SqlError> => {
        const body = Effect.flatMap(appendRows(scope, inputs, ts), (row) => {
          const head = Number(row.head)
          return Effect.as(retain(scope, head, Number(row.floor)), head)
        })
        // Postgres: the append is one statement, atomic on its own (retention, if due, is its own transaction).
        return inTx || isPg ? body : topLevel(body)
      })
      return written.pipe(
        Effect.map((head) =>
          inputs.map((input, i): Change => {
            const base = { cursor: head - n + 1 + i, scope, entity: input.entity, id: input.id, op: input.op, ts }
            return input.op === "delete" || input.data === undefined ? base : { ...base, data: input.data }
          })
        ),
        mapSqlError("ChangeLog.append failed")
      )
    }

    const sinceText = q(`SELECT cursor, entity, id, op, data, ts FROM mizu_changes
      WHERE scope = ? AND cursor > ?
      ORDER BY cursor
      LIMIT ?`)

    const since = (scope: string, cursor: number, limit: number) =>
      exec<ChangeRow>(sinceText, [scope, cursor, Math.max(0, limit) + 1]).pipe(
        mapSqlError("ChangeLog.since failed"),
        Effect.flatMap((rows) =>
          decode("change", () => {
            const hasMore = rows.length > limit
            const page = hasMore ? rows.slice(0, Math.max(0, limit)) : rows
            return { changes: page.map((row) => toChange(scope, row)), hasMore }
          })
        )
      )

    const headText = q("SELECT head, floor FROM mizu_heads WHERE scope = ?")
    const headRow = (scope: string) => Effect.map(exec<HeadRow>(headText, [scope]), (rows) => rows[0])

    // Postgres: an upsert that changes nothing but takes the head row's lock (creating the row if needed).
    const lockHeadText = q(`INSERT INTO mizu_heads (scope, head, floor) VALUES (?, 0, 0)
      ON CONFLICT (scope) DO UPDATE SET head = mizu_heads.head`)

    const changeLog = ChangeLog.of({
      append,
      since,
      head: (scope) =>
        headRow(scope).pipe(
          Effect.map((row) => row === undefined ? 0 : Number(row.head)),
          mapSqlError("ChangeLog.head failed")
        ),
      floor: (scope) =>
        headRow(scope).pipe(
          Effect.map((row) => row === undefined ? 0 : Number(row.floor)),
          mapSqlError("ChangeLog.floor failed")
        ),
      trim: (scope, upTo) => atomic(trimTo(scope, upTo)).pipe(mapSqlError("ChangeLog.trim failed")),
      // SQLite: one writer at a time already.
      lockScopes: (scopes) =>
        isPg
          ? Effect.forEach(scopes, (scope) => exec(lockHeadText, [scope]), { discard: true }).pipe(
            mapSqlError("ChangeLog.lockScopes failed")
          )
          : Effect.void
    })

    // ---------------------------------------------------------------------
    // Store

    const getText = q("SELECT data FROM mizu_entities WHERE scope = ? AND entity = ? AND id = ?")
    const putText = q(`INSERT INTO mizu_entities (scope, entity, id, data) VALUES (?, ?, ?, ?)
      ON CONFLICT (scope, entity, id) DO UPDATE SET data = excluded.data`)
    const deleteText = q("DELETE FROM mizu_entities WHERE scope = ? AND entity = ? AND id = ? RETURNING id")
    const listText = q("SELECT id, data FROM mizu_entities WHERE scope = ? AND entity = ? ORDER BY id")
    const snapshotText = q("SELECT entity, id, data FROM mizu_entities WHERE scope = ? ORDER BY entity, id")

    const store = Store.of({
      get: (scope, entity, id) =>
        exec<{ readonly data: string }>(getText, [scope, entity, id]).pipe(
          mapSqlError("Store.get failed"),
          Effect.flatMap((rows) => {
            const row = rows[0]
            return row === undefined ? Effect.succeedNone : decode("entity", () => Option.some<unknown>(JSON.parse(row.data)))
          })
        ),
      put: (scope, entity, id, data) =>
        exec(putText, [scope, entity, id, encode(data)]).pipe(
          Effect.asVoid,
          mapSqlError("Store.put failed")
        ),
      delete: (scope, entity, id) =>
        exec<{ readonly id: string }>(deleteText, [scope, entity, id]).pipe(
          Effect.map((rows) => rows.length > 0),
          mapSqlError("Store.delete failed")
        ),
      list: (scope, entity) =>
        exec<{ readonly id: string; readonly data: string }>(listText, [scope, entity]).pipe(
          mapSqlError("Store.list failed"),
          Effect.flatMap((rows) =>
            decode("entity", () => rows.map((row): readonly [string, unknown] => [row.id, JSON.parse(row.data)]))
          )
        ),
      snapshot: (scope) =>
        exec<DataRow>(snapshotText, [scope]).pipe(
          mapSqlError("Store.snapshot failed"),
          Effect.flatMap((rows) =>
            decode("entity", () => {
              const out: Record<string, Record<string, unknown>> = {}
              for (const row of rows) {
                let byId = getOwn(out, row.entity)
                if (byId === undefined) {
                  byId = {}
                  setOwn(out, row.entity, byId)
                }
                // own properties: an id "__proto__" is a row like any other, never a prototype
                setOwn(byId, row.id, JSON.parse(row.data))
              }
              return out satisfies SnapshotData
            })
          )
        )
    })

    // ---------------------------------------------------------------------
    // Clients

    type LastRow = { readonly last: number | string }
    const lastLockedText = q(`INSERT INTO mizu_clients (client_id, last) VALUES (?, 0)
      ON CONFLICT (client_id) DO UPDATE SET last = mizu_clients.last
      RETURNING last`)
    const lastPlainText = q("SELECT last FROM mizu_clients WHERE client_id = ?")
    // Like lastLockedText (the row lock), and the owner is set only where there is none yet.
    const claimText = q(`INSERT INTO mizu_clients (client_id, last, owner) VALUES (?, 0, ?)
      ON CONFLICT (client_id) DO UPDATE SET owner = COALESCE(mizu_clients.owner, excluded.owner)
      RETURNING last, owner`)
    const ownerText = q("SELECT owner FROM mizu_clients WHERE client_id = ?")
    const lastForScopeText = q("SELECT last FROM mizu_client_scopes WHERE client_id = ? AND scope = ?")
    const recordClientSql = `INSERT INTO mizu_clients (client_id, last) VALUES (?, ?)
      ON CONFLICT (client_id) DO UPDATE
      SET last = CASE WHEN excluded.last > mizu_clients.last THEN excluded.last ELSE mizu_clients.last END`
    const scopesUpsert = `ON CONFLICT (client_id, scope) DO UPDATE
      SET last = CASE WHEN excluded.last > mizu_client_scopes.last THEN excluded.last ELSE mizu_client_scopes.last END`
    // Postgres: both tables in one statement, the scopes as arrays (one text for any number of scopes).
    const recordPgText = q(`WITH c AS (${recordClientSql})
      INSERT INTO mizu_client_scopes (client_id, scope, last)
      SELECT ?, v.scope, v.last FROM unnest(?::text[], ?::bigint[]) AS v (scope, last)
      ${scopesUpsert}`)
    const recordClientText = q(recordClientSql)
    const recordScopesTexts = new Map<number, string>()
    const recordScopesText = (rows: number): string => {
      let text = recordScopesTexts.get(rows)
      if (text === undefined) {
        text = q(`INSERT INTO mizu_client_scopes (client_id, scope, last) VALUES ${
          Array.from({ length: rows }, () => "(?, ?, ?)").join(", ")
        } ${scopesUpsert}`)
        if (rows <= 64) recordScopesTexts.set(rows, text)
      }
      return text
    }

    // Remembered failures (`Clients`): only failed mutations are written, and the client's oldest beyond
    // the window are deleted in the same step. New failures have ids above every remembered one.
    const failuresUpsert = `ON CONFLICT (client_id, id) DO UPDATE SET code = excluded.code, message = excluded.message`
    // Postgres: the ledger and the failures in one statement. The DELETE and the INSERT see the same
    // snapshot, so the DELETE keeps the newest (window - new) rows below the first new id.
    const recordWithFailuresPgText = q(`WITH c AS (${recordClientSql}),
      s AS (
        INSERT INTO mizu_client_scopes (client_id, scope, last)
        SELECT ?, v.scope, v.last FROM unnest(?::text[], ?::bigint[]) AS v (scope, last)
        ${scopesUpsert}
      ), d AS (
        DELETE FROM mizu_client_failures
        WHERE client_id = ? AND id < ? AND id <= (
          SELECT f.id FROM mizu_client_failures f WHERE f.client_id = ? AND f.id < ?
          ORDER BY f.id DESC LIMIT 1 OFFSET ?
        )
      )
      INSERT INTO mizu_client_failures (client_id, id, code, message)
      SELECT ?, v.id, v.code, v.message FROM unnest(?::bigint[], ?::text[], ?::text[]) AS v (id, code, message)
      ${failuresUpsert}`)
    const insertFailuresTexts = new Map<number, string>()
    const insertFailuresText = (rows: number): string => {
      let text = insertFailuresTexts.get(rows)
      if (text === undefined) {
        text = q(`INSERT INTO mizu_client_failures (client_id, id, code, message) VALUES ${
          Array.from({ length: rows }, () => "(?, ?, ?, ?)").join(", ")
        } ${failuresUpsert}`)
        if (rows <= 64) insertFailuresTexts.set(rows, text)
      }
      return text
    }
    // SQLite: after the insert, drop every row older than the window's newest `remembered`.
    const forgetFailuresText = q(`DELETE FROM mizu_client_failures WHERE client_id = ? AND id <= (
      SELECT id FROM mizu_client_failures WHERE client_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)`)
    const failuresText = q("SELECT id, code, message FROM mizu_client_failures WHERE client_id = ? AND id >= ? AND id <= ?")

    interface Failed {
      readonly id: number
      readonly failure: Clients.Failure
    }

    /** SQLite: remember failures (ascending ids, at most the window) and forget the oldest beyond it. */
    const rememberSqlite = (clientId: string, failed: ReadonlyArray<Failed>): Effect.Effect<void, SqlError> => {
      const inserts: Array<Effect.Effect<ReadonlyArray<object>, SqlError>> = []
      for (let start = 0; start < failed.length; start += rowsPerInsert) {
        const end = Math.min(failed.length, start + rowsPerInsert)
        const params: Array<unknown> = []
        for (let i = start; i < end; i++) params.push(clientId, failed[i].id, failed[i].failure.code, failed[i].failure.message)
        inserts.push(exec(insertFailuresText(end - start), params))
      }
      return Effect.zipRight(Effect.all(inserts, { discard: true }), exec(forgetFailuresText, [clientId, clientId, remembered]))
    }

    /** Record processed ids: the client's last id and each scope's (both only move up), and the failures to remember. */
    const recordLast = (
      clientId: string,
      last: number,
      scopes: ReadonlyMap<string, number>,
      failed: ReadonlyArray<Failed> = []
    ): Effect.Effect<void, SqlError> => {
      if (isPg) {
        const scopeParams = [clientId, last, clientId, [...scopes.keys()], [...scopes.values()]]
        if (failed.length === 0) return Effect.asVoid(exec(recordPgText, scopeParams))
        const first = failed[0].id
        return Effect.asVoid(exec(recordWithFailuresPgText, [
          ...scopeParams,
          clientId,
          first,
          clientId,
          first,
          remembered - failed.length,
          clientId,
          failed.map((f) => f.id),
          failed.map((f) => f.failure.code),
          failed.map((f) => f.failure.message)
        ]))
      }
      const params: Array<unknown> = []
      for (const [scope, id] of scopes) params.push(clientId, scope, id)
      const ledger = Effect.asVoid(Effect.zipRight(exec(recordClientText, [clientId, last]), exec(recordScopesText(scopes.size), params)))
      return atomic(failed.length === 0 ? ledger : Effect.zipRight(ledger, rememberSqlite(clientId, failed)))
    }

    type FailureRow = { readonly id: number | string; readonly code: string; readonly message: string }

    const clients = Clients.Clients.of({
      lastId: (clientId) =>
        Effect.flatMap(currentTransaction, (current) =>
          Effect.flatMap(FiberRef.get(consistentRead), (reading) =>
            exec<LastRow>(Option.isSome(current) && !reading ? lastLockedText : lastPlainText, [clientId]))).pipe(
            Effect.map((rows) => rows[0] === undefined ? 0 : Number(rows[0].last)),
            mapSqlError("Clients.lastId failed")
          ),
      claim: (clientId, owner) =>
        exec<LastRow & { readonly owner: string | null }>(claimText, [clientId, owner ?? null]).pipe(
          Effect.map((rows) => {
            const row = rows[0]
            return row === undefined ? { owner, last: 0 } : { owner: row.owner ?? undefined, last: Number(row.last) }
          }),
          mapSqlError("Clients.claim failed")
        ),
      ownerOf: (clientId) =>
        exec<{ readonly owner: string | null }>(ownerText, [clientId]).pipe(
          Effect.map((rows) => rows[0]?.owner ?? undefined),
          mapSqlError("Clients.ownerOf failed")
        ),
      lastIdForScope: (clientId, scope) =>
        exec<LastRow>(lastForScopeText, [clientId, scope]).pipe(
          Effect.map((rows) => rows[0] === undefined ? 0 : Number(rows[0].last)),
          mapSqlError("Clients.lastIdForScope failed")
        ),
      recordAll: (clientId, processed) => {
        if (processed.length === 0) return Effect.void
        let last = processed[0].id
        const scopes = new Map<string, number>()
        const failed: Array<Failed> = []
        for (const { failure, id, scope } of processed) {
          if (id > last) last = id
          const known = scopes.get(scope)
          if (known === undefined || id > known) scopes.set(scope, id)
          if (failure !== undefined && remembered > 0) failed.push({ id, failure })
        }
        // ascending ids, and only the newest `remembered` of them: older ones would be forgotten at once
        failed.sort((a, b) => a.id - b.id)
        const kept = failed.length > remembered ? failed.slice(failed.length - remembered) : failed
        return recordLast(clientId, last, scopes, kept).pipe(mapSqlError("Clients.recordAll failed"))
      },
      failures: (clientId, ids) => {
        if (ids.length === 0 || remembered === 0) return Effect.succeed(new Map<number, Clients.Failure>())
        let low = ids[0]
        let high = ids[0]
        for (const id of ids) {
          if (id < low) low = id
          if (id > high) high = id
        }
        return exec<FailureRow>(failuresText, [clientId, low, high]).pipe(
          mapSqlError("Clients.failures failed"),
          Effect.flatMap((rows) =>
            decode("remembered failure", () => {
              const wanted = new Set(ids)
              const found = new Map<number, Clients.Failure>()
              for (const row of rows) {
                const id = Number(row.id)
                if (!wanted.has(id)) continue
                if (!Clients.isFailureCode(row.code)) throw new Error(`unknown failure code ${JSON.stringify(row.code)}`)
                found.set(id, { code: row.code, message: row.message })
              }
              return found
            })
          )
        )
      }
    })

    return Context.make(SyncStorage, storage).pipe(
      Context.add(ChangeLog, changeLog),
      Context.add(Store, store),
      Context.add(Clients.Clients, clients)
    )
  })

/**
 * The four storage services over the `SqlClient` in context, with the given
 * options. The schema must already be migrated (`Migrations.runSqlite` /
 * `Migrations.runPg`; `layerSqlite` and `layerPg` do it).
 */
export const layerWith = (options: Options): Layer.Layer<Services, never, SqlClient.SqlClient> =>
  Layer.effectContext(make(options))

/** The four storage services over the `SqlClient` in context (keeps every change). */
export const layer: Layer.Layer<Services, never, SqlClient.SqlClient> = layerWith({})

/** Options of `layerSqlite`. */
export interface SqliteOptions extends Options {
  /** A file path (its directory is created if missing) or `":memory:"`. */
  readonly filename: string
  /** How long a write waits for another process's lock before failing (default 5 seconds). */
  readonly busyTimeout?: Duration.DurationInput | undefined
  /** `PRAGMA synchronous` (default `NORMAL`: durable across crashes of the process, WAL-safe). */
  readonly synchronous?: "OFF" | "NORMAL" | "FULL" | "EXTRA" | undefined
}

const isFileName = (filename: string) => filename !== ":memory:" && filename !== "" && !filename.startsWith("file:")

/**
 * SQLite storage: opens the database (WAL journal, `synchronous = NORMAL`,
 * a busy timeout), migrates it, and provides the four storage services plus
 * the `SqlClient` / `SqliteClient` they run on. Meant for one process per
 * database file; use Postgres to run several servers.
 */
export const layerSqlite = (
  options: SqliteOptions
): Layer.Layer<Services | SqlClient.SqlClient | SqliteClient.SqliteClient, StorageError.StorageError> => {
  const directory = isFileName(options.filename)
    ? Layer.effectDiscard(Effect.tryPromise({
      try: () => NodeFs.mkdir(NodePath.dirname(options.filename), { recursive: true }),
      catch: StorageError.fromCause(`cannot create the directory of ${options.filename}`)
    }))
    : Layer.empty
  const client = SqliteDriver.layer({ filename: options.filename }).pipe(Layer.orDie, Layer.provide(directory))
  const setup = Layer.effectDiscard(Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const busy = Math.round(Duration.toMillis(Duration.decode(options.busyTimeout ?? "5 seconds")))
    yield* sql.unsafe(`PRAGMA busy_timeout = ${busy}`).pipe(mapSetupError)
    yield* sql.unsafe(`PRAGMA synchronous = ${options.synchronous ?? "NORMAL"}`).pipe(mapSetupError)
    yield* Migrations.runSqlite
  }))
  return layerWith(options).pipe(Layer.provide(setup), Layer.provideMerge(client))
}

const mapSetupError = Effect.mapError(toStorageError("cannot configure the database"))

/** Options of `layerPg`: the `PgClient` options, and the family's own. */
export interface PgOptions extends PgClient.PgClientConfig, Options {}

/**
 * Postgres storage: connects a pool, migrates (safe from several processes at
 * once), and provides the four storage services plus the `SqlClient` /
 * `PgClient` they run on (for example for a LISTEN/NOTIFY `LivePubSub`).
 * Fails with a `StorageError` when the database cannot be reached; its
 * message names the URL with the password as `***` (never the password).
 * A connection attempt gives up after `connectTimeout` (10 seconds unless
 * given), so requests during an outage answer `503 unavailable` instead of
 * waiting for the pool forever.
 */
export const layerPg = (
  options: PgOptions
): Layer.Layer<Services | SqlClient.SqlClient | PgClient.PgClient, StorageError.StorageError> =>
  layerWith(options).pipe(
    Layer.provide(Migrations.layerPg),
    Layer.provideMerge(PgClient.layer({ connectTimeout: "10 seconds", ...options }).pipe(Layer.mapError(toStorageError(`cannot connect to Postgres at ${pgTarget(options)}`))))
  )

/** Where a Postgres client connects, for messages: the URL with its password as `***`, or host, port and database. */
const pgTarget = (options: PgClient.PgClientConfig): string =>
  options.url !== undefined
    ? ConnectionUrl.redact(Redacted.value(options.url))
    : `${options.host ?? "localhost"}:${options.port ?? 5432}/${options.database ?? ""}`
