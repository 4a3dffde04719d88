/**
 * Mizu Sync + Live, server entry.
 * @since 0.1.0
 */
export * from "./shared.js"
export * as Authorizer from "./sync/Authorizer.js"
export * as ChangeLog from "./sync/ChangeLog.js"
export * as Clients from "./sync/Clients.js"
export * as LiveHttp from "./live/LiveHttp.js"
export * as LiveHub from "./live/LiveHub.js"
export * as LivePubSub from "./live/LivePubSub.js"
export * as PgPubSub from "./live/pg/PgPubSub.js"
export * as PubSubConfig from "./live/PubSubConfig.js"
export * as RedisPubSub from "./live/redis/RedisPubSub.js"
export * as Mutator from "./sync/Mutator.js"
export * as PokeBroker from "./sync/PokeBroker.js"
export * as Server from "./Server.js"
export * as Store from "./sync/Store.js"
export * as Session from "./live/Session.js"
export * as SyncEngine from "./sync/SyncEngine.js"
export * as SyncHttp from "./sync/SyncHttp.js"
export * as SyncPokeBroker from "./live/SyncPokeBroker.js"
export * as SyncStorage from "./sync/SyncStorage.js"
