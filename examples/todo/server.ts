/**
 * The todo example server: `npm start`.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Layer } from "effect"
import { Authorizer, LivePubSub, Server, SyncStorage } from "mizu-sync-live"
import { registry } from "./mutations.js"

const ServerLive = Layer.mergeAll(Server.layer({ registry }), Server.logAddress).pipe(
  Layer.provide(Layer.mergeAll(SyncStorage.layerMemory, LivePubSub.layerMemory, Authorizer.layerAllowAll)),
  Layer.provide(Server.layerNodeServerConfig)
)

NodeRuntime.runMain(Layer.launch(ServerLive))
