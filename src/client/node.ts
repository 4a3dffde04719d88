/**
 * Node helpers for the clients: file storage, and the `ws` package as the
 * WebSocket constructor (Node 20 has no global `WebSocket`). Not for
 * browsers: this entry imports `node:fs` and `ws`.
 *
 * @since 0.1.0
 */
import * as NodeSocket from "@effect/platform-node/NodeSocket"
import * as Layer from "effect/Layer"
import { WebSocket } from "ws"
import * as LiveClient from "./LiveClient.js"
import type { MizuLiveOptions } from "./MizuLive.js"

/**
 * Client storage in files, for Node.
 *
 * @since 0.1.0
 * @category layers
 */
export * as FileStorage from "./node/FileStorage.js"

/**
 * `Socket.WebSocketConstructor` for Node: the global `WebSocket` if there
 * is one, else the `ws` package's.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerWebSocketConstructor = NodeSocket.layerWebSocketConstructor

/**
 * A `LiveClient` for Node (`LiveClient.layer` over the `ws` package).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerLiveClient = (options: LiveClient.Options): Layer.Layer<LiveClient.LiveClient> =>
  LiveClient.layer(options).pipe(Layer.provide(NodeSocket.layerWebSocketConstructor))

/**
 * `MizuLive` / `MizuSync` `live` options for Node: the `ws` package as the
 * WebSocket constructor (unless the options name one).
 *
 * @since 0.1.0
 * @category options
 */
export const nodeLiveOptions = (options: MizuLiveOptions): MizuLiveOptions => ({ WebSocket, ...options })
