/**
 * The memory `Operator` over a `MemoryDatabase`: each page is one read under
 * the database's lock (one snapshot), the keys filtered past `after` and
 * sorted bytewise (`Operator.compareBytewise`). Costs O(n log n) per page in
 * the number of keys past `after`: fine for tests and demos, which is what
 * the memory family is for.
 *
 * @internal
 */
import * as Admin from "../../../protocol/Admin.js"
import * as Operator from "../../Operator.js"
import type { LogState, MemoryDatabase, State } from "./memoryDatabase.js"

/** The keys past `after`, ascending bytewise: the page (at most `limit`) and whether more follow. */
const pageOf = (keys: Iterable<string>, page: Operator.Page) => {
  const limit = Operator.clampLimit(page.limit, Admin.MAX_LIMIT)
  const after = page.after
  const past: Array<string> = []
  for (const key of keys) if (after === undefined || Operator.compareBytewise(key, after) > 0) past.push(key)
  past.sort(Operator.compareBytewise)
  const taken = past.slice(0, limit)
  const last = taken[taken.length - 1]
  return { keys: taken, next: past.length > limit ? last : undefined }
}

const rowsOf = (state: State, scope: string): number => {
  let n = 0
  for (const rows of state.store.get(scope)?.values() ?? []) n += rows.size
  return n
}

const scopeInfo = (state: State, scope: string, log: LogState): Admin.ScopeInfo => ({
  scope,
  head: log.head,
  floor: log.floor,
  rows: rowsOf(state, scope),
  checksum: log.checksum,
  compacted: log.compacted,
  compacted_at: Operator.isoOrNull(log.compactedAt)
})

/** One client id: its record (with what its tombstone adds, as `Clients` reads do) or its tombstone. */
const clientInfo = (state: State, clientId: string): Admin.ClientInfo | undefined => {
  const client = state.clients.get(clientId)
  const tomb = state.expired.get(clientId)
  if (client !== undefined) {
    const owner = client.owner ?? tomb?.owner
    return {
      client_id: clientId,
      ...(owner === undefined ? {} : { owner }),
      last_id: Math.max(client.last, tomb?.last ?? 0),
      seen: Operator.isoOrNull(client.seen),
      scopes: client.scopes.size
    }
  }
  if (tomb === undefined) return undefined
  return {
    client_id: clientId,
    ...(tomb.owner === undefined ? {} : { owner: tomb.owner }),
    last_id: tomb.last,
    seen: null,
    expired: true,
    expired_at: new Date(tomb.expired).toISOString()
  }
}

/** The memory implementation over one `MemoryDatabase`. */
export const make = (db: MemoryDatabase): Operator.Operator["Type"] => ({
  scopes: (page) =>
    db.read((state) => {
      const { keys, next } = pageOf(state.logs.keys(), page)
      const scopes: Array<Admin.ScopeInfo> = []
      for (const scope of keys) {
        const log = state.logs.get(scope)
        if (log !== undefined) scopes.push(scopeInfo(state, scope, log))
      }
      return next === undefined ? { scopes } : { scopes, next }
    }),
  clients: (page) =>
    db.read((state) => {
      const ids = new Set(state.clients.keys())
      for (const id of state.expired.keys()) ids.add(id)
      const { keys, next } = pageOf(ids, page)
      const clients: Array<Admin.ClientInfo> = []
      for (const id of keys) {
        const info = clientInfo(state, id)
        if (info !== undefined) clients.push(info)
      }
      return next === undefined ? { clients } : { clients, next }
    }),
  totals: db.read((state) => {
    let rows = 0
    let changes = 0
    for (const scope of state.store.keys()) rows += rowsOf(state, scope)
    for (const log of state.logs.values()) changes += log.changes.length
    return { scopes: state.logs.size, rows, changes, clients: state.clients.size, expired: state.expired.size }
  })
})
