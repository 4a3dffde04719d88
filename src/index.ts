/**
 * Mizu Sync + Live, server entry: what an app composes to run sync and live —
 * the services and their layers (storage, pub/sub, authorizers, the engine),
 * the routers and the standalone server, live pages.
 *
 * @since 0.1.0
 */
export * from "./shared.js"

/**
 * The operator view's wire Schemas (PROTOCOL.md "GET /_sync/admin/scopes"): the page query and the listings.
 *
 * @since 0.1.0
 */
export * as AdminProtocol from "./protocol/Admin.js"

/**
 * The operator routes (`/_sync/admin/scopes`, `/_sync/admin/clients`), guarded by an operator token (`ADMIN_TOKEN`).
 *
 * @since 0.1.0
 */
export * as AdminHttp from "./sync/AdminHttp.js"

/**
 * Who may push, pull, subscribe and broadcast in which scope: the service and the allow-all layer.
 *
 * @since 0.1.0
 */
export * as Authorizer from "./sync/Authorizer.js"

/**
 * The per-scope ordered change log with gap-free cursors.
 *
 * @since 0.1.0
 */
export * as ChangeLog from "./sync/ChangeLog.js"

/**
 * The dedupe ledger: each client's last applied mutation id, so a push is applied at most once.
 *
 * @since 0.1.0
 */
export * as Clients from "./sync/Clients.js"

/**
 * The job that expires idle clients' ledger records (keeping tombstones, so exactly once holds when they return).
 *
 * @since 0.1.0
 */
export * as ClientExpiry from "./sync/ClientExpiry.js"

/**
 * The job that compacts change logs (`RETENTION_MODE=compact`): older changes of a row folded into its latest.
 *
 * @since 0.1.0
 */
export * as LogCompaction from "./sync/LogCompaction.js"

/**
 * Escaped HTML templates for live pages.
 *
 * @since 0.1.0
 */
export * as Html from "./live/Html.js"

/**
 * The live WebSocket route, its options and the live server (admission, drain).
 *
 * @since 0.1.0
 */
export * as LiveHttp from "./live/LiveHttp.js"

/**
 * The topic pub/sub that carries pokes, broadcasts and presence between processes (memory layer).
 *
 * @since 0.1.0
 */
export * as LivePubSub from "./live/LivePubSub.js"

/**
 * Server-rendered live pages whose events become sync mutations.
 *
 * @since 0.1.0
 */
export * as Page from "./live/Page.js"

/**
 * `LivePubSub` over Postgres LISTEN/NOTIFY.
 *
 * @since 0.1.0
 */
export * as PgPubSub from "./live/pg/PgPubSub.js"

/**
 * `LivePubSub` chosen by `PUBSUB_URL`.
 *
 * @since 0.1.0
 */
export * as PubSubConfig from "./live/PubSubConfig.js"

/**
 * `LivePubSub` over Redis.
 *
 * @since 0.1.0
 */
export * as RedisPubSub from "./live/redis/RedisPubSub.js"

/**
 * The server's metrics and the Prometheus route.
 *
 * @since 0.1.0
 */
export * as Metrics from "./Metrics.js"

/**
 * Runs a mutation by name against the store, with its args decoded by the mutation's Schema.
 *
 * @since 0.1.0
 */
export * as Mutator from "./sync/Mutator.js"

/**
 * The operator's view of storage: paged scopes (head, floor, rows, checksum, compaction) and clients, and the totals.
 *
 * @since 0.1.0
 */
export * as Operator from "./sync/Operator.js"

/**
 * The job that samples the storage gauges (`mizu_scopes`, `mizu_rows`, `mizu_log_changes`) into the metrics.
 *
 * @since 0.1.0
 */
export * as OperatorMetrics from "./sync/OperatorMetrics.js"

/**
 * What is told after every commit (`poke(scope, cursor)`).
 *
 * @since 0.1.0
 */
export * as PokeBroker from "./sync/PokeBroker.js"

/**
 * The composition root: the services, the routers and a standalone server.
 *
 * @since 0.1.0
 */
export * as Server from "./Server.js"

/**
 * Scoped entity data.
 *
 * @since 0.1.0
 */
export * as Store from "./sync/Store.js"

/**
 * The SQL storage layers (SQLite, Postgres) over `@effect/sql`.
 *
 * @since 0.1.0
 */
export * as SqlStorage from "./sync/sql/SqlStorage.js"

/**
 * Storage chosen by `DATABASE_URL`.
 *
 * @since 0.1.0
 */
export * as StorageConfig from "./sync/StorageConfig.js"

/**
 * Push, pull and snapshot: the logic of the sync protocol over the services.
 *
 * @since 0.1.0
 */
export * as SyncEngine from "./sync/SyncEngine.js"

/**
 * The sync HTTP routes (`/_sync/push`, `pull`, `snapshot`).
 *
 * @since 0.1.0
 */
export * as SyncHttp from "./sync/SyncHttp.js"

/**
 * The `PokeBroker` that pokes every subscribed live session on every process.
 *
 * @since 0.1.0
 */
export * as SyncPokeBroker from "./live/SyncPokeBroker.js"

/**
 * The storage services together and the atomic unit over them (memory layer).
 *
 * @since 0.1.0
 */
export * as SyncStorage from "./sync/SyncStorage.js"

/**
 * An `Authorizer` from a table of bearer tokens (`AUTH_TOKENS`).
 *
 * @since 0.1.0
 */
export * as TokenAuthorizer from "./sync/TokenAuthorizer.js"
