/**
 * Where a client keeps what must survive a restart: its id and next mutation
 * id, per scope the confirmed (server) rows and cursor, and the pending
 * mutation queue. The optimistic view is not stored: it is rebuilt from these.
 *
 * Guarantees of every layer:
 * - `commit(batch)` is atomic: after a crash, either all of the batch is
 *   visible to the next `load` or none of it.
 * - `load` returns the state as of the last successful `commit`.
 * - A store with `revision` can be shared by the tabs of one browser (a
 *   `TabGroup`): every batch a client commits carries the next revision,
 *   under the group's `exclusive`, and a tab that finds a revision other
 *   than its own reloads. A store without it has one client process.
 * - Scope names, entity names and ids are kept as they are, whatever the
 *   string (`"__proto__"`, `"constructor"`): in `StoredState` they are own
 *   properties (read them with `Protocol.getOwn`).
 *
 * Layers: `layerMemory` (here), `IndexedDbStorage.layer` (browsers),
 * `FileStorage.layer` (Node, from `mizu-sync-live/client/node`).
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Ref from "effect/Ref"
import * as internal from "./internal/clientStorage.js"
import type { PendingMutation } from "./LocalView.js"

/**
 * A storage failure: `unavailable` (quota, I/O, no IndexedDB; the batch was
 * not committed, retrying may help) or `corrupt` (what was stored cannot be
 * read back as a client state; retrying cannot help).
 *
 * @since 0.1.0
 * @category errors
 */
export class ClientStorageError extends Data.TaggedError("ClientStorageError")<{
  readonly reason: "unavailable" | "corrupt"
  readonly message: string
  readonly cause?: unknown
}> {}

/**
 * The `unavailable` error of every layer: the store could not be reached or
 * written; nothing of the failed operation was committed.
 *
 * @since 0.1.0
 * @category errors
 */
export const unavailable = (message: string, cause?: unknown): ClientStorageError =>
  new ClientStorageError({ reason: "unavailable", message, cause })

/**
 * The `corrupt` error of every layer: the stored state does not decode.
 *
 * @since 0.1.0
 * @category errors
 */
export const corrupt = (message: string, cause?: unknown): ClientStorageError =>
  new ClientStorageError({ reason: "corrupt", message, cause })

/**
 * One scope as stored: its cursor and confirmed rows (`entity → id → JSON`).
 *
 * @since 0.1.0
 * @category models
 */
export interface StoredScope {
  readonly cursor: number
  readonly rows: { readonly [entity: string]: { readonly [id: string]: unknown } }
}

/**
 * Everything a client keeps.
 *
 * @since 0.1.0
 * @category models
 */
export interface StoredState {
  readonly clientId: string | undefined
  /** The id the next new mutation gets (1 for a new client). */
  readonly nextId: number
  readonly scopes: { readonly [scope: string]: StoredScope }
  /** Ordered by id. */
  readonly pending: ReadonlyArray<PendingMutation>
  /** The revision of the last batch committed with one (absent: 0). */
  readonly revision?: number
}

/**
 * The state of a client that never committed anything.
 *
 * @since 0.1.0
 * @category constructors
 */
export const emptyState: StoredState = { clientId: undefined, nextId: 1, scopes: {}, pending: [] }

/**
 * A write to one scope: optionally clear it first, then put and delete rows, then set the cursor.
 *
 * @since 0.1.0
 * @category models
 */
export interface ScopeWrite {
  readonly scope: string
  readonly cursor: number
  readonly reset?: boolean
  readonly put?: ReadonlyArray<readonly [entity: string, id: string, data: unknown]>
  readonly delete?: ReadonlyArray<readonly [entity: string, id: string]>
}

/**
 * One atomic unit of writes, applied in this order: `meta`, `scopes`,
 * `pendingReplace`, `pendingDelete`, `pendingPut`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Batch {
  readonly meta?: { readonly clientId: string; readonly nextId: number }
  readonly scopes?: ReadonlyArray<ScopeWrite>
  /** Replace the whole queue (renumbering). */
  readonly pendingReplace?: ReadonlyArray<PendingMutation>
  readonly pendingDelete?: ReadonlyArray<number>
  /** Append (or replace by id). */
  readonly pendingPut?: ReadonlyArray<PendingMutation>
  /** The store's revision after this batch (shared stores: one more than before). */
  readonly revision?: number
}

/**
 * A client's durable state: `load` at start, one atomic `commit` per change.
 *
 * @since 0.1.0
 * @category services
 */
export class ClientStorage extends Context.Tag("@mizu/client/ClientStorage")<ClientStorage, {
  readonly load: Effect.Effect<StoredState, ClientStorageError>
  readonly commit: (batch: Batch) => Effect.Effect<void, ClientStorageError>
  /**
   * The revision of the last batch committed (0 for none), read cheaply: a
   * store that has it can be shared by the tabs of a `TabGroup`.
   */
  readonly revision?: Effect.Effect<number, ClientStorageError>
}>() {}

/**
 * Apply a batch to a stored state, returning the new state (the input is not changed).
 *
 * @since 0.1.0
 * @category utils
 */
export const applyBatch: (state: StoredState, batch: Batch) => StoredState = internal.applyBatch

/**
 * A memory store over a `Ref` the caller owns: building two clients over the
 * same `Ref` one after the other is a restart (what a test of persistence
 * without a disk uses).
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeMemory = (ref: Ref.Ref<StoredState>): ClientStorage["Type"] =>
  ClientStorage.of({
    load: Ref.get(ref),
    commit: (batch) => Ref.update(ref, (s) => applyBatch(s, batch)),
    revision: Ref.get(ref).pipe(Effect.map((s) => s.revision ?? 0))
  })

/**
 * A fresh memory store per build: nothing survives the layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerMemory: Layer.Layer<ClientStorage> = Layer.effect(
  ClientStorage,
  Effect.map(Ref.make(emptyState), makeMemory)
)

/**
 * A memory store over the given `Ref`, which outlives the layer (a restartable client in tests).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerMemoryRef = (ref: Ref.Ref<StoredState>): Layer.Layer<ClientStorage> =>
  Layer.succeed(ClientStorage, makeMemory(ref))
