/**
 * Wire Schemas of the operator view (PROTOCOL.md "GET /_sync/admin/scopes"):
 * the query of `GET {prefix}/admin/scopes` and `GET {prefix}/admin/clients`
 * and their response bodies.
 *
 * Pages are keyset pages: a listing is ordered by its key (the scope, the
 * client id) bytewise, `after` starts it past a key, and `next` (present
 * only when more entries follow) is the `after` of the next page. Walking
 * `next` from no `after` visits every entry that exists for the whole walk
 * exactly once, in order. Field names are snake_case as in `Sync.ts`, and a
 * field named here is never renamed or given a new meaning (fields may be
 * added).
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"
import { Cursor } from "./Sync.js"

/**
 * The longest `after` accepted, in UTF-16 code units: 256 (a scope's or a
 * client id's longest is shorter).
 *
 * @since 0.1.0
 * @category constants
 */
export const MAX_AFTER_LENGTH = 256

/**
 * The page size when `limit` is absent: 100.
 *
 * @since 0.1.0
 * @category constants
 */
export const DEFAULT_LIMIT = 100

/**
 * The largest `limit`: 1000.
 *
 * @since 0.1.0
 * @category constants
 */
export const MAX_LIMIT = 1000

/**
 * The query of both listings, from URL search parameters (strings):
 * `after` (optional, at most `MAX_AFTER_LENGTH`) and `limit` (an integer
 * 1..`MAX_LIMIT`, default `DEFAULT_LIMIT`). Unknown parameters are ignored;
 * a repeated one is invalid.
 *
 * @since 0.1.0
 * @category schemas
 */
export const PageQuery = Schema.Struct({
  after: Schema.optional(Schema.String.pipe(Schema.maxLength(MAX_AFTER_LENGTH, {
    message: () => `must be at most ${MAX_AFTER_LENGTH} characters`
  }))),
  limit: Schema.optionalWith(
    Schema.NumberFromString.annotations({ message: () => `must be an integer between 1 and ${MAX_LIMIT}` }).pipe(
      Schema.int({ message: () => "must be an integer" }),
      Schema.between(1, MAX_LIMIT, { message: () => `must be an integer between 1 and ${MAX_LIMIT}` })
    ),
    { default: () => DEFAULT_LIMIT }
  )
})
/**
 * A decoded `PageQuery`: `limit` always present.
 *
 * @since 0.1.0
 * @category models
 */
export type PageQuery = typeof PageQuery.Type

/** An integer in `[0, MAX_SAFE_INTEGER]`. */
const Count = Schema.Number.pipe(Schema.int(), Schema.between(0, Number.MAX_SAFE_INTEGER))

/**
 * An ISO 8601 timestamp (`Date.prototype.toISOString`), or `null` when not known.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Timestamp = Schema.NullOr(Schema.String)

/**
 * One scope as the operator sees it, read from one snapshot: its log's
 * `head` and `floor`, its live row count, its stored `checksum` (`Checksum`,
 * what a snapshot's rows sum to unless the stored value drifted), its
 * compaction mark (`compacted`: changes at or below it may have been folded
 * into later ones; 0 when never compacted) and when it was last compacted.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ScopeInfo = Schema.Struct({
  scope: Schema.String,
  head: Cursor,
  floor: Cursor,
  rows: Count,
  checksum: Count,
  compacted: Cursor,
  compacted_at: Timestamp
})
/**
 * A decoded `ScopeInfo`.
 *
 * @since 0.1.0
 * @category models
 */
export type ScopeInfo = typeof ScopeInfo.Type

/**
 * One client id as the operator sees it. A client with a ledger record:
 * its owner (absent when none), its last processed id, when it last pushed
 * (`seen`; `null` when not recorded) and how many scopes it has pushed to.
 * A client whose record expired and has not come back (a tombstone):
 * `expired: true`, `expired_at`, its last id and owner, `seen: null` and no
 * `scopes`. A returning client is listed once, by its record.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ClientInfo = Schema.Struct({
  client_id: Schema.String,
  owner: Schema.optional(Schema.String),
  last_id: Cursor,
  seen: Timestamp,
  scopes: Schema.optional(Count),
  expired: Schema.optional(Schema.Literal(true)),
  expired_at: Schema.optional(Schema.String)
})
/**
 * A decoded `ClientInfo`.
 *
 * @since 0.1.0
 * @category models
 */
export type ClientInfo = typeof ClientInfo.Type

/**
 * The body of `GET {prefix}/admin/scopes`: at most `limit` scopes after
 * `after`, ascending bytewise; `next` when more follow.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ScopesResponse = Schema.Struct({
  scopes: Schema.Array(ScopeInfo),
  next: Schema.optional(Schema.String)
})
/**
 * A decoded `ScopesResponse`.
 *
 * @since 0.1.0
 * @category models
 */
export type ScopesResponse = typeof ScopesResponse.Type

/**
 * The body of `GET {prefix}/admin/clients`: at most `limit` client ids after
 * `after`, ascending bytewise; `next` when more follow.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ClientsResponse = Schema.Struct({
  clients: Schema.Array(ClientInfo),
  next: Schema.optional(Schema.String)
})
/**
 * A decoded `ClientsResponse`.
 *
 * @since 0.1.0
 * @category models
 */
export type ClientsResponse = typeof ClientsResponse.Type
