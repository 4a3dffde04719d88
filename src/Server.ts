/**
 * The composition root: layers an app uses to run sync and live on an
 * @effect/platform HTTP server, standalone or mounted in its own router.
 *
 * @since 0.1.0
 */
import * as HttpMiddleware from "@effect/platform/HttpMiddleware"
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as Config from "effect/Config"
import * as Duration from "effect/Duration"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { createServer } from "node:http"
import * as LiveHttp from "./live/LiveHttp.js"
import * as Metrics from "./Metrics.js"
import * as LiveHub from "./live/LiveHub.js"
import * as Page from "./live/Page.js"
import type * as LivePubSub from "./live/LivePubSub.js"
import * as PubSubConfig from "./live/PubSubConfig.js"
import * as SyncPokeBroker from "./live/SyncPokeBroker.js"
import type * as Authorizer from "./sync/Authorizer.js"
import type * as ChangeLog from "./sync/ChangeLog.js"
import type * as Clients from "./sync/Clients.js"
import * as Mutator from "./sync/Mutator.js"
import type * as Mutation from "./sync/Mutation.js"
import type * as PokeBroker from "./sync/PokeBroker.js"
import * as StorageConfig from "./sync/StorageConfig.js"
import type * as Store from "./sync/Store.js"
import * as SyncEngine from "./sync/SyncEngine.js"
import * as SyncHttp from "./sync/SyncHttp.js"
import type * as SyncStorage from "./sync/SyncStorage.js"

/** Options of a server. */
export interface Options extends SyncHttp.Options {
  /** The app's entities and mutations. */
  readonly registry: Mutation.Registry
  /** Record a tracing span for each HTTP request (on by default). */
  readonly tracing?: boolean
  /** Live (WebSocket) options. */
  readonly live?: LiveHttp.Options
  /** Presence renewal and expiry. */
  readonly presence?: LiveHub.Options
  /** Extra routes of the app, served by the same server. */
  readonly routes?: HttpRouter.HttpRouter<never, never>
  /** Serve Prometheus metrics at `GET {prefix}/metrics` (on by default). */
  readonly metrics?: boolean
  /** Live pages, each served at its path (GET) and mounted over the live socket. */
  readonly pages?: ReadonlyArray<Page.Page<any, any, any, PageServices>>
}

/** What live page effects may use. */
export type PageServices = SyncEngine.SyncEngine | Store.Store | ChangeLog.ChangeLog | Clients.Clients

/** `SyncEngine` (and the `Mutator` of the registry) over the storage, broker and authorizer layers. */
export const layerEngine = (
  registry: Mutation.Registry
): Layer.Layer<SyncEngine.SyncEngine | Mutator.Mutator, never, SyncStorage.Services | PokeBroker.PokeBroker | Authorizer.Authorizer> =>
  SyncEngine.layer.pipe(Layer.provideMerge(Mutator.layer(registry)))

/** Turn a router into the server's app: unknown routes answer the protocol's `404 not_found`. */
export const toApp = <E, R>(router: HttpRouter.HttpRouter<E, R>) =>
  router.pipe(Effect.catchTag("RouteNotFound", () => Effect.succeed(SyncHttp.notFound)))

/** The sync and live routes (and the app's own), for an app to serve or mount. */
export const router = (options: Options) =>
  HttpRouter.concatAll(
    SyncHttp.router(options),
    LiveHttp.router(options.live),
    LiveHttp.runtimeRouter,
    LiveHttp.pagesRouter(options.pages ?? []),
    options.metrics === false ? HttpRouter.empty : Metrics.router(options.prefix),
    options.routes ?? HttpRouter.empty
  )

/** What serving the routes needs from context. */
export type HttpRequirements =
  | HttpServer.HttpServer
  | SyncEngine.SyncEngine
  | LiveHttp.LiveServer
  | LiveHub.LiveHub
  | ChangeLog.ChangeLog
  | Authorizer.Authorizer
  | Page.LivePages

/**
 * Serve the routes on the `HttpServer` in context. On shutdown, live sessions
 * are drained (CLOSE `shutdown` spread over the drain period) before the HTTP
 * server stops.
 */
export const layerHttp = (options: Options): Layer.Layer<never, never, HttpRequirements> => {
  const served = HttpServer.serve(toApp(router(options)))
  const serve = options.tracing === false ? HttpMiddleware.withTracerDisabledWhen(served, () => true) : served
  const drain = Layer.scopedDiscard(Effect.flatMap(LiveHttp.LiveServer, (live) => Effect.addFinalizer(() => live.drain)))
  return drain.pipe(Layer.provide(serve))
}

/**
 * A whole server: sync engine, live sessions, the poke bridge (pushes poke
 * every subscribed session on every process), over the storage, pub/sub and
 * authorizer layers given, on the `HttpServer` in context.
 */
export const layer = (
  options: Options
): Layer.Layer<
  LiveHub.LiveHub | LiveHttp.LiveServer | SyncEngine.SyncEngine,
  never,
  HttpServer.HttpServer | SyncStorage.Services | LivePubSub.LivePubSub | Authorizer.Authorizer
> =>
  layerHttp(options).pipe(
    Layer.provide(Page.layer(options.pages ?? [])),
    Layer.provideMerge(layerEngine(options.registry).pipe(Layer.provide(SyncPokeBroker.layer))),
    Layer.provideMerge(LiveHttp.layer(options.live)),
    Layer.provideMerge(LiveHub.layer(options.presence))
  )

/**
 * A Node HTTP server listening on `port` / `host`. On shutdown, idle
 * keep-alive connections are closed at once and busy ones after a second,
 * so clients that keep sending requests cannot hold a restart up.
 */
export const layerNodeServer = (listen: { readonly port: number; readonly host?: string }): Layer.Layer<HttpServer.HttpServer, Error> =>
  Layer.unwrapEffect(Effect.sync(() => {
    const server = createServer()
    const closer = Layer.scopedDiscard(Effect.addFinalizer(() =>
      Effect.sync(() => {
        server.closeIdleConnections()
        setTimeout(() => server.closeAllConnections(), 1000).unref()
      })
    ))
    return closer.pipe(Layer.provideMerge(NodeHttpServer.layer(() => server, listen)))
  }))

/** A Node HTTP server on `PORT` (3000) and `HOST` (0.0.0.0), from `Config`. */
export const layerNodeServerConfig: Layer.Layer<HttpServer.HttpServer, Error | ConfigError.ConfigError> = Layer.unwrapEffect(
  Effect.gen(function*() {
    const port = yield* Config.integer("PORT").pipe(Config.withDefault(3000))
    const host = yield* Config.string("HOST").pipe(Config.withDefault("0.0.0.0"))
    return layerNodeServer({ port, host })
  })
)

/** Log the address the server listens on. */
export const logAddress: Layer.Layer<never, never, HttpServer.HttpServer> = Layer.effectDiscard(
  Effect.flatMap(HttpServer.HttpServer, (server) =>
    server.address._tag === "TcpAddress"
      ? Effect.log(
        `listening on http://${server.address.hostname === "0.0.0.0" ? "localhost" : server.address.hostname}:${server.address.port}`
      )
      : Effect.log(`listening on ${server.address.path}`))
)

/**
 * A whole server from configuration: `DATABASE_URL` selects the storage
 * (memory, SQLite — the default, `./data/mizu.db` — or Postgres),
 * `PUBSUB_URL` the pub/sub (memory, Redis, Postgres NOTIFY), `PORT` / `HOST`
 * the address. The authorizer must be given: a server is never open by
 * accident (`Authorizer.layerAllowAll` says so explicitly).
 */
export const layerConfig = (
  options: Options & { readonly authorizer: Layer.Layer<Authorizer.Authorizer> }
): Layer.Layer<LiveHub.LiveHub | LiveHttp.LiveServer | SyncEngine.SyncEngine | HttpServer.HttpServer, unknown> =>
  Layer.unwrapEffect(Effect.gen(function*() {
    const ttl = yield* Config.option(Config.integer("PRESENCE_TTL_MS"))
    const renew = yield* Config.option(Config.integer("PRESENCE_RENEW_MS"))
    const presence: LiveHub.Options = {
      ...options.presence,
      ...(ttl._tag === "Some" ? { presenceTtl: Duration.millis(ttl.value) } : {}),
      ...(renew._tag === "Some" ? { renewInterval: Duration.millis(renew.value) } : {})
    }
    return Layer.mergeAll(layer({ ...options, presence }), logAddress).pipe(
      Layer.provide(Layer.mergeAll(StorageConfig.layerConfig, PubSubConfig.layerConfig, options.authorizer)),
      Layer.provideMerge(layerNodeServerConfig)
    )
  }))
