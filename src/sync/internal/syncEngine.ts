/**
 * The engine's implementation, assembled: the services resolved once, then
 * the access checks, the push and the reads over them. The invariants it
 * keeps are stated in `SyncEngine.ts`.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Authorizer from "../Authorizer.js"
import { ChangeLog } from "../ChangeLog.js"
import * as Clients from "../Clients.js"
import { Mutator } from "../Mutator.js"
import { PokeBroker } from "../PokeBroker.js"
import { Store } from "../Store.js"
import type { SyncEngine } from "../SyncEngine.js"
import { SyncStorage } from "../SyncStorage.js"
import * as Access from "./access.js"
import * as GroupCommit from "./groupCommit.js"
import * as Push from "./push.js"
import * as Reads from "./reads.js"

/** The services the engine runs over, resolved once when it is built. */
export interface Deps {
  readonly storage: SyncStorage["Type"]
  readonly log: ChangeLog["Type"]
  readonly store: Store["Type"]
  readonly clients: Clients.Clients["Type"]
  readonly mutator: Mutator["Type"]
  readonly broker: PokeBroker["Type"]
  readonly authorizer: Authorizer.Authorizer["Type"]
}

export const make: Effect.Effect<
  SyncEngine["Type"],
  never,
  Scope.Scope | SyncStorage | ChangeLog | Store | Clients.Clients | Mutator | PokeBroker | Authorizer.Authorizer
> = Effect.gen(function*() {
  const deps: Deps = {
    storage: yield* SyncStorage,
    log: yield* ChangeLog,
    store: yield* Store,
    clients: yield* Clients.Clients,
    mutator: yield* Mutator,
    broker: yield* PokeBroker,
    authorizer: yield* Authorizer.Authorizer
  }
  const access = Access.make(deps.authorizer, deps.clients)
  const group = yield* GroupCommit.make({
    storage: deps.storage,
    clients: deps.clients,
    lockScopes: deps.log.lockScopes,
    append: deps.log.append,
    head: deps.log.head,
    committed: (heads) => Push.pokeAll(deps.broker, heads)
  })
  const engine: SyncEngine["Type"] = { push: Push.make(deps, access, group), ...Reads.make(deps, access) }
  return engine
})
