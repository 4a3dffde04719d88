/**
 * The SQLite client of `SqlStorage.layerSqlite`: the `SqlClient` and
 * `SqliteClient` of `@effect/sql-sqlite-node`, built the same way (one
 * better-sqlite3 connection, WAL, a one-permit semaphore around it, the
 * same compiler, acquirers and transactions), with a cheaper statement
 * path.
 *
 * Why: in `@effect/sql-sqlite-node` every statement looks its prepared
 * statement up in an Effect `Cache` (hash of the SQL text, TTL clock,
 * access tracking: many fiber steps) before a better-sqlite3 call that
 * costs far less than that. Here prepared statements are kept in a
 * `Map` (least recently used evicted past `prepareCacheSize`) and a
 * statement is one synchronous step. `SafeIntegers` is honoured as there.
 *
 * It also offers `withPermit`: run an effect holding the connection's
 * permit, which is what a transaction needs, without the `Scope` that
 * `reserve` requires.
 *
 * @internal
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import * as Client from "@effect/sql/SqlClient"
import type * as SqlConnection from "@effect/sql/SqlConnection"
import { SqlError } from "@effect/sql/SqlError"
import * as Statement from "@effect/sql/Statement"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import Sqlite from "better-sqlite3"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberRef from "effect/FiberRef"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import * as Scope from "effect/Scope"

/** The connection's permit, for `SqlStorage`'s transactions. */
export class SqliteDriver extends Context.Tag("@mizu/sync/sql/SqliteDriver")<SqliteDriver, {
  /** Run `effect` holding the connection's permit (what `reserve` takes, without a `Scope`). */
  readonly withPermit: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /**
   * Whether no fiber holds the permit now: then no transaction is open on
   * the connection, and work done in this very step (no yield) needs no
   * permit, since nothing else can run before it ends.
   */
  readonly isFree: () => boolean
  /** The one connection (use it only while holding the permit). */
  readonly connection: SqlConnection.Connection
  /**
   * Run a statement now on the connection, for a caller that already is in
   * a fiber step and holds the permit: `connection.execute` minus its own step.
   */
  readonly runNow: (
    sql: string,
    params: ReadonlyArray<unknown>,
    context: Context.Context<never>
  ) => Effect.Effect<ReadonlyArray<any>, SqlError>
  /**
   * A top-level transaction on the one connection: take the permit, BEGIN,
   * run `unit` with the connection as `SqlClient.TransactionConnection` at
   * depth 0, then COMMIT (rolled back if it fails) or ROLLBACK, and give the
   * permit back. Taking the permit and `unit` are interruptible (an
   * interrupted unit rolls back); BEGIN, COMMIT and ROLLBACK are not. The
   * statements run in the fiber steps around `unit` and the context is set
   * and restored in them (no `provideService`: what `@effect/sql`'s
   * transactions cost in fiber steps is most of a small push's).
   */
  readonly transaction: <A, E, R>(unit: Effect.Effect<A, E, R>) => Effect.Effect<A, E | SqlError, R>
  /**
   * Run a statement now, synchronously, for a caller in a fiber step that
   * holds the permit: its rows (none for a statement that reads none), or
   * it throws the `SqlError`.
   */
  readonly runSync: (
    sql: string,
    params: ReadonlyArray<unknown>,
    context: Context.Context<never>
  ) => ReadonlyArray<object>
}>() {}

const ATTR_DB_SYSTEM_NAME = "db.system.name"

const failed = (cause: unknown, message: string) => new SqlError({ cause, message })

/**
 * Build the client; the connection closes with the scope. A builder, as
 * `@effect/sql-sqlite-node`'s `make` is: the prepared-statement cache, the
 * statement runners, the connection, then the client over them.
 */
export const make = (
  options: SqliteClient.SqliteClientConfig
): Effect.Effect<{ readonly client: SqliteClient.SqliteClient; readonly driver: SqliteDriver["Type"] }, never, Scope.Scope | Reactivity.Reactivity> =>
  Effect.gen(function*() {
    const compiler = Statement.makeCompilerSqlite(options.transformQueryNames)
    const transformRows = options.transformResultNames
      ? Statement.defaultTransforms(options.transformResultNames).array
      : undefined
    const db = new Sqlite(options.filename, { readonly: options.readonly ?? false })
    yield* Effect.addFinalizer(() => Effect.sync(() => db.close()))
    if (options.disableWAL !== true) db.pragma("journal_mode = WAL")

    const capacity = options.prepareCacheSize ?? 200
    const prepared = new Map<string, Sqlite.Statement>()
    const prepare = (sql: string): Sqlite.Statement => {
      const hit = prepared.get(sql)
      if (hit !== undefined) {
        // most recently used last, so eviction takes the first
        prepared.delete(sql)
        prepared.set(sql, hit)
        return hit
      }
      const statement = db.prepare(sql)
      if (prepared.size >= capacity) {
        const oldest = prepared.keys().next()
        if (oldest.done !== true) prepared.delete(oldest.value)
      }
      prepared.set(sql, statement)
      return statement
    }

    /** A statement run now: its rows (`raw`: better-sqlite3's run result for a writer); throws the `SqlError`. */
    const runSync = (
      sql: string,
      params: ReadonlyArray<unknown>,
      context: Context.Context<never>,
      raw = false
    ): ReadonlyArray<any> => {
      let statement: Sqlite.Statement
      try {
        statement = prepare(sql)
      } catch (cause) {
        throw failed(cause, "Failed to prepare statement ")
      }
      try {
        if (Context.get(context, Client.SafeIntegers)) statement.safeIntegers(true)
        if (statement.reader) return statement.all(...params) as ReadonlyArray<any>
        const result = statement.run(...params)
        return raw ? result as unknown as ReadonlyArray<any> : []
      } catch (cause) {
        throw failed(cause, "Failed to execute statement")
      }
    }
    const runNow = (
      sql: string,
      params: ReadonlyArray<unknown>,
      context: Context.Context<never>,
      raw = false
    ): Effect.Effect<ReadonlyArray<any>, SqlError> => {
      try {
        return Effect.succeed(runSync(sql, params, context, raw))
      } catch (cause) {
        return Effect.fail(cause instanceof SqlError ? cause : failed(cause, "Failed to execute statement"))
      }
    }
    const run = (sql: string, params: ReadonlyArray<unknown>, raw: boolean): Effect.Effect<ReadonlyArray<any>, SqlError> =>
      Effect.withFiberRuntime((fiber) => runNow(sql, params, fiber.currentContext, raw))

    const connection: SqlConnection.Connection = {
      execute: (sql, params, transform) => transform ? Effect.map(run(sql, params, false), transform) : run(sql, params, false),
      executeRaw: (sql, params) => run(sql, params, true),
      executeValues: (sql, params) =>
        Effect.try({
          try: () => {
            const statement = prepare(sql)
            if (!statement.reader) {
              statement.run(...params)
              return []
            }
            statement.raw(true)
            try {
              return statement.all(...params) as ReadonlyArray<ReadonlyArray<unknown>>
            } finally {
              statement.raw(false)
            }
          },
          catch: (cause) => failed(cause, "Failed to execute statement")
        }),
      executeUnprepared: (sql, params, transform) => {
        const effect = Effect.withFiberRuntime<ReadonlyArray<any>, SqlError>((fiber) => {
          try {
            const statement = db.prepare(sql)
            if (Context.get(fiber.currentContext, Client.SafeIntegers)) statement.safeIntegers(true)
            if (statement.reader) return Effect.succeed(statement.all(...(params ?? [])) as ReadonlyArray<any>)
            statement.run(...(params ?? []))
            return Effect.succeed([])
          } catch (cause) {
            return Effect.fail(failed(cause, "Failed to execute statement"))
          }
        })
        return transform ? Effect.map(effect, transform) : effect
      },
      executeStream: () => Effect.dieMessage("executeStream not implemented") as never
    }

    const semaphore = yield* makeFifoLock
    const depthZero = [connection, 0] as const
    /** Run a statement for the transaction's own control (no rows, no context needed): `undefined`, or the `SqlError`. */
    const control = (statement: string): SqlError | undefined => {
      try {
        prepare(statement).run()
        return undefined
      } catch (cause) {
        return failed(cause, `Failed to execute ${statement}`)
      }
    }
    /** After the unit: the outer context back, COMMIT or ROLLBACK, the permit released, in one step. */
    const finish = <A, E>(outer: Context.Context<never>, exit: Exit.Exit<A, E>): Effect.Effect<A, E | SqlError> =>
      Effect.zipRight(
        FiberRef.set(FiberRef.currentContext, outer),
        Effect.suspend(() => {
          let result: Effect.Effect<A, E | SqlError> = exit
          if (Exit.isSuccess(exit)) {
            const commitFailed = control("COMMIT")
            // SQLite keeps the transaction open after a busy COMMIT
            if (commitFailed !== undefined) {
              control("ROLLBACK")
              result = Effect.fail(commitFailed)
            }
          } else {
            const rollbackFailed = control("ROLLBACK")
            if (rollbackFailed !== undefined) result = Effect.failCause(Cause.sequential(exit.cause, Cause.fail(rollbackFailed)))
          }
          semaphore.unsafeRelease()
          return result
        })
      )
    const transaction = <A, E, R>(unit: Effect.Effect<A, E, R>): Effect.Effect<A, E | SqlError, R> =>
      Effect.uninterruptibleMask((restore) =>
        Effect.zipRight(
          restore(semaphore.take),
          Effect.withFiberRuntime<A, E | SqlError, R>((fiber) => {
            const outer = fiber.currentContext
            const beginFailed = control("BEGIN")
            if (beginFailed !== undefined) {
              semaphore.unsafeRelease()
              return Effect.fail(beginFailed)
            }
            return Effect.zipRight(
              FiberRef.set(FiberRef.currentContext, Context.add(outer, Client.TransactionConnection, depthZero)),
              Effect.flatMap(Effect.exit(restore(unit)), (exit) => finish(outer, exit))
            )
          })
        )
      )
    const acquirer = semaphore.withPermits(1)(Effect.succeed(connection))
    const transactionAcquirer = Effect.uninterruptibleMask((restore) =>
      Effect.as(
        Effect.zipRight(
          restore(semaphore.take),
          Effect.tap(Effect.scope, (scope) => Scope.addFinalizer(scope, semaphore.release))
        ),
        connection
      )
    )
    const base = yield* Client.make({
      acquirer,
      compiler,
      transactionAcquirer,
      spanAttributes: [
        ...(options.spanAttributes ? Object.entries(options.spanAttributes) : []),
        [ATTR_DB_SYSTEM_NAME, "sqlite"]
      ],
      transformRows
    })
    const withConnection = <A>(f: () => A, message: string) =>
      semaphore.withPermits(1)(Effect.try({ try: f, catch: (cause) => failed(cause, message) }))
    const client = Object.assign(base, {
      [SqliteClient.TypeId]: SqliteClient.TypeId,
      config: options,
      export: withConnection(() => db.serialize() as Uint8Array, "Failed to export database"),
      backup: (destination: string) =>
        semaphore.withPermits(1)(Effect.tryPromise({
          try: () => db.backup(destination),
          catch: (cause) => failed(cause, "Failed to backup database")
        })),
      loadExtension: (path: string) =>
        Effect.tap(withConnection(() => db.loadExtension(path), "Failed to load extension"), () => Effect.sync(() => prepared.clear()))
    }) as unknown as SqliteClient.SqliteClient
    return {
      client,
      driver: SqliteDriver.of({
        withPermit: semaphore.withPermits(1),
        isFree: semaphore.isFree,
        connection,
        transaction,
        runNow: (sql, params, context) => runNow(sql, params, context),
        runSync: (sql, params, context) => runSync(sql, params, context)
      })
    }
  })

/**
 * The connection's permit: one holder, waiters served in arrival order. A
 * token in a one-slot `Queue`: a release hands the token straight to the
 * longest waiting taker, so a newcomer never overtakes a waiter and one
 * release wakes one fiber. (`Effect.makeSemaphore` wakes every waiter on
 * each release and lets them race for it: with 32 fibers waiting, 31 wake
 * for nothing each time; `npm run bench -- push-tail` measures both.)
 */
const makeFifoLock = Effect.gen(function*() {
  const tokens = yield* Queue.bounded<true>(1)
  yield* Queue.offer(tokens, true)
  const take: Effect.Effect<void> = Queue.take(tokens)
  /** Give the token back now (to the longest waiter, if any), from a fiber step that holds it. */
  const unsafeRelease = (): void => {
    tokens.unsafeOffer(true)
  }
  const release: Effect.Effect<void> = Effect.sync(unsafeRelease)
  /** The token is in the queue: nobody holds it. */
  const isFree = (): boolean => {
    const size = tokens.unsafeSize()
    return size._tag === "Some" && size.value > 0
  }
  const withPermits = (_permits: 1) => <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.uninterruptibleMask((restore) => Effect.zipRight(restore(take), Effect.ensuring(restore(self), release)))
  return { take, release, unsafeRelease, withPermits, isFree }
})

/** `SqliteClient`, `SqlClient` and `SqliteDriver` over one connection, closed with the layer. */
export const layer = (
  options: SqliteClient.SqliteClientConfig
): Layer.Layer<SqliteClient.SqliteClient | Client.SqlClient | SqliteDriver> =>
  Layer.scopedContext(Effect.map(make(options), ({ client, driver }) =>
    Context.make(SqliteClient.SqliteClient, client).pipe(
      Context.add(Client.SqlClient, client),
      Context.add(SqliteDriver, driver)
    ))).pipe(Layer.provide(Reactivity.layer))
