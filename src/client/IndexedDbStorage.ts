/**
 * `ClientStorage` on IndexedDB, for browsers. One database with four object
 * stores: `meta` (client id, next mutation id), `scopes` (cursor per scope),
 * `rows` (confirmed rows, keyed `scope \0 entity \0 id`) and `pending` (the
 * queue, keyed by mutation id).
 *
 * Invariants:
 * - Each `commit` is one `readwrite` transaction over the four stores with
 *   `durability: "strict"`; it resolves on the transaction's `complete`
 *   event, so a batch is all or nothing and on disk when `commit` returns.
 * - Scope names cannot contain `\0` (the protocol's `Scope`), so a scope's
 *   rows are exactly the keys in `[scope\0, scope\x01)`.
 * - `shared: true` (what `MizuSync.open` uses where the browser has Web
 *   Locks and `BroadcastChannel`): every tab opens the one database `name`,
 *   and the tabs' `TabGroup` serializes their commits; `revision` (a
 *   counter in `meta`, written in each batch's transaction) tells a tab
 *   another one committed. The data is stored once, whatever the tabs.
 * - Otherwise one client per database: two tabs sharing a store without a
 *   `TabGroup` would share a client id and hand out the same mutation ids.
 *   So the layer holds an exclusive Web Lock on its database for its
 *   lifetime; a second tab finds it taken and uses the next free slot
 *   (`name`, `name#1`, `name#2`, …), with its own client id and queue. A tab
 *   opened later takes over a free slot, queue included, so nothing a closed
 *   tab left pending is stranded. Without the Web Locks API (Node, old
 *   browsers) there is no locking.
 *
 * @since 0.1.0
 */
import type * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import { ClientStorage, type ClientStorageError } from "./ClientStorage.js"
import * as internal from "./internal/indexedDbStorage.js"

/**
 * Options of the IndexedDB storage.
 *
 * @since 0.1.0
 * @category options
 */
export interface Options {
  /** The database name; `mizu-sync` by default. One client per database. */
  readonly name?: string
  /** The `IDBFactory`; the global `indexedDB` by default. */
  readonly indexedDB?: IDBFactory
  /** The `IDBKeyRange` class; the global one by default. */
  readonly IDBKeyRange?: { readonly bound: (lower: string, upper: string, lowerOpen?: boolean, upperOpen?: boolean) => IDBKeyRange }
  /** The Web Locks manager; `navigator.locks` by default (none: no cross-tab locking). */
  readonly locks?: Pick<LockManager, "request">
  /**
   * One database for every tab (`name`), shared through a `TabGroup` of the
   * same name; false by default (a slot per tab).
   */
  readonly shared?: boolean
  /** How many slots (tabs at once) to try before failing; 32 by default (not shared). */
  readonly maxSlots?: number
}

/**
 * Open the database; it is closed with the scope.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: (options?: Options) => Effect.Effect<ClientStorage["Type"], ClientStorageError, Scope.Scope> = internal.make

/**
 * The IndexedDB storage as a layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<ClientStorage, ClientStorageError> =>
  Layer.scoped(ClientStorage, make(options))
