/**
 * What server and clients share: the wire protocol, entity declarations and
 * mutation definitions. No Node-only imports.
 * @since 0.1.0
 */
export * as Entity from "./sync/Entity.js"
export * as Mutation from "./sync/Mutation.js"
export * as Protocol from "./protocol/Sync.js"
export * as LiveProtocol from "./protocol/Live.js"
export { StorageError } from "./sync/StorageError.js"
