/**
 * The todo example server: `npm start`.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Layer } from "effect"
import { Authorizer, PokeBroker, Server, SyncStorage } from "mizu-sync-live"
import { registry } from "./mutations.js"

const ServerLive = Server.layerHttp({ registry }).pipe(
  Layer.provide(Server.layerEngine(registry)),
  Layer.provide(Layer.mergeAll(SyncStorage.layerMemory, PokeBroker.layerNoop, Authorizer.layerAllowAll)),
  Layer.provideMerge(Server.logAddress),
  Layer.provide(Server.layerNodeServerConfig)
)

NodeRuntime.runMain(Layer.launch(ServerLive))
