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
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ChangeLog from "./ChangeLog.js"
import * as Clients from "./Clients.js"
import * as MemoryDatabase from "./memory/MemoryDatabase.js"
import type { StorageError } from "./StorageError.js"
import * as Store from "./Store.js"

export class SyncStorage extends Context.Tag("@mizu/sync/SyncStorage")<SyncStorage, {
  readonly transaction: <A, E, R>(unit: Effect.Effect<A, E, R>) => Effect.Effect<A, E | StorageError, R>
  readonly readConsistent: <A, E, R>(unit: Effect.Effect<A, E, R>) => Effect.Effect<A, E | StorageError, R>
}>() {}

/** All four storage services, as every storage family provides them. */
export type Services = SyncStorage | ChangeLog.ChangeLog | Store.Store | Clients.Clients

const layerMemoryUnits: Layer.Layer<SyncStorage, never, MemoryDatabase.MemoryDatabase> = Layer.effect(
  SyncStorage,
  Effect.map(MemoryDatabase.MemoryDatabase, (db) => SyncStorage.of({ transaction: db.transaction, readConsistent: db.transaction }))
)

/**
 * The memory family with the given `Clients` options (how many failed
 * mutations per client are remembered): `SyncStorage`, `ChangeLog`, `Store`
 * and `Clients` over one fresh `MemoryDatabase` per build.
 */
export const layerMemoryWith = (options: Clients.Options): Layer.Layer<Services> =>
  Layer.mergeAll(
    layerMemoryUnits,
    ChangeLog.layerMemory,
    Store.layerMemory,
    Clients.layerMemoryWith(options)
  ).pipe(Layer.provide(MemoryDatabase.layer))

/**
 * The memory family: `SyncStorage`, `ChangeLog`, `Store` and `Clients` over one
 * fresh `MemoryDatabase` per build. A real implementation, with rollback.
 */
export const layerMemory: Layer.Layer<Services> = Layer.mergeAll(
  layerMemoryUnits,
  ChangeLog.layerMemory,
  Store.layerMemory,
  Clients.layerMemory
).pipe(Layer.provide(MemoryDatabase.layer))
