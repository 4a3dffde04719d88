/**
 * The dedupe ledger: per client, the last processed mutation id, and per
 * (client, scope) the last processed id that targeted that scope; and who
 * owns each client id.
 *
 * Ownership: a `client_id` belongs to the principal (`Authorizer.Principal.id`)
 * whose push first used it. `claim` records that inside the push
 * transaction, so of two principals racing to use a fresh id exactly one
 * commits as its owner and the other sees that owner. An id may be left
 * without an owner: used only by the `anonymous` principal (allow-all,
 * where callers are not told apart), or a row written before owners were
 * recorded (SQL migration `0002_client_owner`); the next named principal to
 * push with it claims it.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { type ClientState, MemoryDatabase, type State } from "./memory/MemoryDatabase.js"
import type { StorageError } from "./StorageError.js"

export class Clients extends Context.Tag("@mizu/sync/Clients")<Clients, {
  /**
   * The client's last processed id (0 if unknown). Inside a `SyncStorage`
   * transaction it also locks the client's row until the transaction ends, so
   * two concurrent pushes of one client are processed one after the other.
   */
  readonly lastId: (clientId: string) => Effect.Effect<number, StorageError>
  /**
   * Make `owner` the owner of the client id if it has none (`undefined`, the
   * anonymous principal, never owns), and return the owner after that and
   * the client's last processed id. Inside a `SyncStorage` transaction it
   * locks the client's row as `lastId` does, and the claim commits or rolls
   * back with the transaction: concurrent claims of a fresh id by two
   * principals give one owner, seen by both. A caller that finds another
   * owner must not use the returned `last` (nor reveal it).
   */
  readonly claim: (clientId: string, owner: string | undefined) => Effect.Effect<Claim, StorageError>
  /** The owner of the client id: `undefined` when it has none (unknown, anonymous, or not yet claimed). */
  readonly ownerOf: (clientId: string) => Effect.Effect<string | undefined, StorageError>
  /** The client's last processed id among mutations that targeted `scope` (0 if none). */
  readonly lastIdForScope: (clientId: string, scope: string) => Effect.Effect<number, StorageError>
  /** Record that mutation `id` of the client, targeting `scope`, was processed. */
  readonly record: (clientId: string, id: number, scope: string) => Effect.Effect<void, StorageError>
  /**
   * Record several processed mutations of the client at once: the same as
   * `record` for each, in one or two statements on SQL layers whatever their
   * number (the engine records a whole push this way, inside its transaction).
   */
  readonly recordAll: (clientId: string, processed: ReadonlyArray<Processed>) => Effect.Effect<void, StorageError>
}>() {}

/** What `Clients.claim` finds: the client id's owner after the claim, and its last processed id. */
export interface Claim {
  readonly owner: string | undefined
  readonly last: number
}

/** A processed mutation, for `Clients.recordAll`. */
export interface Processed {
  readonly id: number
  readonly scope: string
}

type Undo = (step: () => void) => void

export const makeMemory: Effect.Effect<Clients["Type"], never, MemoryDatabase> = Effect.gen(function*() {
  const db = yield* MemoryDatabase
  /** One processed id, written with its undo steps. */
  const recordIn = (state: State, undo: Undo, clientId: string, id: number, scope: string) => {
    let client = state.clients.get(clientId)
    if (client === undefined) {
      const created: ClientState = { last: 0, owner: undefined, scopes: new Map<string, number>() }
      state.clients.set(clientId, created)
      undo(() => state.clients.delete(clientId))
      client = created
    }
    const target = client
    const prevLast = target.last
    const hadScope = target.scopes.has(scope)
    const prevScope = target.scopes.get(scope)
    target.last = Math.max(target.last, id)
    target.scopes.set(scope, Math.max(prevScope ?? 0, id))
    undo(() => {
      target.last = prevLast
      if (hadScope && prevScope !== undefined) target.scopes.set(scope, prevScope)
      else target.scopes.delete(scope)
    })
  }
  return Clients.of({
    lastId: (clientId) => db.read((state) => state.clients.get(clientId)?.last ?? 0),
    claim: (clientId, owner) =>
      db.write((state, undo): Claim => {
        const client = state.clients.get(clientId)
        if (client === undefined) {
          if (owner !== undefined) {
            state.clients.set(clientId, { last: 0, owner, scopes: new Map() })
            undo(() => state.clients.delete(clientId))
          }
          return { owner, last: 0 }
        }
        if (client.owner === undefined && owner !== undefined) {
          client.owner = owner
          undo(() => {
            client.owner = undefined
          })
        }
        return { owner: client.owner, last: client.last }
      }),
    ownerOf: (clientId) => db.read((state) => state.clients.get(clientId)?.owner),
    lastIdForScope: (clientId, scope) => db.read((state) => state.clients.get(clientId)?.scopes.get(scope) ?? 0),
    record: (clientId, id, scope) => db.write((state, undo) => recordIn(state, undo, clientId, id, scope)),
    recordAll: (clientId, processed) =>
      db.write((state, undo) => {
        for (const { id, scope } of processed) recordIn(state, undo, clientId, id, scope)
      })
  })
})

export const layerMemory: Layer.Layer<Clients, never, MemoryDatabase> = Layer.effect(Clients, makeMemory)
