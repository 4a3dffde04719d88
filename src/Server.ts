/**
 * The composition root: layers an app uses to run sync and live on an
 * @effect/platform HTTP server, standalone or mounted in its own router.
 *
 * @since 0.1.0
 */
import * as HttpMiddleware from "@effect/platform/HttpMiddleware"
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import type * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as Config from "effect/Config"
import * as Duration from "effect/Duration"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as Context from "effect/Context"
import type { IncomingMessage, Server as NodeServer, ServerResponse } from "node:http"
import { createServer } from "node:http"
import type { ListenOptions } from "node:net"
import * as LiveHttp from "./live/LiveHttp.js"
import * as Metrics from "./Metrics.js"
import * as LiveHub from "./live/LiveHub.js"
import * as Page from "./live/Page.js"
import type * as LivePubSub from "./live/LivePubSub.js"
import * as PubSubConfig from "./live/PubSubConfig.js"
import * as SyncPokeBroker from "./live/SyncPokeBroker.js"
import * as AdminHttp from "./sync/AdminHttp.js"
import type * as Authorizer from "./sync/Authorizer.js"
import * as ClientExpiry from "./sync/ClientExpiry.js"
import * as LogCompaction from "./sync/LogCompaction.js"
import type * as ChangeLog from "./sync/ChangeLog.js"
import type * as Clients from "./sync/Clients.js"
import * as Mutator from "./sync/Mutator.js"
import type * as Mutation from "./sync/Mutation.js"
import * as OperatorMetrics from "./sync/OperatorMetrics.js"
import type * as PokeBroker from "./sync/PokeBroker.js"
import * as StorageConfig from "./sync/StorageConfig.js"
import type * as Store from "./sync/Store.js"
import * as SyncEngine from "./sync/SyncEngine.js"
import * as SyncHttp from "./sync/SyncHttp.js"
import type * as SyncStorage from "./sync/SyncStorage.js"

/**
 * What the sync + live services are built from: the app's registry, live and
 * presence options, live pages, and optional replacements for the poke
 * broker and the mutator. `R` is what the replacements need from the app.
 *
 * @since 0.1.0
 * @category options
 */
export interface ServicesOptions<R = never> {
  /** The app's entities and mutations. */
  readonly registry: Mutation.Registry
  /** Live (WebSocket) options. */
  readonly live?: LiveHttp.Options
  /** Presence renewal and expiry. */
  readonly presence?: LiveHub.Options
  /** Live pages, each served at its path (GET) and mounted over the live socket. */
  readonly pages?: ReadonlyArray<Page.Page<any, any, any, PageServices>>
  /**
   * The broker told after every commit. Default: `SyncPokeBroker.layer` (POKE
   * every subscribed session on every process). To add to it rather than
   * replace it, build on `SyncPokeBroker.make`.
   */
  readonly pokeBroker?: Layer.Layer<PokeBroker.PokeBroker, never, LiveHub.LiveHub | R>
  /** The mutator. Default: `Mutator.layer(registry)`. */
  readonly mutator?: Layer.Layer<Mutator.Mutator, never, Store.Store | R>
  /**
   * The client expiry job (`ClientExpiry.layer`, a scoped fiber), on by
   * default with a 30-day TTL; `false` turns it off (for example when
   * another process runs it; running it on several is safe too).
   */
  readonly clientExpiry?: ClientExpiry.Options | false
  /**
   * The change log compaction job (`LogCompaction.layer`), off by default;
   * `layerConfig` turns it on with `RETENTION_MODE=compact`.
   */
  readonly compaction?: LogCompaction.Options | false
  /**
   * The job that samples the storage gauges (`mizu_scopes`, `mizu_rows`,
   * `mizu_log_changes`, `mizu_clients`; `OperatorMetrics.layer`), on by
   * default every 60 seconds; `false` turns it off.
   */
  readonly operatorMetrics?: OperatorMetrics.Options | false
}

/**
 * What the routes of `router` are built from (a subset of `Options`).
 *
 * @since 0.1.0
 * @category options
 */
export interface RouterOptions<E = never, R = never> extends SyncHttp.Options {
  /** Live options; the router uses `live.path`. */
  readonly live?: Pick<LiveHttp.Options, "path">
  /** Live pages, each served at its path (GET). */
  readonly pages?: ReadonlyArray<Page.Any>
  /** Serve Prometheus metrics at `GET {prefix}/metrics` (on by default). */
  readonly metrics?: boolean
  /**
   * The operator token of `GET {prefix}/admin/scopes | clients` (`AdminHttp`).
   * Absent (the default): those routes answer 404 as unknown routes do.
   */
  readonly adminToken?: Redacted.Redacted | string | undefined
  /** Extra routes of the app, served by the same server; they may need services the app provides. */
  readonly routes?: HttpRouter.HttpRouter<E, R>
}

/**
 * Options of a standalone server (`layer`, `layerConfig`). `E` / `R` are the
 * errors and requirements of the app's own `routes` and overrides.
 *
 * @since 0.1.0
 * @category options
 */
export interface Options<E = never, R = never> extends ServicesOptions<R>, RouterOptions<E, R> {
  /** Live (WebSocket) options. */
  readonly live?: LiveHttp.Options
  /** Live pages, each served at its path (GET) and mounted over the live socket. */
  readonly pages?: ReadonlyArray<Page.Page<any, any, any, PageServices>>
  /**
   * Trace HTTP requests (on by default): a span per request, with the
   * engine's spans (`SyncEngine.push`, `SyncEngine.mutation`, …) under it.
   * `false` turns the tracer off for requests: no span of either, and none
   * of their cost; on a server with `NodeRequests` (`layerNodeServer`,
   * `layerNodeHttpServer`) the sync endpoints are then answered on Node's
   * `request` event (`SyncHttp.nodeHandler`), before the platform's router.
   */
  readonly tracing?: boolean
  /**
   * With `tracing: false`, answer the sync endpoints on the Node server's
   * `request` event when the server offers it (on by default; same checks,
   * same answers, less CPU per request). `false`: every request goes
   * through the platform's router.
   */
  readonly nodeFastPath?: boolean
}

/**
 * What live page effects may use.
 *
 * @since 0.1.0
 * @category models
 */
export type PageServices = SyncEngine.SyncEngine | Store.Store | ChangeLog.ChangeLog | Clients.Clients

/**
 * What an app provides to the services: storage, the pub/sub, the authorizer.
 *
 * @since 0.1.0
 * @category models
 */
export type ServicesRequirements = SyncStorage.Services | LivePubSub.LivePubSub | Authorizer.Authorizer

/**
 * What `layerServices` provides: everything `router` needs besides storage and the authorizer.
 *
 * @since 0.1.0
 * @category models
 */
export type Services =
  | SyncEngine.SyncEngine
  | Mutator.Mutator
  | PokeBroker.PokeBroker
  | LiveHub.LiveHub
  | LiveHttp.LiveServer
  | Page.LivePages

/** Drains the open live sessions (CLOSE `shutdown`, spread over the drain period) when the layer is released. */
const drainOnRelease = Layer.scopedDiscard(Effect.flatMap(LiveHttp.LiveServer, (live) => Effect.addFinalizer(() => live.drain)))

/**
 * `SyncEngine` (and the `Mutator` of the registry) over the storage, broker and authorizer layers.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerEngine = (
  registry: Mutation.Registry
): Layer.Layer<SyncEngine.SyncEngine | Mutator.Mutator, never, SyncStorage.Services | PokeBroker.PokeBroker | Authorizer.Authorizer> =>
  SyncEngine.layer.pipe(Layer.provideMerge(Mutator.layer(registry)))

/**
 * Every service the sync + live routes need, without serving HTTP: the
 * engine, the mutator, the poke bridge, the live hub, the live server and
 * the pages. For an app that serves `router(...)` in its own `HttpRouter`
 * with its own `HttpServer.serve`. When the layer is released (after the
 * app's HTTP handler is removed), open live sessions are drained: CLOSE
 * `shutdown` in batches spread over `live.drainPeriod`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerServices = <R = never>(
  options: ServicesOptions<R>
): Layer.Layer<Services, never, ServicesRequirements | R> => {
  const mutator = options.mutator ?? Mutator.layer(options.registry)
  const engine = SyncEngine.layer.pipe(
    Layer.provideMerge(mutator),
    Layer.provideMerge(options.pokeBroker ?? SyncPokeBroker.layer)
  )
  const expiry = options.clientExpiry === false ? Layer.empty : ClientExpiry.layer(options.clientExpiry)
  const compaction = options.compaction === undefined || options.compaction === false ? Layer.empty : LogCompaction.layer(options.compaction)
  const gauges = options.operatorMetrics === false ? Layer.empty : OperatorMetrics.layer(options.operatorMetrics)
  return Layer.mergeAll(Page.layer(options.pages ?? []), drainOnRelease, expiry, compaction, gauges).pipe(
    Layer.provideMerge(engine),
    Layer.provideMerge(LiveHttp.layer(options.live)),
    Layer.provideMerge(LiveHub.layer(options.presence))
  )
}

/**
 * Turn a router into the server's app: unknown routes answer the protocol's `404 not_found`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const toApp = <E, R>(router: HttpRouter.HttpRouter<E, R>) =>
  router.pipe(Effect.catchTag("RouteNotFound", () => Effect.succeed(SyncHttp.notFound)))

/**
 * The sync and live routes (`{prefix}/push | pull | snapshot | metrics`,
 * `{prefix}/admin/scopes | clients` (hidden unless `adminToken` is given),
 * `/_live/websocket`, `/_live/runtime.js`, the pages) and the app's own
 * `routes`, for an app to serve or to `HttpRouter.concat` with its router.
 * Served over `layerServices` plus storage and an authorizer.
 *
 * @since 0.1.0
 * @category constructors
 */
export const router = <E = never, R = never>(options: RouterOptions<E, R> = {}) =>
  HttpRouter.concatAll(
    SyncHttp.router(options),
    LiveHttp.router(options.live),
    LiveHttp.runtimeRouter,
    LiveHttp.pagesRouter(options.pages ?? []),
    options.metrics === false ? HttpRouter.empty : Metrics.router(options.prefix),
    AdminHttp.router({ prefix: options.prefix, token: options.adminToken }),
    options.routes ?? HttpRouter.empty
  )

/**
 * What serving the routes needs from context.
 *
 * @since 0.1.0
 * @category models
 */
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
 * are drained (CLOSE `shutdown` spread over the drain period) while HTTP is
 * still served, then the handler is removed.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerHttp = <E = never, R = never>(
  options: RouterOptions<E, R> & { readonly tracing?: boolean; readonly nodeFastPath?: boolean }
): Layer.Layer<never, never, HttpRequirements | Exclude<R, HttpServerRequest.HttpServerRequest | Scope.Scope>> => {
  const app = toApp(router(options))
  // tracing off: no request span (the platform's) and no span under it (the engine's, the pages'): the tracer is off for the request
  const serve = options.tracing === false
    ? Layer.merge(
      HttpMiddleware.withTracerDisabledWhen(HttpServer.serve(Effect.withTracerEnabled(app, false)), () => true),
      options.nodeFastPath === false ? Layer.empty : layerNodeFastPath(options)
    )
    : HttpServer.serve(app)
  return drainOnRelease.pipe(Layer.provide(serve))
}

/**
 * The Node `request` events of the server in context, for a listener that
 * answers some requests before @effect/platform does
 * (`Server.layerNodeHttpServer` provides it).
 *
 * @since 0.1.0
 * @category models
 */
export class NodeRequests extends Context.Tag("mizu-sync-live/Server/NodeRequests")<NodeRequests, {
  /**
   * While the scope is open, every `request` event goes to `listener` first;
   * a request it answers (it returns `true`) is not seen by the platform.
   * One listener at a time: the last one given wins.
   */
  readonly intercept: (listener: (request: IncomingMessage, response: ServerResponse) => boolean) => Effect.Effect<void, never, Scope.Scope>
}>() {}

/**
 * The sync endpoints answered on the Node server's `request` event
 * (`SyncHttp.nodeHandler`, tracing off: no request span) when the server in
 * context offers it (`NodeRequests`, from `layerNodeHttpServer` or
 * `layerNodeServer`); on any other server, nothing. `Server.layer({ tracing:
 * false })` includes it; an app that mounts `Server.router()` in its own
 * router adds it next to its `HttpServer.serve`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerNodeFastPath = (options: SyncHttp.Options = {}): Layer.Layer<never, never, SyncEngine.SyncEngine> =>
  Layer.scopedDiscard(Effect.flatMap(Effect.serviceOption(NodeRequests), (requests) =>
    requests._tag === "None"
      ? Effect.void
      : Effect.flatMap(Effect.withTracerEnabled(SyncHttp.nodeHandler(options), false), requests.value.intercept)))

/**
 * `NodeHttpServer.layer` on the server `evaluate` makes, with its `request`
 * events offered to an interceptor (`NodeRequests`): with
 * `Server.layer({ tracing: false })` the sync endpoints are answered there
 * (`SyncHttp.nodeHandler`), every other request by the platform.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerNodeHttpServer = (
  evaluate: () => NodeServer,
  options: ListenOptions
): Layer.Layer<HttpServer.HttpServer | NodeRequests | Layer.Layer.Success<ReturnType<typeof NodeHttpServer.layer>>, Layer.Layer.Error<ReturnType<typeof NodeHttpServer.layer>>> =>
  Layer.unwrapEffect(Effect.sync(() => {
    const server = evaluate()
    let listener: ((request: IncomingMessage, response: ServerResponse) => boolean) | undefined
    const emit = server.emit
    // a request the listener answers is not emitted to the platform's handler
    server.emit = function(this: NodeServer, event: string | symbol, ...args: Array<any>): boolean {
      if (event === "request" && listener !== undefined && listener(args[0], args[1])) return true
      return Reflect.apply(emit, this, [event, ...args]) as boolean
    }
    const requests = NodeRequests.of({
      intercept: (next) =>
        Effect.acquireRelease(Effect.sync(() => {
          listener = next
        }), () =>
          Effect.sync(() => {
            if (listener === next) listener = undefined
          }))
    })
    return Layer.merge(NodeHttpServer.layer(() => server, options), Layer.succeed(NodeRequests, requests))
  }))

/**
 * A whole server: `layerServices` served by `layerHttp` on the `HttpServer`
 * in context, over the storage, pub/sub and authorizer layers given.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <E = never, R = never>(
  options: Options<E, R>
): Layer.Layer<
  Services,
  never,
  HttpServer.HttpServer | ServicesRequirements | R
> => layerHttp(options).pipe(Layer.provideMerge(layerServices(options)))

/**
 * A Node HTTP server listening on `port` / `host`. On shutdown, idle
 * keep-alive connections are closed at once and busy ones after a second,
 * so clients that keep sending requests cannot hold a restart up.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerNodeServer = (
  listen: { readonly port: number; readonly host?: string }
): Layer.Layer<HttpServer.HttpServer | NodeRequests, Error> =>
  Layer.unwrapEffect(Effect.sync(() => {
    const server = createServer()
    const closer = Layer.scopedDiscard(Effect.addFinalizer(() =>
      Effect.sync(() => {
        server.closeIdleConnections()
        setTimeout(() => server.closeAllConnections(), 1000).unref()
      })
    ))
    return closer.pipe(Layer.provideMerge(layerNodeHttpServer(() => server, listen)))
  }))

/**
 * A Node HTTP server on `PORT` (3000) and `HOST` (0.0.0.0), from `Config`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerNodeServerConfig: Layer.Layer<HttpServer.HttpServer, Error | ConfigError.ConfigError> = Layer.unwrapEffect(
  Effect.gen(function*() {
    const port = yield* Config.integer("PORT").pipe(Config.withDefault(3000))
    const host = yield* Config.string("HOST").pipe(Config.withDefault("0.0.0.0"))
    return layerNodeServer({ port, host })
  })
)

/**
 * Log the address the server listens on.
 *
 * @since 0.1.0
 * @category layers
 */
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
 * the address, `CLIENT_TTL` / `CLIENT_EXPIRY_INTERVAL` the client expiry job,
 * `ADMIN_TOKEN` the operator routes' token (the `adminToken` option wins),
 * `OPERATOR_METRICS_INTERVAL` the storage gauges' job. The authorizer must be given: a server is never open by
 * accident (`Authorizer.layerAllowAll` says so explicitly).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = <E = never, R = never, EA = never>(
  options: Options<E, R> & { readonly authorizer: Layer.Layer<Authorizer.Authorizer, EA> }
): Layer.Layer<Services | HttpServer.HttpServer, unknown, R> =>
  Layer.unwrapEffect(Effect.gen(function*() {
    const ttl = yield* Config.option(Config.integer("PRESENCE_TTL_MS"))
    const renew = yield* Config.option(Config.integer("PRESENCE_RENEW_MS"))
    const clientTtl = yield* Config.option(Config.duration("CLIENT_TTL"))
    const expiryInterval = yield* Config.option(Config.duration("CLIENT_EXPIRY_INTERVAL"))
    const adminToken = options.adminToken ?? Option.getOrUndefined(yield* AdminHttp.tokenConfig)
    const gaugesInterval = yield* Config.option(Config.duration("OPERATOR_METRICS_INTERVAL"))
    const operatorMetrics: OperatorMetrics.Options | false = options.operatorMetrics === false ? false : {
      ...options.operatorMetrics,
      ...(gaugesInterval._tag === "Some" && options.operatorMetrics?.interval === undefined ? { interval: gaugesInterval.value } : {})
    }
    const clientExpiry: ClientExpiry.Options | false = options.clientExpiry === false ? false : {
      ...options.clientExpiry,
      ...(clientTtl._tag === "Some" ? { ttl: clientTtl.value } : {}),
      ...(expiryInterval._tag === "Some" ? { interval: expiryInterval.value } : {})
    }
    const presence: LiveHub.Options = {
      ...options.presence,
      ...(ttl._tag === "Some" ? { presenceTtl: Duration.millis(ttl.value) } : {}),
      ...(renew._tag === "Some" ? { renewInterval: Duration.millis(renew.value) } : {})
    }
    const compaction = options.compaction === false ? Layer.empty : LogCompaction.layerConfig(options.compaction)
    // the compaction job comes from its own configuration (`compaction`), not twice
    return Layer.mergeAll(layer({ ...options, presence, clientExpiry, operatorMetrics, adminToken, compaction: false }), logAddress, compaction).pipe(
      Layer.provide(Layer.mergeAll(StorageConfig.layerConfig, PubSubConfig.layerConfig, options.authorizer)),
      Layer.provideMerge(layerNodeServerConfig)
    )
  }))
