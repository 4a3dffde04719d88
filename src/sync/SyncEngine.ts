/**
 * push / pull / snapshot: the logic of PROTOCOL.md section 1.
 *
 * Invariants:
 * - **Exactly once.** A push with `client_id` is one `SyncStorage.transaction`
 *   holding the claim of the client id, the mutators' writes, the log
 *   appends and the client's new last ids: all take effect or none. The
 *   claim locks the client's row (SQL layers), so concurrent retries of one
 *   client are serialized and a mutation id is processed once; an id at or
 *   below the client's last is a duplicate (answered `ok`, or with its
 *   remembered failure), an id past `last + 1` ends the request with
 *   `out_of_order` for it and every later one.
 * - **A failed mutation only consumes its id.** Its writes are rolled back
 *   and its failure remembered (`Clients`), so a retry whose first reply was
 *   lost gets the same code and message. An attempt runs without savepoints;
 *   a mutation that fails after writing rolls that attempt back whole and
 *   the push runs again with a savepoint around each mutation.
 * - **Gap-free cursors in mutation order.** Every scope of the push is
 *   locked first, in one global order (writers queue instead of
 *   deadlocking); the changes are appended once per scope after the last
 *   mutation, and each result's cursor is the scope's head once the changes
 *   up to it are counted.
 * - **Results and pokes only after the commit.** Without `client_id` each
 *   mutation commits on its own and the scopes are poked when the request
 *   ends, with what committed.
 * - **Ownership.** A `client_id` belongs to the principal whose push first
 *   used it; every scope of a request is authorized first and must yield one
 *   principal, and another principal's id fails with `forbidden` before any
 *   answer could reveal that client's ids (pull and snapshot check the
 *   owner first in their read).
 * - **Consistent reads.** Pull reads head, floor, changes and
 *   `last_mutation_id` in one `readConsistent`, so `last_mutation_id` never
 *   claims a mutation whose changes the page does not yet reach.
 * - **Errors.** Every failure is a `ProtocolError`: a `StorageError`
 *   (`StorageError.toProtocolError`: `503 unavailable`, or
 *   `400 invalid_request` for `invalid`), a denial
 *   (`Authorizer.toProtocolError`). A lost lock conflict is retried a few
 *   times first (the transaction was rolled back whole).
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import type * as Protocol from "../protocol/Sync.js"
import type { ProtocolError } from "../protocol/Sync.js"
import type * as Authorizer from "./Authorizer.js"
import type { ChangeLog } from "./ChangeLog.js"
import type * as Clients from "./Clients.js"
import * as internal from "./internal/syncEngine.js"
import type { Mutator } from "./Mutator.js"
import type { PokeBroker } from "./PokeBroker.js"
import type { Store } from "./Store.js"
import type { SyncStorage } from "./SyncStorage.js"

/**
 * Who is asking: what the `Authorizer` sees besides the action and scope.
 *
 * @since 0.1.0
 * @category models
 */
export interface Caller {
  readonly token: string | undefined
  readonly headers: Readonly<Record<string, string | undefined>>
}

/**
 * A caller with no credentials (tests, trusted in-process callers behind an
 * allow-all authorizer); any other authorizer decides what it may do.
 *
 * @since 0.1.0
 * @category constructors
 */
export const anonymous: Caller = { token: undefined, headers: {} }

/**
 * The sync endpoints' logic (PROTOCOL.md section 1), independent of the
 * transport. Every method fails only with a `ProtocolError`; a push's
 * results and pokes come only after its commit.
 *
 * @since 0.1.0
 * @category services
 */
export class SyncEngine extends Context.Tag("@mizu/sync/SyncEngine")<SyncEngine, {
  /** Apply mutations exactly once per `(client_id, id)`, in id order; answers one result per mutation. */
  readonly push: (request: Protocol.PushRequest, caller: Caller) => Effect.Effect<Protocol.PushResponse, ProtocolError>
  /** The changes after a cursor, in one consistent read with the client's `last_mutation_id`. */
  readonly pull: (request: Protocol.PullRequest, caller: Caller) => Effect.Effect<Protocol.PullResponse, ProtocolError>
  /**
   * `pull`'s answer as its JSON response body, encoded once (on the SQL
   * families the page is the database's JSON, spliced: no row is parsed or
   * encoded). What the HTTP endpoint serves.
   */
  readonly pullBody: (request: Protocol.PullRequest, caller: Caller) => Effect.Effect<string, ProtocolError>
  /** The scope's data at its head, in one consistent read. */
  readonly snapshot: (
    request: Protocol.SnapshotRequest,
    caller: Caller
  ) => Effect.Effect<Protocol.SnapshotResponse, ProtocolError>
  /**
   * The checksums of the scope's rows in a key range, split in parts, at the
   * head in one consistent read (a client repairing a checksum mismatch).
   * Authorized as a snapshot.
   */
  readonly ranges: (request: Protocol.RangesRequest, caller: Caller) => Effect.Effect<Protocol.RangesResponse, ProtocolError>
  /** The rows of the scope in a key range, at the head in one consistent read. Authorized as a snapshot. */
  readonly rows: (request: Protocol.RowsRequest, caller: Caller) => Effect.Effect<Protocol.RowsResponse, ProtocolError>
}>() {}

/**
 * Build the engine over the storage, mutator, broker and authorizer
 * services in context.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<
  SyncEngine["Type"],
  never,
  Scope.Scope | SyncStorage | ChangeLog | Store | Clients.Clients | Mutator | PokeBroker | Authorizer.Authorizer
> = internal.make

/**
 * The engine over the storage, mutator, broker and authorizer services.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<
  SyncEngine,
  never,
  SyncStorage | ChangeLog | Store | Clients.Clients | Mutator | PokeBroker | Authorizer.Authorizer
> = Layer.scoped(SyncEngine, make)
