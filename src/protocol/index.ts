/**
 * The wire protocol, shared by server and clients: `Sync` (PROTOCOL.md
 * section 1, HTTP) and `Live` (section 2, WebSocket), version 1.
 *
 * @since 0.1.0
 */

/**
 * The Schemas of live frames (PROTOCOL.md section 2).
 *
 * @since 0.1.0
 */
export * as Live from "./Live.js"
/**
 * The Schemas of sync requests and responses (PROTOCOL.md section 1).
 *
 * @since 0.1.0
 */
export * as Sync from "./Sync.js"
