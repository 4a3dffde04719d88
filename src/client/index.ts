/**
 * Mizu Sync + Live, client entry: the typed sync and live clients, their
 * storage and transport layers, and the plain Promise/event API. Runs in
 * browsers and Node; nothing here (or below it) imports Node-only modules —
 * the Node helpers are in `mizu-sync-live/client/node`.
 *
 * @since 0.1.0
 */
export * from "../shared.js"

/**
 * Offline start for browser apps: the service worker that serves the app shell, and its registration.
 *
 * @since 0.1.0
 */
export * as AppShell from "./AppShell.js"

/**
 * The one retry policy of the clients (exponential with jitter, capped), as a `Schedule`.
 *
 * @since 0.1.0
 */
export * as Backoff from "./Backoff.js"

/**
 * Where a client keeps its rows, cursors and pending mutations; the memory layer.
 *
 * @since 0.1.0
 */
export * as ClientStorage from "./ClientStorage.js"

/**
 * `ClientStorage` in the browser's IndexedDB.
 *
 * @since 0.1.0
 */
export * as IndexedDbStorage from "./IndexedDbStorage.js"

/**
 * The live WebSocket client: JOIN, subscriptions, POKEs, broadcasts and presence, reconnecting with backoff.
 *
 * @since 0.1.0
 */
export * as LiveClient from "./LiveClient.js"

/**
 * The rows of a client's local view and the pure steps of its rebase.
 *
 * @since 0.1.0
 */
export * as LocalView from "./LocalView.js"

/**
 * The live client as a plain Promise/event API.
 *
 * @since 0.1.0
 */
export { MizuLive, type MizuLiveEvents, type MizuLiveOptions } from "./MizuLive.js"

/**
 * The sync client as a plain Promise/event API.
 *
 * @since 0.1.0
 */
export { MizuSync, type MizuSyncEvents, type MizuSyncOptions, type MutationInput } from "./MizuSync.js"

/**
 * What the Promise API rejects with: one class per error kind, each with a `reason` and the Effect error as `cause`.
 *
 * @since 0.1.0
 */
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

/**
 * What a client does with a push the server refuses: split, bisect, report stuck, discard.
 *
 * @since 0.1.0
 */
export * as PushPolicy from "./PushPolicy.js"

/**
 * Typed queries over the local view, and `watch`.
 *
 * @since 0.1.0
 */
export * as Query from "./Query.js"

/**
 * The sync client: optimistic mutations, a persistent push queue, pulls on poke, rebase.
 *
 * @since 0.1.0
 */
export * as SyncClient from "./SyncClient.js"

/**
 * How a sync client reaches the server (HTTP push, pull, snapshot).
 *
 * @since 0.1.0
 */
export * as SyncTransport from "./SyncTransport.js"

/**
 * The tabs of a browser that share one client store: a leader that owns the
 * network, writes serialized across tabs.
 *
 * @since 0.1.0
 */
export * as TabGroup from "./TabGroup.js"

/**
 * Bearer tokens for the clients, with refresh.
 *
 * @since 0.1.0
 */
export * as Token from "./Token.js"
