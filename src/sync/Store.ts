/**
 * Scoped entity data, kept as JSON: `scope → entity → id → value`.
 * Reads inside a `SyncStorage` unit see that unit's own writes. Ids are any
 * string (`Entity.invalidId` says which ones writers refuse); `"__proto__"`
 * and `"constructor"` are ids like any other, in `snapshot` too (own
 * properties, see `Protocol.setOwn`).
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type * as Option from "effect/Option"
import type { SnapshotData } from "../protocol/Sync.js"
import type { StorageError } from "./StorageError.js"

/**
 * Scoped entity data (see the module header). Inside a `SyncStorage` unit
 * every read sees the unit's own writes, and the writes commit with it.
 *
 * @since 0.1.0
 * @category services
 */
export class Store extends Context.Tag("@mizu/sync/Store")<Store, {
  /** The stored JSON of one id, `None` when absent. */
  readonly get: (scope: string, entity: string, id: string) => Effect.Effect<Option.Option<unknown>, StorageError>
  /** Insert or replace the JSON of one id. */
  readonly put: (scope: string, entity: string, id: string, data: unknown) => Effect.Effect<void, StorageError>
  /** Returns whether the id existed. */
  readonly delete: (scope: string, entity: string, id: string) => Effect.Effect<boolean, StorageError>
  /** Every value of one entity in a scope, ordered by `Entity.idOrder`. */
  readonly list: (scope: string, entity: string) => Effect.Effect<ReadonlyArray<readonly [string, unknown]>, StorageError>
  /** The whole scope; ids ordered as `list` orders them. */
  readonly snapshot: (scope: string) => Effect.Effect<SnapshotData, StorageError>
  /**
   * For a fiber whose context is `context`: the same `get`, `put` and
   * `delete` as plain calls, when this store can answer them without
   * waiting (the SQL store on its SQLite connection inside a transaction),
   * or undefined (then only the Effect methods). What a mutation's
   * `Transaction` uses to spare fiber steps; optional for implementations.
   */
  readonly syncIn?: (context: Context.Context<never>) => SyncView | undefined
}>() {}

/**
 * A store's `get`, `put` and `delete` as plain calls, valid only in the
 * fiber step they were obtained in (see `Store.syncIn`); each throws the
 * `StorageError` its Effect method would fail with.
 *
 * @since 0.1.0
 * @category models
 */
export interface SyncView {
  readonly get: (scope: string, entity: string, id: string) => Option.Option<unknown>
  /** Returns the data's JSON text when it stored that text (`JSON.stringify(data)`): the change log then stores the same text without encoding it again. */
  readonly put: (scope: string, entity: string, id: string, data: unknown) => string | void
  readonly delete: (scope: string, entity: string, id: string) => boolean
}
