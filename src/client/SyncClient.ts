/**
 * The offline-first sync client: a local view per scope that mutations apply
 * to at once, a persistent queue that reaches the server exactly once, and a
 * rebase of the queue over whatever the server says.
 *
 * State (all of it persisted through `ClientStorage`, except the view):
 * - `clientId`, and `nextId`: mutation ids are 1, 2, 3, … across all scopes;
 * - per scope: `cursor` and `confirmed`, the server's rows as of `cursor`;
 * - `pending`: mutations the server has not been seen to include, by id.
 *
 * Invariants (the rebase; why the code is shaped as it is):
 * 1. view(scope) = confirmed(scope) with pending(scope) replayed on top, in id
 *    order, by the same handlers the server runs (`LocalView.rebuild`). Every
 *    step below recomputes the views it touches from this definition, so the
 *    view never drifts from it.
 * 2. confirmed(scope) reflects exactly the mutations with id <= L(scope), the
 *    `last_mutation_id` the server sent with it, so a pending mutation is
 *    dropped exactly when its effect enters `confirmed` (never applied twice,
 *    never missing). Hence pulled pages are applied only together with the
 *    `last_mutation_id` of a page with `has_more: false` (PROTOCOL.md): the
 *    pages of one pull are gathered and committed at once. A backlog of more
 *    than `maxPullPages` pages is replaced by a snapshot, which carries its
 *    own `last_mutation_id`.
 * 3. A pulled page is applied only if it continues the local cursor without a
 *    gap (cursors are gap-free; a compacted log may skip cursors at or below
 *    the page's `compacted_through`, never above), so a stale, duplicated or
 *    misrouted response is refused rather than applied.
 * 4. The server processes a client's mutations in id order, so the queue is
 *    pushed from its head, one request at a time. `ok` results (fresh or
 *    duplicate) mark a mutation accepted: it is not sent again, and stays
 *    pending until a pull confirms it (2). A `rejected`, `unknown_mutation`
 *    or `invalid_args` result (also a duplicate's remembered one) drops it
 *    at once; the rebuild rolls its optimistic effect back; a `Rejected`
 *    event is raised.
 * 4b. A request refused as a whole never wedges the queue (`PushPolicy`):
 *    `413` sends fewer bytes; `400`/`401`/`403`/`404` halve the request until
 *    the one mutation it is about is found, which is dropped (`Rejected`);
 *    anything else is retried with backoff, and a mutation that fails alone
 *    `stuckAfter` times is reported `stuck`, for the app to `discard`. A
 *    mutation dropped before the server consumed its id (refused so, or
 *    discarded) leaves a placeholder with its id in the queue, so ids never
 *    move and never skip. A mutation a pull confirms (2) before its answer
 *    came stays as a probe, sent again for the answer, so a rejection the
 *    server remembers is still reported.
 * 5. `out_of_order` with `expected` below the first pending id means the
 *    server lost this client's state: the queue is renumbered from
 *    `expected`, the `generation` is bumped (any pull or push answer in
 *    flight speaks of the old numbering and is discarded), and every scope is
 *    reset from a snapshot before it is pulled again. Otherwise the server is
 *    merely behind what it acknowledged, and the queue is sent again from
 *    `expected`.
 * 6. `cursor_too_old` and `cursor_ahead` reset the scope from a snapshot;
 *    pending mutations are kept and replayed on top (1).
 * 7. Every change of state is one `ClientStorage.commit`, made before the
 *    in-memory state changes and before anyone is told, under one lock; so a
 *    restart resumes from the last commit, and listeners see each committed
 *    batch once, in order.
 * 8. With a `TabGroup` (the tabs of a browser over one store), that lock is
 *    also the group's, and each step first reloads the store if another tab
 *    committed since (its revision moved): every step is computed from the
 *    store as it is, so ids stay unique per client id and no tab overwrites
 *    another's batch. Only the leader tab runs the workers (1-6 hold there);
 *    a follower's `push`, `pull` and `sync` run in the leader.
 * 9. confirmed(scope) equals the server's rows at cursor(scope): at each pull
 *    that reaches the head its checksum (`Checksum`) is compared with the
 *    server's, and a difference is repaired by fetching the rows of the key
 *    ranges that differ (or, failing that, a snapshot); the queue is kept.
 *
 * Handlers must be deterministic given their args (put ids and timestamps in
 * the args): a pending mutation is replayed on every rebase, and the server
 * runs it once more.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Option from "effect/Option"
import type * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import type * as Protocol from "../protocol/Sync.js"
import type * as Entity from "../sync/Entity.js"
import type * as Mutation from "../sync/Mutation.js"
import type { ClientStorage, ClientStorageError } from "./ClientStorage.js"
import * as internal from "./internal/syncClient.js"
import type { LiveStatus } from "./LiveClient.js"
import type { LocalChange, PendingMutation } from "./LocalView.js"
import type * as PushPolicy from "./PushPolicy.js"
import type * as Query from "./Query.js"
import type { SyncTransport, SyncTransportError } from "./SyncTransport.js"

export type { LocalChange, PendingMutation } from "./LocalView.js"

/**
 * Options of a sync client, typed by the mutations `M` of its registry.
 *
 * @since 0.1.0
 * @category options
 */
export interface Options<M extends Mutation.Mutation = Mutation.Mutation> {
  /**
   * The app's entities and mutations: `mutate` then takes only these names
   * and their args (in the types and at run time). Without one, mutations are
   * queued as given, with no local effect, and any name and args type-check.
   */
  readonly registry?: Mutation.Registry<M>
  /** Scopes to sync from the start (besides those already stored, and those mutated). */
  readonly scopes?: ReadonlyArray<string>
  /** The scope of a mutation that names none; `_default`. */
  readonly defaultScope?: string
  /** The id of a new client (a stored id always wins); a random one by default. */
  readonly clientId?: string
  /** Failsafe pull of every scope; 30 s by default. */
  readonly pullInterval?: Duration.DurationInput
  /** Changes per pull request; 500 by default. */
  readonly pullLimit?: number
  /** Pages one pull may gather before it resets from a snapshot instead; 20 by default. */
  readonly maxPullPages?: number
  /** Mutations per push request; 100 by default. */
  readonly pushBatchSize?: number
  /**
   * Largest push body in bytes: requests are cut to fit, and a mutation that
   * cannot fit alone is refused by `mutate` (`too_large`). Keep it under the
   * server's `maxBodyBytes`; 1 MiB minus 16 KiB by default. (Past a `413` the
   * client also learns a smaller budget by itself.)
   */
  readonly maxPushBytes?: number
  /** Failed attempts of the mutation at the head, alone, before the status says `stuck`; 5 by default. */
  readonly stuckAfter?: number
  /** First retry cap, 500 ms by default (doubling per failed attempt, full jitter). */
  readonly retryInitial?: Duration.DurationInput
  /** Largest retry cap, 30 s by default. */
  readonly retryMax?: Duration.DurationInput
}

/**
 * A push that keeps failing at one mutation (still retried, with backoff): the app may show it and offer `discard`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Stuck {
  /** The mutation the failing requests were about (sent alone). */
  readonly mutation: PendingMutation
  /** The last failure. */
  readonly error: SyncTransportError
  /** Failed attempts in a row. */
  readonly attempts: number
}

/**
 * What a UI shows about syncing.
 *
 * @since 0.1.0
 * @category models
 */
export interface SyncStatus {
  /** The last request reached the server (or the live socket is joined). */
  readonly online: boolean
  /** The live connection, `none` without a `LiveClient`. */
  readonly live: LiveStatus | "none"
  /** Mutations not yet confirmed by the server. */
  readonly pending: number
  /** When a pull last completed (epoch ms). */
  readonly lastPullAt: number | undefined
  /** When a push last got an answer (epoch ms). */
  readonly lastPushAt: number | undefined
  /** The last failure, cleared by the next success. */
  readonly lastError: string | undefined
  /** Set while the push keeps failing at one mutation (`stuckAfter` attempts alone); cleared by progress or `discard`. */
  readonly stuck: Stuck | undefined
  /**
   * Set once the server refused this client's code as too old
   * (`version_too_old`): nothing more is pushed, nothing pending is dropped,
   * until the app reloads on newer code. `min` is the oldest version the
   * server accepts.
   */
  readonly updateNeeded?: { readonly min: number | undefined } | undefined
}

/**
 * Why a scope was reset from a snapshot (`schema`: a stored row that this
 * code's entity Schema and migration could not read; `checksum`: the scope's
 * checksum differed from the server's and the incremental repair could not
 * mend it, or the transport has no repair endpoints).
 *
 * @since 0.1.0
 * @category models
 */
export type ResetReason = "cursor_too_old" | "cursor_ahead" | "server_lost_state" | "backlog" | "schema" | "checksum"

/**
 * Why the client dropped a mutation: the server's result (`rejected`,
 * `unknown_mutation`, `invalid_args`), or the client's verdict on a request
 * the server refused as a whole (`too_large` for a 413 or over
 * `maxPushBytes`, then the error code of a 400, 401, 403 or 404).
 *
 * @since 0.1.0
 * @category models
 */
export type RejectionCode = Exclude<Protocol.MutationErrorCode, "out_of_order"> | PushPolicy.RefusalCode

/**
 * What a sync client reports, in commit order: the events of a committed
 * batch are published once, after the commit and never for a batch that
 * failed to commit.
 *
 * @since 0.1.0
 * @category models
 */
export type SyncEvent =
  /**
   * The local view changed: one event per committed batch, with every row
   * that changed (`tab`: another tab of a `TabGroup` committed; `repair`: a
   * checksum repair replaced rows that had drifted from the server's).
   */
  | {
    readonly _tag: "Changes"
    readonly changes: ReadonlyArray<LocalChange>
    readonly source: "mutate" | "pull" | "reset" | "rollback" | "tab" | "repair"
  }
  /**
   * The scope's checksum differed from the server's at the same cursor, and
   * the rows of the `ranges` key ranges that differed were fetched (`rows`
   * of them) and replaced: the scope equals the server's again.
   */
  | { readonly _tag: "Repaired"; readonly scope: string; readonly ranges: number; readonly rows: number }
  /** The server refused a mutation: it was dropped and its optimistic effect rolled back. */
  | { readonly _tag: "Rejected"; readonly mutation: PendingMutation; readonly code: RejectionCode; readonly message: string }
  /** The push has failed `attempts` times at `mutation` (see `SyncStatus.stuck`); it goes on retrying. */
  | ({ readonly _tag: "Stuck" } & Stuck)
  /** A scope was replaced by a snapshot; pending mutations were kept. */
  | { readonly _tag: "Reset"; readonly scope: string; readonly reason: ResetReason }
  /** The server had lost this client's state: pending mutations now start at `from`. */
  | { readonly _tag: "Renumbered"; readonly from: number; readonly count: number }
  /**
   * The server accepts only clients of app version `min` or newer
   * (`version_too_old`): pushing stops, pending mutations are kept; reload the
   * app on newer code, which upgrades them and pushes them (once).
   */
  | { readonly _tag: "UpdateNeeded"; readonly min: number | undefined; readonly version: number | undefined; readonly message: string }
  /** A request failed (it is retried with backoff). */
  | { readonly _tag: "Error"; readonly during: "push" | "pull" | "snapshot"; readonly error: SyncTransportError }

/**
 * A mutation refused before it was queued.
 *
 * @since 0.1.0
 * @category errors
 */
export class MutateError extends Data.TaggedError("MutateError")<{
  /** `too_large`: the mutation alone would not fit in a push (`maxPushBytes`). */
  readonly reason: "unknown_mutation" | "invalid_args" | "invalid_scope" | "rejected" | "too_large"
  readonly message: string
}> {}

/**
 * `discard` found nothing to drop: no such pending mutation, or the server already applied it.
 *
 * @since 0.1.0
 * @category errors
 */
export class DiscardError extends Data.TaggedError("DiscardError")<{
  readonly reason: "not_pending" | "accepted"
  readonly message: string
}> {}

/**
 * `sync` could not bring the queue to empty.
 *
 * @since 0.1.0
 * @category errors
 */
export class SyncError extends Data.TaggedError("SyncError")<{
  /** `update_needed`: the server refused this client's code as too old (`SyncEvent` `UpdateNeeded`). */
  readonly reason: "not_settled" | "bad_response" | "update_needed"
  readonly message: string
}> {}

/**
 * What `push`, `pull` and `sync` may fail with.
 *
 * @since 0.1.0
 * @category models
 */
export type SyncFailure = SyncTransportError | ClientStorageError | SyncError

/**
 * Options of one `mutate`.
 *
 * @since 0.1.0
 * @category options
 */
export interface MutateOptions {
  readonly scope?: string
}

/**
 * The args of the mutation named `N` among `M`. When `M` names no mutation in
 * particular (a client without a registry), any args: they are checked at
 * run time only, by the server.
 *
 * @since 0.1.0
 * @category models
 */
export type MutationArgs<M extends Mutation.Mutation, N extends string> = string extends M["name"] ? unknown
  : Mutation.ArgsOf<Extract<M, { readonly name: N }>>

/**
 * The sync client, typed by the mutations `M` of its registry (any mutation
 * without one). Queries read the local view synchronously (no lock, no I/O);
 * every write goes through the rebase of the header comment.
 *
 * @since 0.1.0
 * @category models
 */
export interface Client<M extends Mutation.Mutation = Mutation.Mutation> {
  /** This client's id, stable across restarts (shared by the tabs of a `TabGroup`). */
  readonly clientId: string
  /** Whether this client's tab leads its `TabGroup` (talks to the server); true without one. */
  readonly isLeader: Effect.Effect<boolean>
  /** The registry the client was built with. */
  readonly registry: Mutation.Registry<M> | undefined
  /**
   * Validate the args, apply the mutation to the local view (what queries
   * see when this returns), persist it in the queue and schedule the push.
   * Fails, queuing nothing, when the mutation is not in the registry, the
   * args do not decode or the handler rejects it against the local view.
   * Typed by the registry: a name or a definition outside it, or args of the
   * wrong shape, do not type-check.
   */
  readonly mutate: {
    <N extends M["name"]>(name: N, args: MutationArgs<M, N>, options?: MutateOptions): Effect.Effect<PendingMutation, MutateError | ClientStorageError>
    <Def extends M>(mutation: Def, args: Mutation.ArgsOf<Def>, options?: MutateOptions): Effect.Effect<PendingMutation, MutateError | ClientStorageError>
  }
  /** `mutate` with a name (or definition) and args known only at run time: the same checks, at run time only. */
  readonly mutateUnknown: (
    mutation: string | Mutation.Mutation,
    args: unknown,
    options?: MutateOptions
  ) => Effect.Effect<PendingMutation, MutateError | ClientStorageError>
  /** Keep a scope synced (pulled, subscribed to pokes); stored, so it survives restarts. */
  readonly track: (scope: string) => Effect.Effect<void, MutateError | ClientStorageError>
  /** Pull a scope now, to its head. With `cursor`, only when the local cursor is below it (a poke's cursor). */
  readonly pull: (scope: string, cursor?: number) => Effect.Effect<void, SyncFailure | MutateError>
  /** Push the queue now until every pending mutation has an answer. */
  readonly push: Effect.Effect<void, SyncFailure>
  /** Push and pull until the queue is empty: every mutation confirmed or rejected. */
  readonly sync: Effect.Effect<void, SyncFailure>
  /** The rows of an entity in a scope's view, by id. */
  readonly query: <A, I>(scope: string, entity: Entity.Entity<A, I>) => Effect.Effect<ReadonlyArray<readonly [string, A]>, Entity.EntityError>
  /** One row of a scope's view. */
  readonly get: <A, I>(scope: string, entity: Entity.Entity<A, I>, id: string) => Effect.Effect<Option.Option<A>, Entity.EntityError>
  /** A scope's whole view as JSON, in the shape of a snapshot's `data`. */
  readonly view: (scope: string) => Effect.Effect<Protocol.SnapshotData>
  /** The scope's confirmed cursor (0 if never pulled). */
  readonly cursor: (scope: string) => Effect.Effect<number>
  /** The scopes this client syncs. */
  readonly scopes: Effect.Effect<ReadonlyArray<string>>
  /** The queue, by id. */
  readonly pending: Effect.Effect<ReadonlyArray<PendingMutation>>
  /**
   * Drop a pending mutation the server has not applied: its optimistic
   * effect is rolled back at once, the mutations after it keep their ids and
   * go on (a placeholder consumes its id on the server; see `PushPolicy`).
   * For a push `stuck` at a mutation the server will never take. Fails with
   * `not_pending`, or `accepted` when the server already applied it.
   */
  readonly discard: (id: number) => Effect.Effect<PendingMutation, DiscardError | ClientStorageError>
  /**
   * With a scope and an entity: the entity's rows now, then again after
   * every committed batch that changed them. With a query: its result now,
   * then again each time a row it read changed and the result with it
   * (compared structurally); see `Query`.
   */
  readonly watch: {
    <A, I>(scope: string, entity: Entity.Entity<A, I>): Stream.Stream<ReadonlyArray<readonly [string, A]>, Entity.EntityError>
    <A, E>(query: (tx: Query.ReadTransaction) => Effect.Effect<A, E>): Stream.Stream<A, E>
  }
  readonly status: Effect.Effect<SyncStatus>
  /** The status now, then every change. */
  readonly statusChanges: Stream.Stream<SyncStatus>
  /** Every event from now on. */
  readonly subscribeEvents: Effect.Effect<Queue.Dequeue<SyncEvent>, never, Scope.Scope>
  readonly events: Stream.Stream<SyncEvent>
}

/**
 * The sync client service, as a layer provides it: `mutate` takes any
 * mutation (see `typed` for the client typed by its registry).
 *
 * @since 0.1.0
 * @category services
 */
export class SyncClient extends Context.Tag("@mizu/client/SyncClient")<SyncClient, Client>() {}

/**
 * Build a sync client whose background work (the push and pull workers, the
 * live wiring) lives as long as the scope, typed by the registry of
 * `options`. Fails only if the stored state cannot be loaded.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: <M extends Mutation.Mutation = Mutation.Mutation>(
  options?: Options<M>
) => Effect.Effect<Client<M>, ClientStorageError, SyncTransport | ClientStorage | Scope.Scope> = internal.make

/**
 * A sync client for the layer's lifetime. Uses the `LiveClient` in context, if any, for pokes.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<SyncClient, ClientStorageError, SyncTransport | ClientStorage> =>
  Layer.scoped(SyncClient, make(options))

/**
 * The client in context, typed by `registry`: the one it was built with
 * (`layer({ registry })`). Dies if the client was built with another
 * registry (or none), since its types would then be a lie.
 *
 * @since 0.1.0
 * @category utils
 */
export const typed = <M extends Mutation.Mutation>(registry: Mutation.Registry<M>): Effect.Effect<Client<M>, never, SyncClient> =>
  Effect.flatMap(SyncClient, (client) =>
    client.registry === registry
      ? Effect.succeed<Client<M>>({ ...client, registry, mutate: client.mutateUnknown })
      : Effect.dieMessage("SyncClient.typed: the client in context was built with another registry"))
