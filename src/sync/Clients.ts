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
 * Remembered failures: a mutation that failed (`rejected`, `invalid_args`,
 * `unknown_mutation`) consumed its id like any other, so a retry of it is a
 * duplicate; for the retry to tell the client it failed (its first reply
 * may have been lost), each client's last `rememberedFailures` failed
 * mutations (default `DEFAULT_REMEMBERED_FAILURES`, 100) are kept with their
 * code and message. Counted in failures, not ids: every failure among a
 * client's last N ids is remembered, and older ones too while the client
 * has had fewer than N failures since. Only failures are written (a
 * successful mutation costs nothing more), in the same statement or
 * transaction as the client's last id (`recordAll`), and the oldest are
 * dropped there, so at most N rows per client remain. SQL migration
 * `0003_client_failures`.
 *
 * Expiry (`ClientExpiry`, SQL migration `0004_client_expiry`): every claim
 * sets the client's `seen` (epoch ms, the layer's `Clock`) in the claim's own
 * statement. `expire` removes clients not seen since a cutoff (their last
 * id, per-scope ids and remembered failures) and keeps a tombstone of each:
 * its last id and owner. A client id with a tombstone is answered as if its
 * ledger said `last = tombstone.last`: `claim` recreates its record from the
 * tombstone (so ids up to it are duplicates: exactly once holds), the
 * tombstone's owner still owns it, and `lastId` / `lastIdForScope` are at
 * least the tombstone's last (every mutation up to it was processed before
 * the expiry, so a pull or snapshot may confirm them all). The tombstone is
 * kept after the client returns (it is small, and it is what confirms the
 * returning client's pending mutations of scopes it does not push to again);
 * a later expiry of the same client replaces it. What expiry loses: the
 * remembered failures (a duplicate of a mutation that had been rejected is
 * then answered ok; the pull shows its true effect) and the per-scope ids.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import type { MutationErrorCode } from "../protocol/Sync.js"
import type { StorageError } from "./StorageError.js"

/**
 * How many failed mutations per client are remembered by default (see the module header).
 *
 * @since 0.1.0
 * @category constants
 */
export const DEFAULT_REMEMBERED_FAILURES = 100

/**
 * The longest message a remembered failure keeps, in UTF-16 code units: a
 * longer one is cut (at a code point boundary) and ends with `…`, so a
 * client's remembered failures stay small whatever an app's messages are.
 *
 * @since 0.1.0
 * @category constants
 */
export const MAX_REMEMBERED_MESSAGE = 1000

/**
 * Options of the `Clients` layers.
 *
 * @since 0.1.0
 * @category options
 */
export interface Options {
  /**
   * How many failed mutations to remember per client (an integer >= 0; 0
   * remembers none, and a duplicate of a failed mutation then answers `ok`).
   * Default `DEFAULT_REMEMBERED_FAILURES`.
   */
  readonly rememberedFailures?: number | undefined
}

/**
 * The error codes of a mutation that was processed and failed (its id consumed).
 *
 * @since 0.1.0
 * @category models
 */
export type FailureCode = Extract<MutationErrorCode, "unknown_mutation" | "invalid_args" | "rejected">

/**
 * Whether a stored code is one of `FailureCode`.
 *
 * @since 0.1.0
 * @category guards
 */
export const isFailureCode = (code: string): code is FailureCode =>
  code === "rejected" || code === "invalid_args" || code === "unknown_mutation"

/**
 * How a processed mutation failed, as its result said and a duplicate of it says again.
 *
 * @since 0.1.0
 * @category models
 */
export interface Failure {
  readonly code: FailureCode
  readonly message: string
}

/**
 * A failure as it is remembered: the message without U+0000 (which Postgres
 * text cannot hold; replaced by U+FFFD) and at most `MAX_REMEMBERED_MESSAGE`
 * long. Every layer stores what this returns, so all answer alike.
 *
 * @since 0.1.0
 * @category constructors
 */
export const failure = (code: FailureCode, message: string): Failure => {
  let text = message.includes("\u0000") ? message.replace(/\u0000/g, "\uFFFD") : message
  if (text.length > MAX_REMEMBERED_MESSAGE) {
    let end = MAX_REMEMBERED_MESSAGE - 1
    const last = text.charCodeAt(end - 1)
    if (last >= 0xd800 && last <= 0xdbff) end-- // do not split a surrogate pair
    text = `${text.slice(0, end)}…`
  }
  return { code, message: text }
}

/**
 * The number of failures the options remember; dies (a configuration bug) unless it is an integer >= 0.
 *
 * @since 0.1.0
 * @category utils
 */
export const rememberedFailuresOf = (options: Options): Effect.Effect<number> => {
  const n = options.rememberedFailures ?? DEFAULT_REMEMBERED_FAILURES
  return Number.isSafeInteger(n) && n >= 0
    ? Effect.succeed(n)
    : Effect.dieMessage(`rememberedFailures must be an integer >= 0, got ${n}`)
}

/**
 * The dedupe ledger (see the module header): ids only move up, and inside
 * a `SyncStorage` transaction a client's row is locked until it ends, so one
 * client's pushes are processed one after the other.
 *
 * @since 0.1.0
 * @category services
 */
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
  /**
   * Record processed mutations of the client, atomically: the client's last
   * id and each scope's last id move up to the highest given (never down),
   * and each one's `failure` is remembered (the client's oldest remembered
   * failures beyond the window dropped). The
   * engine records a whole push this way, inside its transaction: on
   * Postgres one statement whatever the number of mutations and failures;
   * on SQLite two, and two more when some failed.
   */
  readonly recordAll: (clientId: string, processed: ReadonlyArray<Processed>) => Effect.Effect<void, StorageError>
  /**
   * `claim` for several clients at once (distinct ids, each with the owner
   * it is claimed for), as one statement on the SQL layers: per client id
   * the owner after the claim and the last processed id. Inside a
   * `SyncStorage` transaction it locks the rows as `claim` does (on
   * Postgres in client id order).
   */
  readonly claimAll: (claims: ReadonlyArray<Claimant>) => Effect.Effect<ReadonlyMap<string, Claim>, StorageError>
  /**
   * `recordAll` for several clients at once (distinct ids), atomically: on
   * the SQL layers the clients' rows and their scopes' rows in one or two
   * statements whatever the number of clients, plus the failure rows of
   * those that have failures.
   */
  readonly recordEach: (records: ReadonlyArray<ClientRecord>) => Effect.Effect<void, StorageError>
  /**
   * The remembered failures among these ids of the client (ids that
   * succeeded, were forgotten or never processed are absent). One read
   * whatever the number of ids.
   */
  readonly failures: (clientId: string, ids: ReadonlyArray<number>) => Effect.Effect<ReadonlyMap<number, Failure>, StorageError>
  /**
   * Remove at most `limit` clients whose last claim was before `cutoff`
   * (epoch ms), the least recently seen first, each replaced by a tombstone
   * (its last id and owner, `expired = now`); returns how many were removed.
   * Run it inside a `SyncStorage` transaction: all or nothing. On Postgres
   * one statement whose rows are taken `FOR UPDATE SKIP LOCKED`, so several
   * processes expiring at once remove each client once, and a client whose
   * push holds its row is skipped (it is not idle).
   */
  readonly expire: (cutoff: number, limit: number, now: number) => Effect.Effect<number, StorageError>
  /** The ledger's figures for an operator: live records and tombstones. */
  readonly counts: Effect.Effect<Counts, StorageError>
}>() {}

/**
 * What `Clients.counts` finds.
 *
 * @since 0.1.0
 * @category models
 */
export interface Counts {
  /** Client records (the ledger's rows). */
  readonly clients: number
  /** Tombstones of expired clients (some of which came back and have a record again). */
  readonly expired: number
}

/**
 * What `Clients.claim` finds: the client id's owner after the claim, and its last processed id.
 *
 * @since 0.1.0
 * @category models
 */
export interface Claim {
  readonly owner: string | undefined
  readonly last: number
}

/**
 * A client id and the owner it is claimed for, for `Clients.claimAll`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Claimant {
  readonly clientId: string
  readonly owner: string | undefined
}

/**
 * A client's processed mutations, for `Clients.recordEach`.
 *
 * @since 0.1.0
 * @category models
 */
export interface ClientRecord {
  readonly clientId: string
  readonly processed: ReadonlyArray<Processed>
}

/**
 * A processed mutation, for `Clients.recordAll`: `failure` when it failed.
 *
 * @since 0.1.0
 * @category models
 */
export interface Processed {
  readonly id: number
  readonly scope: string
  readonly failure?: Failure | undefined
}
