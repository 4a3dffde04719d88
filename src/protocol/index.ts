/**
 * The wire protocol, shared by server and clients.
 * @since 0.1.0
 */
export * as Live from "./Live.js"
export * as Sync from "./Sync.js"
