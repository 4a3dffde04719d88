/**
 * Mizu Sync + Live, client entry: the typed sync and live clients, their
 * storage and transport layers, and the plain Promise/event API. Runs in
 * browsers and Node; nothing here (or below it) imports Node-only modules —
 * the Node helpers are in `mizu-sync-live/client/node`.
 *
 * @since 0.1.0
 */
export * from "../shared.js"
export * as AppShell from "./AppShell.js"
export * as Backoff from "./Backoff.js"
export * as ClientStorage from "./ClientStorage.js"
export * as IndexedDbStorage from "./IndexedDbStorage.js"
export * as LiveClient from "./LiveClient.js"
export * as LocalView from "./LocalView.js"
export { MizuLive, type MizuLiveEvents, type MizuLiveOptions } from "./MizuLive.js"
export { MizuSync, type MizuSyncEvents, type MizuSyncOptions, type MutationInput } from "./MizuSync.js"
export {
  ClientStorageError,
  DiscardError,
  LiveError,
  MizuError,
  type MizuErrorCode,
  MutateError,
  QueryError,
  SyncError,
  type SyncErrorReason
} from "./PromiseErrors.js"
export * as PushPolicy from "./PushPolicy.js"
export * as Query from "./Query.js"
export * as SyncClient from "./SyncClient.js"
export * as SyncTransport from "./SyncTransport.js"
export * as Token from "./Token.js"
