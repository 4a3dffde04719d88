/**
 * The memory `Clients` over a `MemoryDatabase`: per client its last id, its
 * per-scope last ids, its owner and its remembered failures (at most the
 * window, the oldest forgotten first); every write registers its undo step.
 * Expired clients leave a tombstone in `state.expired` (see `Clients`).
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Clients from "../../Clients.js"
import type { ClientState, MemoryDatabase, State } from "./memoryDatabase.js"

type Undo = (step: () => void) => void

/**
 * The memory implementation over one `MemoryDatabase`, remembering `window`
 * failures per client. A builder: small named write steps (each with its
 * undo) and one short method per operation.
 */
export const make = (db: MemoryDatabase, window: number): Clients.Clients["Type"] => {
  const clientIn = (state: State, undo: Undo, clientId: string): ClientState => {
    const client = state.clients.get(clientId)
    if (client !== undefined) return client
    const tomb = state.expired.get(clientId)
    const created: ClientState = { last: tomb?.last ?? 0, owner: tomb?.owner, scopes: new Map(), failures: new Map() }
    state.clients.set(clientId, created)
    undo(() => state.clients.delete(clientId))
    return created
  }
  /** One processed id, written with its undo steps. */
  const recordIn = (state: State, undo: Undo, clientId: string, id: number, scope: string) => {
    const target = clientIn(state, undo, clientId)
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
  /** Remember a failure, then forget the oldest beyond the window (undoably). */
  const rememberIn = (state: State, undo: Undo, clientId: string, id: number, failed: Clients.Failure) => {
    const failures = clientIn(state, undo, clientId).failures
    const previous = failures.get(id)
    failures.set(id, failed)
    undo(() => {
      if (previous === undefined) failures.delete(id)
      else failures.set(id, previous)
    })
    if (failures.size <= window) return
    const forgotten = [...failures.keys()].sort((a, b) => a - b).slice(0, failures.size - window)
    for (const old of forgotten) {
      const kept = failures.get(old)
      failures.delete(old)
      if (kept !== undefined) undo(() => failures.set(old, kept))
    }
  }
  /** Claim one client id for `owner` at `now` (undoably): the owner after that, and its last id (from the tombstone for a returning client). */
  const claimIn = (state: State, undo: Undo, clientId: string, owner: string | undefined, now: number): Clients.Claim => {
    const client = state.clients.get(clientId)
    if (client === undefined) {
      // created also for the anonymous principal (as the SQL claim does), so that its `seen` is kept
      const tomb = state.expired.get(clientId)
      const created: ClientState = { last: tomb?.last ?? 0, owner: tomb?.owner ?? owner, scopes: new Map(), failures: new Map(), seen: now }
      state.clients.set(clientId, created)
      undo(() => state.clients.delete(clientId))
      return { owner: created.owner, last: created.last }
    }
    const seen = client.seen
    client.seen = now
    if (client.owner === undefined && owner !== undefined) {
      client.owner = owner
      undo(() => {
        client.owner = undefined
      })
    }
    undo(() => {
      client.seen = seen
    })
    return { owner: client.owner, last: client.last }
  }
  /** Remove at most `limit` clients seen before `cutoff`, least recent first, keeping tombstones (undoably). */
  const expireIn = (state: State, undo: Undo, cutoff: number, limit: number, now: number): number => {
    const idle = [...state.clients].filter(([, c]) => c.seen !== undefined && c.seen < cutoff)
      .sort(([a, x], [b, y]) => (x.seen ?? 0) - (y.seen ?? 0) || (a < b ? -1 : a > b ? 1 : 0))
      .slice(0, Math.max(0, limit))
    for (const [clientId, client] of idle) {
      const previous = state.expired.get(clientId)
      state.clients.delete(clientId)
      state.expired.set(clientId, { last: Math.max(client.last, previous?.last ?? 0), owner: client.owner ?? previous?.owner, expired: now })
      undo(() => {
        state.clients.set(clientId, client)
        if (previous === undefined) state.expired.delete(clientId)
        else state.expired.set(clientId, previous)
      })
    }
    return idle.length
  }
  /** One client's processed mutations (undoably). */
  const recordAllIn = (state: State, undo: Undo, clientId: string, processed: ReadonlyArray<Clients.Processed>) => {
    for (const { failure: failed, id, scope } of processed) {
      recordIn(state, undo, clientId, id, scope)
      if (failed !== undefined && window > 0) rememberIn(state, undo, clientId, id, failed)
    }
  }
  const service: Clients.Clients["Type"] = {
    lastId: (clientId) =>
      db.read((state) => Math.max(state.clients.get(clientId)?.last ?? 0, state.expired.get(clientId)?.last ?? 0)),
    claim: (clientId, owner) =>
      Effect.clockWith((clock) => db.write((state, undo) => claimIn(state, undo, clientId, owner, clock.unsafeCurrentTimeMillis()))),
    claimAll: (claims) =>
      Effect.clockWith((clock) =>
        db.write((state, undo) => {
          const now = clock.unsafeCurrentTimeMillis()
          const found = new Map<string, Clients.Claim>()
          for (const { clientId, owner } of claims) found.set(clientId, claimIn(state, undo, clientId, owner, now))
          return found
        })
      ),
    ownerOf: (clientId) => db.read((state) => state.clients.get(clientId)?.owner ?? state.expired.get(clientId)?.owner),
    lastIdForScope: (clientId, scope) =>
      db.read((state) => Math.max(state.clients.get(clientId)?.scopes.get(scope) ?? 0, state.expired.get(clientId)?.last ?? 0)),
    expire: (cutoff, limit, now) => db.write((state, undo) => expireIn(state, undo, cutoff, limit, now)),
    counts: db.read((state) => ({ clients: state.clients.size, expired: state.expired.size })),
    recordAll: (clientId, processed) => db.write((state, undo) => recordAllIn(state, undo, clientId, processed)),
    recordEach: (records) =>
      db.write((state, undo) => {
        for (const { clientId, processed } of records) recordAllIn(state, undo, clientId, processed)
      }),
    failures: (clientId, ids) =>
      db.read((state) => {
        const found = new Map<number, Clients.Failure>()
        const failures = state.clients.get(clientId)?.failures
        if (failures === undefined || failures.size === 0) return found
        for (const id of ids) {
          const failed = failures.get(id)
          if (failed !== undefined) found.set(id, failed)
        }
        return found
      })
  }
  return service
}
