/**
 * The memory storage family: `SyncStorage`, `ChangeLog`, `Store` and
 * `Clients` over one fresh `MemoryDatabase`, so a unit run through
 * `transaction` rolls back the writes of all four together; and the
 * `Operator` view over the same database.
 *
 * @internal
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import { ChangeLog } from "../../ChangeLog.js"
import * as Clients from "../../Clients.js"
import { Operator } from "../../Operator.js"
import { Store } from "../../Store.js"
import { type Services, SyncStorage } from "../../SyncStorage.js"
import * as ClientsMemory from "./clients.js"
import * as ChangeLogMemory from "./changeLog.js"
import * as MemoryDatabase from "./memoryDatabase.js"
import * as OperatorMemory from "./operator.js"
import * as StoreMemory from "./store.js"

/** The four services and the `Operator` over a fresh database; dies on options out of range (a configuration bug). */
export const make = (options: Clients.Options): Effect.Effect<Context.Context<Services | Operator>> =>
  Effect.gen(function*() {
    const window = yield* Clients.rememberedFailuresOf(options)
    const db = yield* MemoryDatabase.make
    return Context.make(SyncStorage, SyncStorage.of({ transaction: db.transaction, readConsistent: db.transaction })).pipe(
      Context.add(ChangeLog, ChangeLog.of(ChangeLogMemory.make(db))),
      Context.add(Store, Store.of(StoreMemory.make(db))),
      Context.add(Clients.Clients, Clients.Clients.of(ClientsMemory.make(db, window))),
      Context.add(Operator, Operator.of(OperatorMemory.make(db)))
    )
  })
