/**
 * The Effect-native peer for bench/eventlog.ts: Effect's own `EventLogServer`
 * (`@effect/experimental` 0.61.1, `EventLogServer.makeHandlerHttp`) with its
 * SQL storage (`@effect/sql` 0.52.1, `SqlEventLogServer.layerStorageSubtle`)
 * on SQLite (`@effect/sql-sqlite-node`: a file, WAL, plus
 * `synchronous = NORMAL` and `busy_timeout = 5000` as our `layerSqlite` sets
 * them), served on `NodeHttpServer` at `GET /event-log` on 127.0.0.1, a free
 * port. Started by the benchmarks through `lib/child.ts`.
 *
 * Per write (one `WriteEntries` frame from `EventLogRemote`) the server
 * decodes the MsgPack frame, then for the identity's table (one table per
 * public key, `effect_events_<sha256(publicKey)>`): `INSERT … ON CONFLICT DO
 * NOTHING` of the opaque entry (id, iv, encrypted bytes; the server never
 * decrypts, has no handler, no domain table, no authorization), a `SELECT` of
 * the inserted rows by entry id for their sequence numbers (both
 * autocommitted: no explicit transaction), an offer to the identity's
 * in-memory PubSub, and an `Ack` frame to the writer; each connection that sent
 * `RequestChanges` for that public key gets a `Changes` frame.
 *
 * Argument (JSON): { filename }. Replies `ready` with { port, path }.
 */
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as SqlClient from "@effect/sql/SqlClient"
import * as SqlEventLogServer from "@effect/sql/SqlEventLogServer"
import * as EventLogServer from "@effect/experimental/EventLogServer"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import { createServer } from "node:http"
import * as Control from "../lib/control.js"

interface Arg {
  readonly filename: string
}

const arg = Control.argument<Arg>()
const path = "/event-log"

/** The same connection settings as our `SqlStorage.layerSqlite` (WAL is SqliteClient's default). */
const SqliteLive = Layer.effectDiscard(Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql.unsafe("PRAGMA busy_timeout = 5000")
  yield* sql.unsafe("PRAGMA synchronous = NORMAL")
})).pipe(Layer.provideMerge(SqliteClient.layer({ filename: arg.filename })))

const StorageLive = SqlEventLogServer.layerStorageSubtle().pipe(Layer.provide(SqliteLive))

const HttpLive = Layer.unwrapEffect(Effect.gen(function*() {
  const handler = yield* EventLogServer.makeHandlerHttp
  return HttpServer.serve(HttpRouter.empty.pipe(HttpRouter.get(path, handler)))
})).pipe(
  Layer.provide(StorageLive),
  Layer.provideMerge(NodeHttpServer.layer(createServer, { port: 0, host: "127.0.0.1" }))
)

const main = Effect.gen(function*() {
  const server = yield* HttpServer.HttpServer
  const sql = yield* SqlClient.SqlClient
  const port = server.address._tag === "TcpAddress" ? server.address.port : 0
  Control.serve({
    // The settings in force on the storage's connection, for the benchmark to report.
    pragmas: () =>
      Effect.runPromise(Effect.all({
        journal_mode: sql.unsafe<{ journal_mode: string }>("PRAGMA journal_mode"),
        synchronous: sql.unsafe<{ synchronous: number }>("PRAGMA synchronous")
      }).pipe(Effect.map(({ journal_mode, synchronous }) => ({
        journal_mode: journal_mode[0]?.journal_mode,
        synchronous: synchronous[0]?.synchronous
      }))))
  })
  Control.ready({ port, path, pid: process.pid })
  return yield* Effect.never
}).pipe(Effect.provide(Layer.merge(HttpLive, SqliteLive)), Logger.withMinimumLogLevel(LogLevel.Warning))

NodeRuntime.runMain(main, { disableErrorReporting: false })
