/**
 * Runs units of work atomically over `Store`, `ChangeLog` and `Clients`.
 *
 * - `transaction(unit)`: every write of the unit commits together or not at
 *   all (a failure or interruption rolls all of it back). A nested
 *   `transaction` is a savepoint: its failure rolls back only its own writes.
 * - `readConsistent(unit)`: every read of the unit sees one snapshot.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as ChangeLog from "./ChangeLog.js"
import type * as Clients from "./Clients.js"
import * as internal from "./memory/internal/storage.js"
import type { Operator } from "./Operator.js"
import type { StorageError } from "./StorageError.js"
import type * as Store from "./Store.js"

/**
 * The units of work of a storage family (see the module header); fails
 * with a `StorageError` when the unit could not commit, nothing applied.
 *
 * @since 0.1.0
 * @category services
 */
export class SyncStorage extends Context.Tag("@mizu/sync/SyncStorage")<SyncStorage, {
  /** All or nothing; nested, a savepoint that rolls back only its own writes. */
  readonly transaction: <A, E, R>(unit: Effect.Effect<A, E, R>) => Effect.Effect<A, E | StorageError, R>
  /** Every read of the unit sees one snapshot; nested in a transaction, it joins it. */
  readonly readConsistent: <A, E, R>(unit: Effect.Effect<A, E, R>) => Effect.Effect<A, E | StorageError, R>
  /**
   * How many transactions can write at once: `"one"` (the default: memory,
   * SQLite's single writer) or `"many"` (Postgres, row locks). The engine
   * group-commits concurrent pushes into one transaction per writer: with
   * `"one"` every waiting push joins the group; with `"many"` pushes are
   * grouped per set of scopes, so unrelated scopes still commit in parallel.
   */
  readonly writers?: "one" | "many"
  /**
   * Optional: everything a pull reads, in one consistent read (one
   * statement on the SQL families; see `PullRead`). Without it the engine
   * composes `ChangeLog` and `Clients` reads in a `readConsistent` unit.
   */
  readonly readPull?: PullRead.Reader
}>() {}

/**
 * What a pull reads (`SyncStorage.readPull`), from one snapshot.
 *
 * @since 0.1.0
 * @category models
 */
export interface PullRead {
  readonly head: number
  readonly floor: number
  /**
   * The changes after the cursor, ascending, at most `limit`, as the JSON
   * text of the wire's `Change[]` (encoded by the database from the stored
   * JSON: spliced into the response as it is).
   */
  readonly changesJson: string
  /** How many changes `changesJson` holds, and the cursor of the last (the request's cursor when none). */
  readonly count: number
  readonly lastCursor: number
  readonly hasMore: boolean
  /** The scope's checksum at `lastCursor` (`Checksum`), when known. */
  readonly checksum: number | undefined
  /** The scope's compaction mark (`ChangeLog.compact`): cursors at or below it may be missing (0: none). */
  readonly compacted?: number | undefined
  /** The principal owning the client id; `undefined` when none does (or there is no client id). */
  readonly owner: string | undefined
  /** The client's last processed id among its mutations to the scope (0 if none or no client id). */
  readonly lastId: number
}

/**
 * The types that go with `PullRead`.
 *
 * @since 0.1.0
 * @category models
 */
export declare namespace PullRead {
  /**
   * The reader: `(scope, cursor, limit, clientId)`.
   *
   * @since 0.1.0
   * @category models
   */
  export type Reader = (
    scope: string,
    cursor: number,
    limit: number,
    clientId: string | undefined
  ) => Effect.Effect<PullRead, StorageError>
}

/**
 * All four storage services, as every storage family provides them over
 * one database (so a `transaction` covers the writes of all of them).
 *
 * @since 0.1.0
 * @category models
 */
export type Services = SyncStorage | ChangeLog.ChangeLog | Store.Store | Clients.Clients

/**
 * The memory family with the given `Clients` options (how many failed
 * mutations per client are remembered): the four services over one fresh
 * in-memory database per build, with rollback, and the `Operator` view of
 * it. Nothing survives the process.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerMemoryWith = (options: Clients.Options): Layer.Layer<Services | Operator> => Layer.effectContext(internal.make(options))

/**
 * The memory family: the four services (and the `Operator` view) over one
 * fresh in-memory database per build. A real implementation, with rollback,
 * for tests and demos.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerMemory: Layer.Layer<Services | Operator> = layerMemoryWith({})
