/**
 * The dedupe ledger: per client, the last processed mutation id, and per
 * (client, scope) the last processed id that targeted that scope.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { MemoryDatabase, type State } from "./memory/MemoryDatabase.js"
import type { StorageError } from "./StorageError.js"

export class Clients extends Context.Tag("@mizu/sync/Clients")<Clients, {
  /**
   * The client's last processed id (0 if unknown). Inside a `SyncStorage`
   * transaction it also locks the client's row until the transaction ends, so
   * two concurrent pushes of one client are processed one after the other.
   */
  readonly lastId: (clientId: string) => Effect.Effect<number, StorageError>
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
      const created = { last: 0, scopes: new Map<string, number>() }
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
    lastIdForScope: (clientId, scope) => db.read((state) => state.clients.get(clientId)?.scopes.get(scope) ?? 0),
    record: (clientId, id, scope) => db.write((state, undo) => recordIn(state, undo, clientId, id, scope)),
    recordAll: (clientId, processed) =>
      db.write((state, undo) => {
        for (const { id, scope } of processed) recordIn(state, undo, clientId, id, scope)
      })
  })
})

export const layerMemory: Layer.Layer<Clients, never, MemoryDatabase> = Layer.effect(Clients, makeMemory)
