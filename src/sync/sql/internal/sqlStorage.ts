/**
 * The SQL storage family assembled: the statement path, the transactions,
 * and one builder each for `ChangeLog`, `Store`, `Clients` and `Operator`, all over the
 * one `SqlClient` in context; and the SQLite and Postgres layers that open,
 * configure and migrate the database first.
 *
 * @internal
 */
import * as NodeFs from "node:fs/promises"
import * as NodePath from "node:path"
import * as SqlClient from "@effect/sql/SqlClient"
import * as PgClient from "@effect/sql-pg/PgClient"
import type * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { ChangeLog } from "../../ChangeLog.js"
import * as Clients from "../../Clients.js"
import { Operator } from "../../Operator.js"
import * as ConnectionUrl from "../../ConnectionUrl.js"
import * as StorageError from "../../StorageError.js"
import { Store } from "../../Store.js"
import { type Services, SyncStorage } from "../../SyncStorage.js"
import type { Options, PgOptions, SqliteOptions } from "../SqlStorage.js"
import * as ClientsSql from "./clients.js"
import * as ChangeLogSql from "./changeLog.js"
import * as Migrations from "./migrations.js"
import * as OperatorSql from "./operator.js"
import * as PullRead from "./pullRead.js"
import * as SqliteDriver from "./sqliteDriver.js"
import * as Statements from "./statements.js"
import * as StoreSql from "./store.js"
import * as Transaction from "./transaction.js"

/** Dies (a configuration bug) unless `maxChangesPerScope` is unset or a positive integer. */
const maxChangesOf = (options: Options): Effect.Effect<number | undefined> => {
  const max = options.maxChangesPerScope
  return max === undefined || (Number.isSafeInteger(max) && max >= 1)
    ? Effect.succeed(max)
    : Effect.dieMessage(`maxChangesPerScope must be a positive integer, got ${max}`)
}

export const make = (options: Options = {}): Effect.Effect<Context.Context<Services | Operator>, never, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const statements = yield* Statements.make
    const maxChanges = yield* maxChangesOf(options)
    const remembered = yield* Clients.rememberedFailuresOf(options)
    const transactions = Transaction.make(statements)
    return Context.make(
      SyncStorage,
      SyncStorage.of({
        transaction: transactions.transaction,
        readConsistent: transactions.readConsistent,
        writers: statements.isPg ? "many" : "one",
        readPull: PullRead.make(statements)
      })
    ).pipe(
      Context.add(ChangeLog, ChangeLog.of(ChangeLogSql.make(statements, transactions, maxChanges))),
      Context.add(Store, Store.of(StoreSql.make(statements))),
      Context.add(Clients.Clients, Clients.Clients.of(ClientsSql.make(statements, transactions, remembered))),
      Context.add(Operator, Operator.of(OperatorSql.make(statements)))
    )
  })

export const layer = (options: Options = {}): Layer.Layer<Services | Operator, never, SqlClient.SqlClient> =>
  Layer.effectContext(make(options))

const isFileName = (filename: string) => filename !== ":memory:" && filename !== "" && !filename.startsWith("file:")

const mapSetupError = Statements.mapSqlError("cannot configure the database")

/** Create the directory of a database file (nothing for `:memory:` or a `file:` URI). */
const directoryOf = (filename: string): Layer.Layer<never, StorageError.StorageError> =>
  isFileName(filename)
    ? Layer.effectDiscard(Effect.tryPromise({
      try: () => NodeFs.mkdir(NodePath.dirname(filename), { recursive: true }),
      catch: StorageError.fromCause(`cannot create the directory of ${filename}`)
    }))
    : Layer.empty

export const layerSqlite = (
  options: SqliteOptions
): Layer.Layer<Services | Operator | SqlClient.SqlClient | SqliteClient.SqliteClient, StorageError.StorageError> => {
  const client = SqliteDriver.layer({ filename: options.filename }).pipe(Layer.orDie, Layer.provide(directoryOf(options.filename)))
  const setup = Layer.effectDiscard(Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const busy = Math.round(Duration.toMillis(Duration.decode(options.busyTimeout ?? "5 seconds")))
    yield* sql.unsafe(`PRAGMA busy_timeout = ${busy}`).pipe(mapSetupError)
    yield* sql.unsafe(`PRAGMA synchronous = ${options.synchronous ?? "NORMAL"}`).pipe(mapSetupError)
    yield* Migrations.runSqlite
  }))
  return layer(options).pipe(Layer.provide(setup), Layer.provideMerge(client))
}

/** Where a Postgres client connects, for messages: the URL with its password as `***`, or host, port and database. */
const pgTarget = (options: PgClient.PgClientConfig): string =>
  options.url !== undefined
    ? ConnectionUrl.redact(Redacted.value(options.url))
    : `${options.host ?? "localhost"}:${options.port ?? 5432}/${options.database ?? ""}`

export const layerPg = (
  options: PgOptions
): Layer.Layer<Services | Operator | SqlClient.SqlClient | PgClient.PgClient, StorageError.StorageError> =>
  layer(options).pipe(
    Layer.provide(Migrations.layerPg),
    Layer.provideMerge(
      PgClient.layer({ connectTimeout: "10 seconds", ...options }).pipe(
        Layer.mapError(Statements.toStorageError(`cannot connect to Postgres at ${pgTarget(options)}`))
      )
    )
  )
