/**
 * The SQL `Clients`: `mizu_clients (client_id, last, owner)`,
 * `mizu_client_scopes (client_id, scope, last)` and
 * `mizu_client_failures (client_id, id, code, message)`.
 *
 * Invariants:
 * - **Per-client serialization and ownership.** Inside a transaction
 *   `claim` (and `lastId`) is `INSERT … ON CONFLICT (client_id) DO UPDATE
 *   SET owner = COALESCE(owner, excluded.owner) RETURNING last, owner`: on
 *   Postgres it takes the client's row lock (also when the row is new: a
 *   concurrent inserter waits for the first), so concurrent pushes of one
 *   client run one after the other and see each other's `last`, and of two
 *   principals claiming a fresh id the second sees the first's committed
 *   owner (or, if the first rolled back, becomes the owner itself).
 * - **Last ids only move up** (`CASE WHEN excluded.last > last`).
 * - **Few statements.** `recordAll` is one statement on Postgres (scopes and
 *   failures as arrays through `unnest`), also when some mutations failed
 *   and are remembered; two on SQLite, four when some failed. A push whose
 *   mutations all succeeded writes no failure row. `lastId`, `claim`,
 *   `ownerOf`, `lastIdForScope` and `failures` are one statement each.
 * - **Remembered failures** are written with the ids, and the client's
 *   oldest beyond the window deleted in the same step; new failures have ids
 *   above every remembered one.
 * - **Expiry** (`mizu_clients.seen`, `mizu_expired_clients`; see `Clients`):
 *   the claim statements set `seen` and take a new row's `last` and owner
 *   from the client's tombstone, in the same statement; the reads take the
 *   larger of the record's and the tombstone's last. `expire` is one
 *   statement on Postgres (victims `FOR UPDATE SKIP LOCKED`, deleted from the
 *   three tables, tombstones upserted) and four in a transaction on SQLite
 *   (whose writers are serialized).
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Clients from "../../Clients.js"
import type { StorageError } from "../../StorageError.js"
import { chunked, multiRow, rowsPerInsert, type Statements } from "./statements.js"
import type { Transactions } from "./transaction.js"

interface Failed {
  readonly id: number
  readonly failure: Clients.Failure
}

type LastRow = { readonly last: number | string }
type ClaimRow = LastRow & { readonly client_id: string; readonly owner: string | null }
/** A Postgres claim's row: whether the statement inserted it. */
type ClaimRowPg = ClaimRow & { readonly inserted: boolean }
type FailureRow = { readonly id: number | string; readonly code: string; readonly message: string }

const lastUpsert = `ON CONFLICT (client_id) DO UPDATE
  SET last = CASE WHEN excluded.last > mizu_clients.last THEN excluded.last ELSE mizu_clients.last END`
const recordClientSql = `INSERT INTO mizu_clients (client_id, last) VALUES (?, ?) ${lastUpsert}`
const claimUpsert = "ON CONFLICT (client_id) DO UPDATE SET owner = COALESCE(mizu_clients.owner, excluded.owner), seen = excluded.seen"
/** A new row's last id and owner: from the client's tombstone, if it has one (`?`: the client id, twice, then the claimant). */
const fromTombstone = `COALESCE((SELECT e.last FROM mizu_expired_clients e WHERE e.client_id = ?), 0),
  COALESCE((SELECT e.owner FROM mizu_expired_clients e WHERE e.client_id = ?), ?)`
const tombLast = "(SELECT e.last FROM mizu_expired_clients e WHERE e.client_id = ?)"
const expiredUpsert = `ON CONFLICT (client_id) DO UPDATE
  SET last = CASE WHEN excluded.last > mizu_expired_clients.last THEN excluded.last ELSE mizu_expired_clients.last END,
  owner = COALESCE(excluded.owner, mizu_expired_clients.owner), expired = excluded.expired`
/** SQLite: the clients to expire (`?`: cutoff, limit), the same set in each statement of one transaction. */
const victimsSqlite = "SELECT client_id FROM mizu_clients WHERE seen < ? ORDER BY seen, client_id LIMIT ?"
const scopesUpsert = `ON CONFLICT (client_id, scope) DO UPDATE
  SET last = CASE WHEN excluded.last > mizu_client_scopes.last THEN excluded.last ELSE mizu_client_scopes.last END`
const failuresUpsert = `ON CONFLICT (client_id, id) DO UPDATE SET code = excluded.code, message = excluded.message`
/** Claims per SQLite statement: five parameters a row, so at most 200 rows (as many parameters as `rowsPerInsert` rows of two). */
const claimsPerStatement = Math.floor(rowsPerInsert * 2 / 5)

/** The statement texts of the ledger, normalized once. */
const texts = (q: Statements["q"]) => ({
  lastLocked: q(`INSERT INTO mizu_clients (client_id, last) VALUES (?, COALESCE(${tombLast}, 0))
    ON CONFLICT (client_id) DO UPDATE SET last = mizu_clients.last
    RETURNING last`),
  // Postgres: the same, saying whether this statement inserted the row (`heal`).
  lastLockedPg: q(`INSERT INTO mizu_clients (client_id, last) VALUES (?, COALESCE(${tombLast}, 0))
    ON CONFLICT (client_id) DO UPDATE SET last = mizu_clients.last
    RETURNING client_id, last, owner, (xmax = 0) AS inserted`),
  claimPg: q(`INSERT INTO mizu_clients (client_id, last, owner, seen) VALUES (?, ${fromTombstone}, ?) ${claimUpsert}
    RETURNING client_id, last, owner, (xmax = 0) AS inserted`),
  // Postgres: a row a claim inserted may have raced an expiry that committed while the INSERT waited on
  // the expired row's lock; the INSERT's snapshot is older than the tombstone, so it took last 0 and the
  // claimant as owner. A statement of its own (a fresh snapshot) reads the tombstone again and takes it.
  heal: q(`UPDATE mizu_clients c SET last = GREATEST(c.last, e.last), owner = COALESCE(e.owner, c.owner)
    FROM mizu_expired_clients e WHERE e.client_id = c.client_id AND c.client_id = ANY(?::text[])
    RETURNING c.client_id, c.last, c.owner`),
  lastPlain: q(`SELECT COALESCE((SELECT last FROM mizu_clients WHERE client_id = ?), ${tombLast}) AS last`),
  // Like lastLocked (the row lock), and the owner is set only where there is none yet.
  claim: q(`INSERT INTO mizu_clients (client_id, last, owner, seen) VALUES (?, ${fromTombstone}, ?) ${claimUpsert} RETURNING last, owner`),
  owner: q(`SELECT COALESCE((SELECT owner FROM mizu_clients WHERE client_id = ?),
    (SELECT e.owner FROM mizu_expired_clients e WHERE e.client_id = ?)) AS owner`),
  lastForScope: q(`SELECT CASE WHEN COALESCE(s.last, 0) >= COALESCE(t.last, 0) THEN COALESCE(s.last, 0) ELSE t.last END AS last
    FROM (SELECT (SELECT last FROM mizu_client_scopes WHERE client_id = ? AND scope = ?) AS last) AS s,
    (SELECT ${tombLast} AS last) AS t`),
  expirePg: q(`WITH v AS (
      SELECT client_id FROM mizu_clients WHERE seen < ? ORDER BY seen, client_id LIMIT ? FOR UPDATE SKIP LOCKED
    ), d AS (
      DELETE FROM mizu_clients c USING v WHERE c.client_id = v.client_id RETURNING c.client_id, c.last, c.owner
    ), s AS (
      DELETE FROM mizu_client_scopes WHERE client_id IN (SELECT client_id FROM d)
    ), f AS (
      DELETE FROM mizu_client_failures WHERE client_id IN (SELECT client_id FROM d)
    )
    INSERT INTO mizu_expired_clients (client_id, last, owner, expired)
    SELECT client_id, last, owner, ?::bigint FROM d ${expiredUpsert} RETURNING client_id`),
  expireTombstones: q(`INSERT INTO mizu_expired_clients (client_id, last, owner, expired)
    SELECT client_id, last, owner, ? FROM mizu_clients WHERE client_id IN (${victimsSqlite}) ${expiredUpsert}`),
  expireScopes: q(`DELETE FROM mizu_client_scopes WHERE client_id IN (${victimsSqlite})`),
  expireFailures: q(`DELETE FROM mizu_client_failures WHERE client_id IN (${victimsSqlite})`),
  expireClients: q(`DELETE FROM mizu_clients WHERE client_id IN (${victimsSqlite}) RETURNING client_id`),
  counts: q(`SELECT (SELECT count(*) FROM mizu_clients) AS clients, (SELECT count(*) FROM mizu_expired_clients) AS expired`),
  // Postgres: both tables in one statement, the scopes as arrays (one text for any number of scopes).
  recordPg: q(`WITH c AS (${recordClientSql})
    INSERT INTO mizu_client_scopes (client_id, scope, last)
    SELECT ?, v.scope, v.last FROM unnest(?::text[], ?::bigint[]) AS v (scope, last)
    ${scopesUpsert}`),
  // Postgres: the ledger and the failures in one statement. The DELETE and the INSERT see the same
  // snapshot, so the DELETE keeps the newest (window - new) rows below the first new id.
  recordWithFailuresPg: q(`WITH c AS (${recordClientSql}),
    s AS (
      INSERT INTO mizu_client_scopes (client_id, scope, last)
      SELECT ?, v.scope, v.last FROM unnest(?::text[], ?::bigint[]) AS v (scope, last)
      ${scopesUpsert}
    ), d AS (
      DELETE FROM mizu_client_failures
      WHERE client_id = ? AND id < ? AND id <= (
        SELECT f.id FROM mizu_client_failures f WHERE f.client_id = ? AND f.id < ?
        ORDER BY f.id DESC LIMIT 1 OFFSET ?
      )
    )
    INSERT INTO mizu_client_failures (client_id, id, code, message)
    SELECT ?, v.id, v.code, v.message FROM unnest(?::bigint[], ?::text[], ?::text[]) AS v (id, code, message)
    ${failuresUpsert}`),
  recordClient: q(recordClientSql),
  // Several clients in one statement (`claimAll`, `recordEach`).
  claimMany: multiRow(q, "INSERT INTO mizu_clients (client_id, last, owner, seen) VALUES", `(?, ${fromTombstone}, ?)`, `${claimUpsert} RETURNING client_id, last, owner`, claimsPerStatement),
  claimManyPg: q(`INSERT INTO mizu_clients (client_id, last, owner, seen)
    SELECT v.client_id, COALESCE(e.last, 0), COALESCE(e.owner, v.owner), ?::bigint
    FROM unnest(?::text[], ?::text[]) AS v (client_id, owner) LEFT JOIN mizu_expired_clients e ON e.client_id = v.client_id
    ORDER BY v.client_id
    ${claimUpsert} RETURNING client_id, last, owner, (xmax = 0) AS inserted`),
  recordClients: multiRow(q, "INSERT INTO mizu_clients (client_id, last) VALUES", "(?, ?)", lastUpsert),
  recordManyPg: q(`WITH c AS (
      INSERT INTO mizu_clients (client_id, last)
      SELECT v.client_id, v.last FROM unnest(?::text[], ?::bigint[]) AS v (client_id, last)
      ${lastUpsert}
    )
    INSERT INTO mizu_client_scopes (client_id, scope, last)
    SELECT v.client_id, v.scope, v.last FROM unnest(?::text[], ?::text[], ?::bigint[]) AS v (client_id, scope, last)
    ${scopesUpsert}`),
  recordScopes: multiRow(q, "INSERT INTO mizu_client_scopes (client_id, scope, last) VALUES", "(?, ?, ?)", scopesUpsert),
  insertFailures: multiRow(q, "INSERT INTO mizu_client_failures (client_id, id, code, message) VALUES", "(?, ?, ?, ?)", failuresUpsert),
  // SQLite: after the insert, drop every row older than the window's newest `remembered`.
  forgetFailures: q(`DELETE FROM mizu_client_failures WHERE client_id = ? AND id <= (
    SELECT id FROM mizu_client_failures WHERE client_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)`),
  failures: q("SELECT id, code, message FROM mizu_client_failures WHERE client_id = ? AND id >= ? AND id <= ?")
})

/** What `recordAll` writes: the highest id, each scope's highest id, and the failures to remember (ascending ids). */
interface Ledger {
  readonly last: number
  readonly scopes: ReadonlyMap<string, number>
  readonly failed: ReadonlyArray<Failed>
}

/** Fold processed mutations into what is written; only the newest `remembered` failures are kept (older would be forgotten at once). */
const ledgerOf = (processed: ReadonlyArray<Clients.Processed>, remembered: number): Ledger => {
  let last = processed[0].id
  const scopes = new Map<string, number>()
  const failed: Array<Failed> = []
  for (const { failure, id, scope } of processed) {
    if (id > last) last = id
    const known = scopes.get(scope)
    if (known === undefined || id > known) scopes.set(scope, id)
    if (failure !== undefined && remembered > 0) failed.push({ id, failure })
  }
  failed.sort((a, b) => a.id - b.id)
  return { last, scopes, failed: failed.length > remembered ? failed.slice(failed.length - remembered) : failed }
}

/**
 * The ledger over the family's statements and transactions, remembering
 * `remembered` failures per client. A builder: its body is one small named
 * helper per dialect and operation over the statement texts made once.
 */
export const make = (
  { isPg, q, query }: Statements,
  { atomic, mayLock }: Transactions,
  remembered: number
): Clients.Clients["Type"] => {
  const text = texts(q)
  const none = () => undefined

  /** Postgres: one statement, with or without failures. */
  const recordPg = (clientId: string, { failed, last, scopes }: Ledger): Effect.Effect<void, StorageError> => {
    const scopeParams = [clientId, last, clientId, [...scopes.keys()], [...scopes.values()]]
    if (failed.length === 0) return query(text.recordPg, scopeParams, "Clients.recordAll", none)
    const first = failed[0].id
    return query(
      text.recordWithFailuresPg,
      [
        ...scopeParams,
        clientId,
        first,
        clientId,
        first,
        remembered - failed.length,
        clientId,
        failed.map((f) => f.id),
        failed.map((f) => f.failure.code),
        failed.map((f) => f.failure.message)
      ],
      "Clients.recordAll",
      none
    )
  }

  /** SQLite: remember failures (ascending ids, at most the window) and forget the oldest beyond it. */
  const rememberSqlite = (clientId: string, failed: ReadonlyArray<Failed>): Effect.Effect<void, StorageError> => {
    const insert = chunked(failed.length, (start, end) => {
      const params: Array<unknown> = []
      for (let i = start; i < end; i++) params.push(clientId, failed[i].id, failed[i].failure.code, failed[i].failure.message)
      return query(text.insertFailures(end - start), params, "Clients.recordAll", none)
    })
    return Effect.zipRight(insert, query(text.forgetFailures, [clientId, clientId, remembered], "Clients.recordAll", none))
  }

  /** SQLite: the client's row, its scopes' rows, then the failures, as one atomic step. */
  const recordSqlite = (clientId: string, { failed, last, scopes }: Ledger): Effect.Effect<void, StorageError> => {
    const params: Array<unknown> = []
    for (const [scope, id] of scopes) params.push(clientId, scope, id)
    const ledger = Effect.zipRight(
      query(text.recordClient, [clientId, last], "Clients.recordAll", none),
      query(text.recordScopes(scopes.size), params, "Clients.recordAll", none)
    )
    return atomic(failed.length === 0 ? ledger : Effect.zipRight(ledger, rememberSqlite(clientId, failed)), "Clients.recordAll")
  }

  const record = isPg ? recordPg : recordSqlite

  const failures = (clientId: string, ids: ReadonlyArray<number>) => {
    if (ids.length === 0 || remembered === 0) return Effect.succeed(new Map<number, Clients.Failure>())
    let low = ids[0]
    let high = ids[0]
    for (const id of ids) {
      if (id < low) low = id
      if (id > high) high = id
    }
    return query<FailureRow, ReadonlyMap<number, Clients.Failure>>(text.failures, [clientId, low, high], "Clients.failures", (rows) => {
      const wanted = new Set(ids)
      const found = new Map<number, Clients.Failure>()
      for (const row of rows) {
        const id = Number(row.id)
        if (!wanted.has(id)) continue
        if (!Clients.isFailureCode(row.code)) throw new Error(`unknown failure code ${JSON.stringify(row.code)}`)
        found.set(id, { code: row.code, message: row.message })
      }
      return found
    })
  }

  const lastOf = (rows: ReadonlyArray<LastRow>) => rows[0] === undefined ? 0 : Number(rows[0].last)

  /**
   * Postgres: a claim's rows, with those it inserted healed (`text.heal`):
   * a client whose record an expiry removed while the claim waited keeps its
   * last id and owner, so what it had pushed before is still a duplicate.
   */
  const claimedPg = (rows: ReadonlyArray<ClaimRowPg>, what: string): Effect.Effect<ReadonlyArray<ClaimRow>, StorageError> => {
    const inserted = rows.filter((row) => row.inserted).map((row) => row.client_id)
    if (inserted.length === 0) return Effect.succeed(rows)
    return query<ClaimRow, ReadonlyArray<ClaimRow>>(text.heal, [inserted], what, (healed) => {
      const byId = new Map(healed.map((row) => [row.client_id, row] as const))
      return rows.map((row) => byId.get(row.client_id) ?? row)
    })
  }

  /** One statement's claims (at most `claimsPerStatement` on SQLite), into `found`; Postgres locks the rows in client id order. */
  const claimSome = (claims: ReadonlyArray<Clients.Claimant>, found: Map<string, Clients.Claim>, now: number) => {
    const read = (rows: ReadonlyArray<ClaimRow>) => {
      for (const row of rows) found.set(row.client_id, { owner: row.owner ?? undefined, last: Number(row.last) })
    }
    if (isPg) {
      const sorted = [...claims].sort((a, b) => a.clientId < b.clientId ? -1 : a.clientId > b.clientId ? 1 : 0)
      return query<ClaimRowPg, ReadonlyArray<ClaimRowPg>>(
        text.claimManyPg,
        [now, sorted.map((c) => c.clientId), sorted.map((c) => c.owner ?? null)],
        "Clients.claimAll",
        (rows) => rows
      ).pipe(Effect.flatMap((rows) => claimedPg(rows, "Clients.claimAll")), Effect.map(read))
    }
    const params: Array<unknown> = []
    for (const { clientId, owner } of claims) params.push(clientId, clientId, clientId, owner ?? null, now)
    return query(text.claimMany(claims.length), params, "Clients.claimAll", read)
  }

  const claimAll = (claims: ReadonlyArray<Clients.Claimant>): Effect.Effect<ReadonlyMap<string, Clients.Claim>, StorageError> =>
    Effect.clockWith((clock) => {
      const now = clock.unsafeCurrentTimeMillis()
      const found = new Map<string, Clients.Claim>()
      if (claims.length === 0) return Effect.succeed(found)
      const chunks = isPg
        ? [claims]
        : Array.from({ length: Math.ceil(claims.length / claimsPerStatement) }, (_, i) => claims.slice(i * claimsPerStatement, (i + 1) * claimsPerStatement))
      return Effect.as(chunks.length === 1 ? claimSome(chunks[0], found, now) : Effect.forEach(chunks, (chunk) => claimSome(chunk, found, now), { discard: true }), found)
    })

  /** Postgres: the clients without failures in one statement, each with failures in its own (`recordPg`). */
  const recordEachPg = (ledgers: ReadonlyArray<readonly [string, Ledger]>): Effect.Effect<void, StorageError> => {
    const plain = ledgers.filter(([, ledger]) => ledger.failed.length === 0)
    const ids: Array<string> = []
    const lasts: Array<number> = []
    const scopeIds: Array<string> = []
    const scopes: Array<string> = []
    const scopeLasts: Array<number> = []
    for (const [clientId, ledger] of plain) {
      ids.push(clientId)
      lasts.push(ledger.last)
      for (const [scope, id] of ledger.scopes) {
        scopeIds.push(clientId)
        scopes.push(scope)
        scopeLasts.push(id)
      }
    }
    const batch = plain.length === 0 ? Effect.void : query(text.recordManyPg, [ids, lasts, scopeIds, scopes, scopeLasts], "Clients.recordEach", none)
    const failing = ledgers.filter(([, ledger]) => ledger.failed.length > 0)
    return failing.length === 0 ? batch : Effect.zipRight(batch, Effect.forEach(failing, ([clientId, ledger]) => recordPg(clientId, ledger), { discard: true }))
  }

  /** SQLite: every client's row, then every scope's row (a statement per 500 rows each), then the failures of those with some. */
  const recordEachSqlite = (ledgers: ReadonlyArray<readonly [string, Ledger]>): Effect.Effect<void, StorageError> => {
    const rows: Array<readonly [string, string, number]> = []
    for (const [clientId, ledger] of ledgers) for (const [scope, id] of ledger.scopes) rows.push([clientId, scope, id])
    const clientRows = chunked(ledgers.length, (start, end) => {
      const params: Array<unknown> = []
      for (let i = start; i < end; i++) params.push(ledgers[i][0], ledgers[i][1].last)
      return query(text.recordClients(end - start), params, "Clients.recordEach", none)
    })
    const scopeRows = chunked(rows.length, (start, end) => {
      const params: Array<unknown> = []
      for (let i = start; i < end; i++) params.push(...rows[i])
      return query(text.recordScopes(end - start), params, "Clients.recordEach", none)
    })
    const failing = ledgers.filter(([, ledger]) => ledger.failed.length > 0)
    const written = Effect.zipRight(clientRows, scopeRows)
    const all = failing.length === 0
      ? written
      : Effect.zipRight(written, Effect.forEach(failing, ([clientId, ledger]) => rememberSqlite(clientId, ledger.failed), { discard: true }))
    return atomic(all, "Clients.recordEach")
  }

  const recordEach = (records: ReadonlyArray<Clients.ClientRecord>): Effect.Effect<void, StorageError> => {
    const ledgers = records
      .filter((record) => record.processed.length > 0)
      .map((record) => [record.clientId, ledgerOf(record.processed, remembered)] as const)
    if (ledgers.length === 0) return Effect.void
    return isPg ? recordEachPg(ledgers) : recordEachSqlite(ledgers)
  }

  return {
    lastId: (clientId) =>
      Effect.flatMap(mayLock, (locking) => {
        if (!locking) return query(text.lastPlain, [clientId, clientId], "Clients.lastId", lastOf)
        if (!isPg) return query(text.lastLocked, [clientId, clientId], "Clients.lastId", lastOf)
        return query<ClaimRowPg, ReadonlyArray<ClaimRowPg>>(text.lastLockedPg, [clientId, clientId], "Clients.lastId", (rows) => rows).pipe(
          Effect.flatMap((rows) => claimedPg(rows, "Clients.lastId")),
          Effect.map(lastOf)
        )
      }),
    claim: (clientId, owner) =>
      Effect.clockWith((clock) => {
        const params = [clientId, clientId, clientId, owner ?? null, clock.unsafeCurrentTimeMillis()]
        const claimed = isPg
          ? Effect.flatMap(
            query<ClaimRowPg, ReadonlyArray<ClaimRowPg>>(text.claimPg, params, "Clients.claim", (rows) => rows),
            (rows) => claimedPg(rows, "Clients.claim")
          )
          : query<ClaimRow, ReadonlyArray<ClaimRow>>(text.claim, params, "Clients.claim", (rows) => rows)
        return Effect.map(claimed, (rows): Clients.Claim => {
          const row = rows[0]
          return row === undefined ? { owner, last: 0 } : { owner: row.owner ?? undefined, last: Number(row.last) }
        })
      }),
    ownerOf: (clientId) =>
      query<{ readonly owner: string | null }, string | undefined>(text.owner, [clientId, clientId], "Clients.ownerOf", (rows) => rows[0]?.owner ?? undefined),
    lastIdForScope: (clientId, scope) => query(text.lastForScope, [clientId, scope, clientId], "Clients.lastIdForScope", lastOf),
    expire: (cutoff, limit, now) => {
      const n = Math.max(0, Math.floor(limit))
      const count = (rows: ReadonlyArray<object>) => rows.length
      if (isPg) return query(text.expirePg, [cutoff, n, now], "Clients.expire", count)
      const victims = [cutoff, n]
      return atomic(
        Effect.zipRight(
          Effect.all([
            query(text.expireTombstones, [now, ...victims], "Clients.expire", none),
            query(text.expireScopes, victims, "Clients.expire", none),
            query(text.expireFailures, victims, "Clients.expire", none)
          ], { discard: true }),
          query(text.expireClients, victims, "Clients.expire", count)
        ),
        "Clients.expire"
      )
    },
    counts: query<{ readonly clients: number | string; readonly expired: number | string }, Clients.Counts>(
      text.counts,
      [],
      "Clients.counts",
      (rows) => ({ clients: Number(rows[0]?.clients ?? 0), expired: Number(rows[0]?.expired ?? 0) })
    ),
    recordAll: (clientId, processed) => processed.length === 0 ? Effect.void : record(clientId, ledgerOf(processed, remembered)),
    claimAll,
    recordEach,
    failures
  }
}
