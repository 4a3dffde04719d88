/**
 * The operator's view of a storage family (issue #20): per scope its log's
 * head and floor, its live row count, its stored checksum and compaction
 * mark; per client id its owner, last processed id, when it was last seen
 * and how many scopes it pushed to (expired clients as tombstones); and the
 * totals the metrics sample (`OperatorMetrics`).
 *
 * An optional service: every family of this package provides it with the
 * four storage services (`SyncStorage.layerMemory`, `SqlStorage.layerSqlite`,
 * `SqlStorage.layerPg`, `StorageConfig.layerConfig`), but it is not one of
 * `SyncStorage.Services`, so a storage family of an app's own need not. What
 * uses it (`AdminHttp`, `OperatorMetrics`) looks it up with
 * `Effect.serviceOption` and says so when it is absent.
 *
 * Guarantees of every implementation:
 * - **Keyset pages, bytewise order.** `scopes` and `clients` list entries
 *   with a key greater than `after` (all when absent), ascending by the
 *   UTF-8 bytes of the key (Postgres keys are `COLLATE "C"`, SQLite's are
 *   `BINARY`, memory compares code points), at most `limit` (clamped to
 *   1..`Admin.MAX_LIMIT`); `next` is the page's last key when more entries
 *   follow, absent otherwise. Entries that exist for a whole walk are seen
 *   exactly once.
 * - **One snapshot per page.** Each page is one read: one statement on the
 *   SQL families (row and scope counts grouped for the page's keys only),
 *   one lock hold in memory. So a scope's `rows` and `checksum` are of the
 *   same moment.
 * - Read-only: nothing is locked or written.
 *
 * A scope is listed once it has a log (a head row): written at least once.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type * as Admin from "../protocol/Admin.js"
import type { StorageError } from "./StorageError.js"

/**
 * Where a page starts and how long it is (see the module header).
 *
 * @since 0.1.0
 * @category models
 */
export interface Page {
  /** List keys greater than this (bytewise); absent: from the first. */
  readonly after?: string | undefined
  /** At most this many entries; clamped to 1..`Admin.MAX_LIMIT`. */
  readonly limit: number
}

/**
 * The storage-wide figures `OperatorMetrics` samples, all from one snapshot.
 *
 * @since 0.1.0
 * @category models
 */
export interface Totals {
  /** Scopes with a log. */
  readonly scopes: number
  /** Live rows, all scopes. */
  readonly rows: number
  /** Changes kept in the logs (above each scope's floor), all scopes. */
  readonly changes: number
  /** Client records of the dedupe ledger. */
  readonly clients: number
  /** Tombstones of expired clients. */
  readonly expired: number
}

/**
 * The operator's view (see the module header for its guarantees).
 *
 * @since 0.1.0
 * @category services
 */
export class Operator extends Context.Tag("@mizu/sync/Operator")<Operator, {
  /** A page of scopes, ascending bytewise. */
  readonly scopes: (page: Page) => Effect.Effect<Admin.ScopesResponse, StorageError>
  /** A page of client ids (records and tombstones of clients that have not returned), ascending bytewise. */
  readonly clients: (page: Page) => Effect.Effect<Admin.ClientsResponse, StorageError>
  /** The storage-wide totals (one statement on the SQL families; it counts every row, so sample it, do not poll it). */
  readonly totals: Effect.Effect<Totals, StorageError>
}>() {}

/**
 * A page's `limit`, clamped to 1..`max` (non-integers rounded down).
 *
 * @since 0.1.0
 * @category utils
 */
export const clampLimit = (limit: number, max: number): number =>
  Number.isFinite(limit) ? Math.max(1, Math.min(max, Math.floor(limit))) : max

/**
 * Order two strings by their UTF-8 bytes (that is, by code points): the
 * order of `COLLATE "C"` and SQLite's `BINARY`, which JavaScript's `<`
 * (UTF-16 code units) differs from above U+FFFF.
 *
 * @since 0.1.0
 * @category utils
 */
export const compareBytewise = (a: string, b: string): number => {
  if (a === b) return 0
  let i = 0
  while (i < a.length && i < b.length) {
    const x = a.codePointAt(i) ?? 0
    const y = b.codePointAt(i) ?? 0
    if (x !== y) return x < y ? -1 : 1
    i += x > 0xffff ? 2 : 1
  }
  return a.length < b.length ? -1 : a.length > b.length ? 1 : 0
}

/**
 * An epoch-ms time as the wire's ISO string, or `null` when unknown.
 *
 * @since 0.1.0
 * @category conversions
 */
export const isoOrNull = (ms: number | undefined | null): string | null =>
  ms === undefined || ms === null || !Number.isFinite(ms) ? null : new Date(ms).toISOString()
