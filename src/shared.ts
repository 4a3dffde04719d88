/**
 * What server and clients share: the wire protocol, entity declarations and
 * mutation definitions. No Node-only imports.
 *
 * @since 0.1.0
 */

/**
 * Entities: a name and a Schema; the store keeps their JSON, handlers and queries see decoded values.
 *
 * @since 0.1.0
 */
export * as Entity from "./sync/Entity.js"

/**
 * Mutations: a name, an args Schema and a handler over a transaction; the registry an app declares once.
 *
 * @since 0.1.0
 */
export * as Mutation from "./sync/Mutation.js"

/**
 * The sync wire protocol (PROTOCOL.md section 1): every HTTP body as a Schema, the error codes.
 *
 * @since 0.1.0
 */
export * as Protocol from "./protocol/Sync.js"

/**
 * The checksum of a scope's rows (PROTOCOL.md "Checksums"): canonical JSON, the row hash, the sum.
 *
 * @since 0.1.0
 */
export * as Checksum from "./protocol/Checksum.js"

/**
 * The live wire protocol (PROTOCOL.md section 2): every WebSocket frame as a Schema, the close codes.
 *
 * @since 0.1.0
 */
export * as LiveProtocol from "./protocol/Live.js"

/**
 * The one error storage layers fail with.
 *
 * @since 0.1.0
 */
export { StorageError } from "./sync/StorageError.js"
