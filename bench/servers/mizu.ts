/**
 * Our server, as an app runs it: `Server.layer` over SQLite storage (a file,
 * WAL), the memory `LivePubSub`, allow-all, on `Server.layerNodeHttpServer` at
 * 127.0.0.1 on a free port. Started by the benchmarks through `lib/child.ts`.
 *
 * Argument (JSON): { filename, databaseUrl?, synchronous?, tracing?, idleTimeout?, tickInterval?, variants? }; with
 * `variants`, the upgrade variants and instrumentation of
 * `upgrade-variants.ts` are mounted too (for bench/ws-open.ts). With a
 * `databaseUrl` of the form `postgres://…` (or `postgresql://…`) the storage is
 * `SqlStorage.layerPg({ url })` on that database instead (migrated by the
 * layer, safe from several processes at once; `filename` is then unused and
 * may be left out); any other `databaseUrl` is refused at start.
 * Commands: `heap` (after full GCs; needs --expose-gc), `sessions`,
 * `upgrade-stats` (with `variants`).
 */
import * as HttpServer from "@effect/platform/HttpServer"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Redacted from "effect/Redacted"
import { Authorizer, LiveHttp, LivePubSub, Server, SqlStorage } from "mizu-sync-live"
import { createServer } from "node:http"
import { registry } from "../../examples/todo/mutations.js"

import * as Control from "../lib/control.js"
import * as Variants from "./upgrade-variants.js"

interface Arg {
  /** The SQLite file (WAL); required unless `databaseUrl` is given. */
  readonly filename?: string
  /** A `postgres://` URL: Postgres storage on it instead of SQLite. */
  readonly databaseUrl?: string
  /** SQLite's `PRAGMA synchronous` (default `NORMAL`, as the library's). */
  readonly synchronous?: "NORMAL" | "FULL"
  readonly tracing?: boolean
  readonly idleTimeout?: string
  readonly tickInterval?: string
  readonly variants?: boolean
}

const arg = Control.argument<Arg>()

const storage = () => {
  if (arg.databaseUrl !== undefined) {
    if (!/^postgres(ql)?:\/\//.test(arg.databaseUrl)) throw new Error(`databaseUrl must be a postgres:// URL, got ${arg.databaseUrl.split(":")[0]}:…`)
    return SqlStorage.layerPg({ url: Redacted.make(arg.databaseUrl), applicationName: "mizu-bench" })
  }
  if (arg.filename === undefined) throw new Error("servers/mizu.ts needs a filename (SQLite) or a databaseUrl (Postgres)")
  return SqlStorage.layerSqlite({ filename: arg.filename, ...(arg.synchronous === undefined ? {} : { synchronous: arg.synchronous }) })
}

/**
 * `Server.layerNodeHttpServer` (the sync endpoints on Node's request event
 * with `tracing: false`), or `NodeHttpServer.layer` at an older revision
 * that has none (pg-hot-scope runs this file over the code of `--rev`).
 */
const nodeHttpServer: typeof NodeHttpServer.layer = "layerNodeHttpServer" in Server
  ? (Server as { readonly layerNodeHttpServer: typeof NodeHttpServer.layer }).layerNodeHttpServer
  : NodeHttpServer.layer

const ServerLive = Server.layer({
  registry,
  tracing: arg.tracing ?? true,
  // Idle sessions must outlive the measurement; shutdown need not spread CLOSE frames.
  live: {
    idleTimeout: (arg.idleTimeout ?? "30 minutes") as Duration.DurationInput,
    drainPeriod: "100 millis",
    // every load-generating session comes from 127.0.0.1, and the load's publisher sends 50 events/s:
    // the per-address cap and the per-session broadcast rate would refuse what is being measured
    maxSessionsPerAddress: Infinity,
    maxBroadcastsPerSecond: 1_000,
    broadcastBurst: 1_000,
    ...(arg.tickInterval === undefined ? {} : { tickInterval: arg.tickInterval as Duration.DurationInput })
  },
  ...(arg.variants === true ? { routes: Variants.router } : {})
}).pipe(
  Layer.provideMerge(Layer.mergeAll(
    storage(),
    LivePubSub.layerMemory,
    Authorizer.layerAllowAll
  )),
  Layer.provideMerge(nodeHttpServer(() => {
    const server = createServer()
    if (arg.variants === true) Variants.instrument(server)
    return server
  }, { port: 0, host: "127.0.0.1" }))
)

const main = Effect.gen(function*() {
  const server = yield* HttpServer.HttpServer
  const live = yield* LiveHttp.LiveServer
  const port = server.address._tag === "TcpAddress" ? server.address.port : 0
  Control.serve({
    heap: () => Control.heap(),
    sessions: () => Effect.runPromise(live.sessionCount),
    "upgrade-stats": () => Variants.takeStats()
  })
  Control.ready({ port, pid: process.pid })
  return yield* Effect.never
}).pipe(Effect.provide(ServerLive), Logger.withMinimumLogLevel(LogLevel.Warning))

NodeRuntime.runMain(main, { disableErrorReporting: false })
