/**
 * The todo example server (`npm start`): sync + live on SQLite by default
 * (`DATABASE_URL`, `PUBSUB_URL`, `PORT` select otherwise), serving
 *  - `/`            the todo app: a plain page using the client from /_live/runtime.js
 *  - `/live/todos`  the same list as a server-rendered live page
 */
import { NodeRuntime } from "@effect/platform-node"
import { Layer } from "effect"
import { Authorizer, Server } from "mizu-sync-live"
import { options } from "./app.js"

NodeRuntime.runMain(Layer.launch(Server.layerConfig({ ...options, authorizer: Authorizer.layerAllowAll })))
