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
 * - **Few statements.** Statements, not SQL work, are the cost here (each is
 *   a round trip on Postgres and ~40 µs of Effect plumbing on SQLite), so each
 *   operation is as few statements as the dialect allows: `append` is 1 on
 *   Postgres, 2 on SQLite; `Clients.record` is 1 on Postgres, 2 on SQLite;
 *   `Clients.lastId` is 1 (an upsert that locks the client's row).
 * - **Per-client serialization.** Inside a transaction `Clients.lastId` is
 *   `INSERT … ON CONFLICT (client_id) DO UPDATE SET last = last RETURNING last`:
 *   on Postgres it takes the client's row lock (also when the row is new:
 *   a concurrent inserter waits for the first), so concurrent pushes of one
 *   client run one after the other and see each other's `last`.
 * - **Transactions.** `transaction` is `sql.withTransaction`; a nested one is
 *   a savepoint that is RELEASEd on success (`@effect/sql` leaves them open,
 *   which makes a 1,000-mutation request quadratic). `readConsistent` is one transaction, REPEATABLE READ and
 *   READ ONLY on Postgres; nested in a transaction it simply joins it.
 * - **SQLite's one connection.** `@effect/sql-sqlite-node` guards its single
 *   connection with a one-permit semaphore: a transaction holds the permit
 *   from BEGIN to COMMIT/ROLLBACK, so transactions of different fibers are
 *   serialized, never interleaved (a reader waits for a writer's commit). A
 *   standalone statement, by the client's code, takes the permit only to
 *   look the connection up and runs after releasing it; were its fiber
 *   descheduled in between, it could run inside another fiber's open
 *   transaction (a stress test did not hit that window). Standalone
 *   statements here therefore hold the permit for their whole run
 *   (`sql.reserve`, same cost), and standalone multi-statement operations
 *   run in a transaction of their own. Across processes, SQLite gives one
 *   writer and `busy_timeout`; a contended deferred transaction that read
 *   before writing fails with SQLITE_BUSY, surfaced as `conflict`.
 * - **Errors.** Every `SqlError` becomes a `StorageError` (reason `conflict`
 *   for serialization failures, deadlocks and SQLITE_BUSY, which a retry can
 *   cure; `unavailable` otherwise), including a failed COMMIT, which
 *   `@effect/sql` reports as a defect. Unreadable stored JSON is `corrupt`.
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
import type * as Statement from "@effect/sql/Statement"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberRef from "effect/FiberRef"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type { Change, ChangeOp, SnapshotData } from "../../protocol/Sync.js"
import { ChangeLog, type ChangeInput } from "../ChangeLog.js"
import { Clients } from "../Clients.js"
import * as StorageError from "../StorageError.js"
import { Store } from "../Store.js"
import { type Services, SyncStorage } from "../SyncStorage.js"
import * as Migrations from "./Migrations.js"

/** Options of the SQL storage family. */
export interface Options {
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
 * Map an `SqlError` to the `StorageError` of the protocol: `conflict` when a
 * retry of the whole transaction may succeed (serialization failure,
 * deadlock, SQLITE_BUSY / SQLITE_LOCKED), `unavailable` otherwise.
 */
export const toStorageError = (message: string) => (error: SqlError): StorageError.StorageError => {
  const wrapped = StorageError.fromCause(message)(error)
  const code = codeOf(error.cause)
  return code !== undefined && (conflictCodes.has(code) || code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED"))
    ? new StorageError.StorageError({ reason: "conflict", message: wrapped.message, cause: error })
    : wrapped
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
    /** How many changes a trim keeps: 90% of the maximum (at least 1). */
    const keepAfterTrim = maxChanges === undefined ? 0 : Math.max(1, maxChanges - Math.floor(maxChanges / 10))

    const inTransaction: Effect.Effect<boolean> = Effect.map(
      Effect.serviceOption(SqlClient.TransactionConnection),
      Option.isSome
    )

    /**
     * Run one statement. On SQLite outside a transaction, hold the
     * connection's permit for the statement's whole run (see the header).
     */
    const run = <A extends object>(statement: Statement.Statement<A>): Effect.Effect<ReadonlyArray<A>, SqlError> =>
      isPg ? statement : Effect.flatMap(inTransaction, (inTx) =>
        inTx ? statement : Effect.scoped(Effect.flatMap(sql.reserve, (connection): Effect.Effect<ReadonlyArray<A>, SqlError> => {
          const [text, params] = statement.compile()
          return connection.execute(text, params, undefined)
        })))

    /** Several statements as one atomic step: joins the current transaction or opens one. */
    const atomic = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E | SqlError, R> =>
      Effect.flatMap(inTransaction, (inTx) => inTx ? self : sql.withTransaction(self))

    const mapSqlError = (message: string) => Effect.mapError(toStorageError(message))

    /** Parse stored rows; a row that is not what we wrote is `corrupt`, never a defect. */
    const decode = <A>(what: string, f: () => A): Effect.Effect<A, StorageError.StorageError> =>
      Effect.try({ try: f, catch: (cause) => corrupt(`unreadable ${what}`, cause) })

    // ---------------------------------------------------------------------
    // ChangeLog

    /** Raise the floor to `target` (capped at the head) and drop the changes up to it. */
    const trimTo = (scope: string, upTo: number): Effect.Effect<void, SqlError> =>
      Effect.flatMap(
        sql<{ readonly floor: number | string }>`UPDATE mizu_heads
          SET floor = CASE WHEN ${upTo} < head THEN ${upTo} ELSE head END
          WHERE scope = ${scope} AND floor < CASE WHEN ${upTo} < head THEN ${upTo} ELSE head END
          RETURNING floor`,
        (rows) => {
          const row = rows[0]
          return row === undefined
            ? Effect.void
            : sql`DELETE FROM mizu_changes WHERE scope = ${scope} AND cursor <= ${Number(row.floor)}`
        }
      )

    /** The retention rule after an append that left the scope at `head` / `floor`. */
    const retain = (scope: string, head: number, floor: number): Effect.Effect<void, SqlError> =>
      maxChanges === undefined || head - floor <= maxChanges ? Effect.void : atomic(trimTo(scope, head - keepAfterTrim))

    /** Bump the head and insert the rows; returns the new head and the floor. */
    const appendRows = (scope: string, inputs: ReadonlyArray<ChangeInput>, ts: string): Effect.Effect<HeadRow, SqlError> => {
      const n = inputs.length
      if (isPg) {
        const values = sql.csv(inputs.map((input, i) =>
          sql`(${i + 1}::int, ${input.entity}::text, ${input.id}::text, ${input.op}::text, ${
            input.op === "delete" || input.data === undefined ? null : encode(input.data)
          }::text)`
        ))
        return Effect.map(
          sql<HeadRow>`WITH h AS (
            INSERT INTO mizu_heads (scope, head, floor) VALUES (${scope}, ${n}, 0)
            ON CONFLICT (scope) DO UPDATE SET head = mizu_heads.head + excluded.head
            RETURNING head, floor
          ), c AS (
            INSERT INTO mizu_changes (scope, cursor, entity, id, op, data, ts)
            SELECT ${scope}, h.head - ${n} + v.ord, v.entity, v.id, v.op, v.data, ${ts}
            FROM h, (VALUES ${values}) AS v (ord, entity, id, op, data)
          )
          SELECT head, floor FROM h`,
          (rows) => rows[0] ?? { head: 0, floor: 0 }
        )
      }
      return Effect.flatMap(
        sql<HeadRow>`INSERT INTO mizu_heads (scope, head, floor) VALUES (${scope}, ${n}, 0)
          ON CONFLICT (scope) DO UPDATE SET head = mizu_heads.head + excluded.head
          RETURNING head, floor`,
        (rows) => {
          const row = rows[0] ?? { head: 0, floor: 0 }
          const head = Number(row.head)
          return Effect.as(
            sql`INSERT INTO mizu_changes ${
              sql.insert(inputs.map((input, i) => ({
                scope,
                cursor: head - n + 1 + i,
                entity: input.entity,
                id: input.id,
                op: input.op,
                data: input.op === "delete" || input.data === undefined ? null : encode(input.data),
                ts
              })))
            }`,
            row
          )
        }
      )
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
        return inTx || isPg ? body : sql.withTransaction(body)
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

    const since = (scope: string, cursor: number, limit: number) =>
      run(sql<ChangeRow>`SELECT cursor, entity, id, op, data, ts FROM mizu_changes
        WHERE scope = ${scope} AND cursor > ${cursor}
        ORDER BY cursor
        LIMIT ${Math.max(0, limit) + 1}`).pipe(
        mapSqlError("ChangeLog.since failed"),
        Effect.flatMap((rows) =>
          decode("change", () => {
            const hasMore = rows.length > limit
            const page = hasMore ? rows.slice(0, Math.max(0, limit)) : rows
            return { changes: page.map((row) => toChange(scope, row)), hasMore }
          })
        )
      )

    const headRow = (scope: string) =>
      Effect.map(run(sql<HeadRow>`SELECT head, floor FROM mizu_heads WHERE scope = ${scope}`), (rows) => rows[0])

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
      // Postgres: an upsert that changes nothing but takes the head row's lock (creating the row if needed).
      // SQLite: one writer at a time already.
      lockScopes: (scopes) =>
        isPg
          ? Effect.forEach(
            scopes,
            (scope) =>
              sql`INSERT INTO mizu_heads (scope, head, floor) VALUES (${scope}, 0, 0)
                ON CONFLICT (scope) DO UPDATE SET head = mizu_heads.head`,
            { discard: true }
          ).pipe(mapSqlError("ChangeLog.lockScopes failed"))
          : Effect.void
    })

    // ---------------------------------------------------------------------
    // Store

    const store = Store.of({
      get: (scope, entity, id) =>
        run(sql<{ readonly data: string }>`SELECT data FROM mizu_entities
          WHERE scope = ${scope} AND entity = ${entity} AND id = ${id}`).pipe(
          mapSqlError("Store.get failed"),
          Effect.flatMap((rows) => {
            const row = rows[0]
            return row === undefined ? Effect.succeedNone : decode("entity", () => Option.some<unknown>(JSON.parse(row.data)))
          })
        ),
      put: (scope, entity, id, data) =>
        run(sql`INSERT INTO mizu_entities (scope, entity, id, data) VALUES (${scope}, ${entity}, ${id}, ${encode(data)})
          ON CONFLICT (scope, entity, id) DO UPDATE SET data = excluded.data`).pipe(
          Effect.asVoid,
          mapSqlError("Store.put failed")
        ),
      delete: (scope, entity, id) =>
        run(sql<{ readonly id: string }>`DELETE FROM mizu_entities
          WHERE scope = ${scope} AND entity = ${entity} AND id = ${id}
          RETURNING id`).pipe(
          Effect.map((rows) => rows.length > 0),
          mapSqlError("Store.delete failed")
        ),
      list: (scope, entity) =>
        run(sql<{ readonly id: string; readonly data: string }>`SELECT id, data FROM mizu_entities
          WHERE scope = ${scope} AND entity = ${entity}
          ORDER BY id`).pipe(
          mapSqlError("Store.list failed"),
          Effect.flatMap((rows) =>
            decode("entity", () => rows.map((row): readonly [string, unknown] => [row.id, JSON.parse(row.data)]))
          )
        ),
      snapshot: (scope) =>
        run(sql<DataRow>`SELECT entity, id, data FROM mizu_entities WHERE scope = ${scope} ORDER BY entity, id`).pipe(
          mapSqlError("Store.snapshot failed"),
          Effect.flatMap((rows) =>
            decode("entity", () => {
              const out: Record<string, Record<string, unknown>> = {}
              for (const row of rows) {
                const byId = out[row.entity] ?? (out[row.entity] = {})
                byId[row.id] = JSON.parse(row.data)
              }
              return out satisfies SnapshotData
            })
          )
        )
    })

    // ---------------------------------------------------------------------
    // Clients

    const lastLocked = (clientId: string) =>
      sql<{ readonly last: number | string }>`INSERT INTO mizu_clients (client_id, last) VALUES (${clientId}, 0)
        ON CONFLICT (client_id) DO UPDATE SET last = mizu_clients.last
        RETURNING last`

    const lastPlain = (clientId: string) =>
      run(sql<{ readonly last: number | string }>`SELECT last FROM mizu_clients WHERE client_id = ${clientId}`)

    const record = (clientId: string, id: number, scope: string): Effect.Effect<void, SqlError> =>
      isPg
        ? Effect.asVoid(sql`WITH c AS (
            INSERT INTO mizu_clients (client_id, last) VALUES (${clientId}, ${id})
            ON CONFLICT (client_id) DO UPDATE
            SET last = CASE WHEN excluded.last > mizu_clients.last THEN excluded.last ELSE mizu_clients.last END
          )
          INSERT INTO mizu_client_scopes (client_id, scope, last) VALUES (${clientId}, ${scope}, ${id})
          ON CONFLICT (client_id, scope) DO UPDATE
          SET last = CASE WHEN excluded.last > mizu_client_scopes.last THEN excluded.last ELSE mizu_client_scopes.last END`)
        : atomic(Effect.zipRight(
          sql`INSERT INTO mizu_clients (client_id, last) VALUES (${clientId}, ${id})
            ON CONFLICT (client_id) DO UPDATE
            SET last = CASE WHEN excluded.last > mizu_clients.last THEN excluded.last ELSE mizu_clients.last END`,
          sql`INSERT INTO mizu_client_scopes (client_id, scope, last) VALUES (${clientId}, ${scope}, ${id})
            ON CONFLICT (client_id, scope) DO UPDATE
            SET last = CASE WHEN excluded.last > mizu_client_scopes.last THEN excluded.last ELSE mizu_client_scopes.last END`
        )).pipe(Effect.asVoid)

    const clients = Clients.of({
      lastId: (clientId) =>
        Effect.all([inTransaction, FiberRef.get(consistentRead)]).pipe(
          Effect.flatMap(([inTx, reading]) => inTx && !reading ? lastLocked(clientId) : lastPlain(clientId)),
          Effect.map((rows) => rows[0] === undefined ? 0 : Number(rows[0].last)),
          mapSqlError("Clients.lastId failed")
        ),
      lastIdForScope: (clientId, scope) =>
        run(sql<{ readonly last: number | string }>`SELECT last FROM mizu_client_scopes
          WHERE client_id = ${clientId} AND scope = ${scope}`).pipe(
          Effect.map((rows) => rows[0] === undefined ? 0 : Number(rows[0].last)),
          mapSqlError("Clients.lastIdForScope failed")
        ),
      record: (clientId, id, scope) => record(clientId, id, scope).pipe(mapSqlError("Clients.record failed"))
    })

    // ---------------------------------------------------------------------
    // SyncStorage

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
      const exec = (statement: string) => connection.execute(statement, [], undefined)
      const inner = Effect.locallyWith(
        unit,
        FiberRef.currentContext,
        Context.add(SqlClient.TransactionConnection, [connection, depth + 1] as const)
      )
      return Effect.uninterruptibleMask((restore) =>
        Effect.zipRight(
          exec(`SAVEPOINT ${name}`),
          Effect.flatMap(Effect.exit(restore(inner)), (exit) =>
            Effect.zipRight(
              Exit.isSuccess(exit)
                ? exec(`RELEASE SAVEPOINT ${name}`)
                : Effect.zipRight(exec(`ROLLBACK TO SAVEPOINT ${name}`), exec(`RELEASE SAVEPOINT ${name}`)),
              exit
            ))
        )
      )
    }

    const transaction = <A, E, R>(unit: Effect.Effect<A, E, R>): Effect.Effect<A, E | StorageError.StorageError, R> =>
      Effect.flatMap(
        Effect.serviceOption(SqlClient.TransactionConnection),
        (current): Effect.Effect<A, E | SqlError, R> =>
          Option.isSome(current) ? savepoint(current.value, unit) : sql.withTransaction(unit)
      ).pipe(
        // A failed COMMIT or ROLLBACK is a defect in @effect/sql; it is still "storage unavailable" to us.
        Effect.catchSomeDefect((defect) =>
          defect instanceof SqlError ? Option.some(Effect.fail(defect)) : Option.none()
        ),
        Effect.mapError((e): E | StorageError.StorageError =>
          e instanceof SqlError ? toStorageError("transaction failed")(e) : e
        )
      )

    const setSnapshot: Effect.Effect<void, StorageError.StorageError> = isPg
      ? sql`SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY`.pipe(
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

    return Context.make(SyncStorage, storage).pipe(
      Context.add(ChangeLog, changeLog),
      Context.add(Store, store),
      Context.add(Clients, clients)
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
  const client = SqliteClient.layer({ filename: options.filename }).pipe(Layer.orDie, Layer.provide(directory))
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
 * Fails with a `StorageError` when the database cannot be reached.
 */
export const layerPg = (
  options: PgOptions
): Layer.Layer<Services | SqlClient.SqlClient | PgClient.PgClient, StorageError.StorageError> =>
  layerWith(options).pipe(
    Layer.provide(Migrations.layerPg),
    Layer.provideMerge(PgClient.layer(options).pipe(Layer.mapError(toStorageError("cannot connect to Postgres"))))
  )
