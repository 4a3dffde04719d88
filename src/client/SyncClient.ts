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
 *    gap (cursors are gap-free), so a stale, duplicated or misrouted response
 *    is refused rather than applied.
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
 *
 * Handlers must be deterministic given their args (put ids and timestamps in
 * the args): a pending mutation is replayed on every rebase, and the server
 * runs it once more.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as FiberSet from "effect/FiberSet"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import * as Queue from "effect/Queue"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import * as Protocol from "../protocol/Sync.js"
import * as Entity from "../sync/Entity.js"
import type * as Mutation from "../sync/Mutation.js"
import * as Backoff from "./Backoff.js"
import { type Batch, ClientStorage, type ClientStorageError, type ScopeWrite } from "./ClientStorage.js"
import { LiveClient, type LiveStatus } from "./LiveClient.js"
import * as LocalView from "./LocalView.js"
import type { LocalChange, PendingMutation, Rows } from "./LocalView.js"
import * as PushPolicy from "./PushPolicy.js"
import * as Query from "./Query.js"
import { isOffline, SyncTransport, type SyncTransportError, TransportError } from "./SyncTransport.js"

export type { LocalChange, PendingMutation } from "./LocalView.js"

/** Options of a sync client, typed by the mutations `M` of its registry. */
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

/** A push that keeps failing at one mutation (still retried, with backoff): the app may show it and offer `discard`. */
export interface Stuck {
  /** The mutation the failing requests were about (sent alone). */
  readonly mutation: PendingMutation
  /** The last failure. */
  readonly error: SyncTransportError
  /** Failed attempts in a row. */
  readonly attempts: number
}

/** What a UI shows about syncing. */
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
}

/** Why a scope was reset from a snapshot. */
export type ResetReason = "cursor_too_old" | "cursor_ahead" | "server_lost_state" | "backlog"

/**
 * Why the client dropped a mutation: the server's result (`rejected`,
 * `unknown_mutation`, `invalid_args`), or the client's verdict on a request
 * the server refused as a whole (`too_large` for a 413 or over
 * `maxPushBytes`, then the error code of a 400, 401, 403 or 404).
 */
export type RejectionCode = Exclude<Protocol.MutationErrorCode, "out_of_order"> | PushPolicy.RefusalCode

/** What a sync client reports. */
export type SyncEvent =
  /** The local view changed: one event per committed batch, with every row that changed. */
  | { readonly _tag: "Changes"; readonly changes: ReadonlyArray<LocalChange>; readonly source: "mutate" | "pull" | "reset" | "rollback" }
  /** The server refused a mutation: it was dropped and its optimistic effect rolled back. */
  | { readonly _tag: "Rejected"; readonly mutation: PendingMutation; readonly code: RejectionCode; readonly message: string }
  /** The push has failed `attempts` times at `mutation` (see `SyncStatus.stuck`); it goes on retrying. */
  | ({ readonly _tag: "Stuck" } & Stuck)
  /** A scope was replaced by a snapshot; pending mutations were kept. */
  | { readonly _tag: "Reset"; readonly scope: string; readonly reason: ResetReason }
  /** The server had lost this client's state: pending mutations now start at `from`. */
  | { readonly _tag: "Renumbered"; readonly from: number; readonly count: number }
  /** A request failed (it is retried with backoff). */
  | { readonly _tag: "Error"; readonly during: "push" | "pull" | "snapshot"; readonly error: SyncTransportError }

/** A mutation refused before it was queued. */
export class MutateError extends Data.TaggedError("MutateError")<{
  /** `too_large`: the mutation alone would not fit in a push (`maxPushBytes`). */
  readonly reason: "unknown_mutation" | "invalid_args" | "invalid_scope" | "rejected" | "too_large"
  readonly message: string
}> {}

/** `discard` found nothing to drop: no such pending mutation, or the server already applied it. */
export class DiscardError extends Data.TaggedError("DiscardError")<{
  readonly reason: "not_pending" | "accepted"
  readonly message: string
}> {}

/** `sync` could not bring the queue to empty. */
export class SyncError extends Data.TaggedError("SyncError")<{
  readonly reason: "not_settled" | "bad_response"
  readonly message: string
}> {}

/** What `push`, `pull` and `sync` may fail with. */
export type SyncFailure = SyncTransportError | ClientStorageError | SyncError

/** Options of one `mutate`. */
export interface MutateOptions {
  readonly scope?: string
}

/**
 * The args of the mutation named `N` among `M`. When `M` names no mutation in
 * particular (a client without a registry), any args: they are checked at
 * run time only, by the server.
 */
export type MutationArgs<M extends Mutation.Mutation, N extends string> = string extends M["name"] ? unknown
  : Mutation.ArgsOf<Extract<M, { readonly name: N }>>

/**
 * The sync client, typed by the mutations `M` of its registry (any mutation
 * without one). Queries read the local view synchronously (no lock, no I/O);
 * every write goes through the rebase of the header comment.
 */
export interface Client<M extends Mutation.Mutation = Mutation.Mutation> {
  /** This client's id, stable across restarts. */
  readonly clientId: string
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
 */
export class SyncClient extends Context.Tag("@mizu/client/SyncClient")<SyncClient, Client>() {}

interface ScopeState {
  readonly cursor: number
  readonly confirmed: Rows
  readonly view: Rows
}

const emptyScope = (): ScopeState => ({ cursor: 0, confirmed: LocalView.emptyRows(), view: LocalView.emptyRows() })

const validScope = Schema.is(Protocol.Scope)

const newClientId = (): string => {
  const bytes = new Uint8Array(12)
  globalThis.crypto.getRandomValues(bytes)
  return `c-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`
}

/** Build a sync client whose background work lives as long as the scope, typed by the registry of `options`. */
export const make = <M extends Mutation.Mutation = Mutation.Mutation>(
  options: Options<M> = {}
): Effect.Effect<Client<M>, ClientStorageError, SyncTransport | ClientStorage | Scope.Scope> =>
  Effect.gen(function*() {
    const transport = yield* SyncTransport
    const storage = yield* ClientStorage
    const live = yield* Effect.serviceOption(LiveClient)
    const registry = options.registry
    const defaultScope = options.defaultScope ?? Protocol.DEFAULT_SCOPE
    const pullLimit = Math.max(1, Math.min(Protocol.MAX_PULL_LIMIT, options.pullLimit ?? 500))
    const maxPullPages = Math.max(1, options.maxPullPages ?? 20)
    const batchSize = Math.max(1, Math.min(Protocol.MAX_MUTATIONS_PER_PUSH, options.pushBatchSize ?? 100))
    const maxPushBytes = Math.max(1, options.maxPushBytes ?? PushPolicy.DEFAULT_MAX_PUSH_BYTES)
    const stuckAfter = Math.max(1, options.stuckAfter ?? 5)
    const retry: Backoff.Options = { initial: options.retryInitial ?? Duration.millis(500), max: options.retryMax ?? Duration.seconds(30) }
    const pullInterval = Duration.decode(options.pullInterval ?? Duration.seconds(30))

    // ---- state -----------------------------------------------------------
    if (options.clientId !== undefined && !Schema.is(Protocol.ClientId)(options.clientId)) {
      return yield* Effect.dieMessage(`SyncClient: invalid clientId ${JSON.stringify(options.clientId)} (1..128 of A-Z a-z 0-9 _ - : .)`)
    }
    const loaded = yield* storage.load
    const clientId = loaded.clientId ?? options.clientId ?? newClientId()
    /** The queue in id order: the app's mutations, placeholders of dropped ones and probes (`PushPolicy`). */
    let pending: ReadonlyArray<PendingMutation> = loaded.pending
    let nextId = Math.max(loaded.nextId, (pending[pending.length - 1]?.id ?? 0) + 1)
    if (loaded.clientId === undefined) yield* storage.commit({ meta: { clientId, nextId } })
    /** The queue as the app sees it: its own mutations, without placeholders and probes. */
    const visible = () => pending.filter((m) => !PushPolicy.isReserved(m))
    /** A scope's view: its confirmed rows with its pending mutations replayed (placeholders and probes have no effect). */
    const rebuild = (scope: string, confirmed: Rows, queue: ReadonlyArray<PendingMutation>) =>
      LocalView.rebuild(registry, scope, confirmed, queue.filter((m) => !PushPolicy.isReserved(m)))
    const scopes = new Map<string, ScopeState>()
    for (const [scope, stored] of Object.entries(loaded.scopes)) {
      const confirmed = LocalView.fromSnapshot(stored.rows)
      scopes.set(scope, { cursor: stored.cursor, confirmed, view: yield* rebuild(scope, confirmed, pending) })
    }
    for (const m of pending) {
      if (!scopes.has(m.scope)) scopes.set(m.scope, { ...emptyScope(), view: yield* rebuild(m.scope, LocalView.emptyRows(), pending) })
    }
    const tracked = new Set<string>([...scopes.keys()])
    /** Ids the server answered `ok` for in this generation: not sent again, dropped when a pull confirms them (others become probes). */
    const accepted = new Set<number>()
    /** Bumped when the queue is renumbered: answers to requests sent before speak of other ids. */
    let generation = 0
    const needsReset = new Map<string, ResetReason>()
    const dirty = new Set<string>()

    const lock = yield* Effect.makeSemaphore(1)
    const locked = lock.withPermits(1)
    const pushMutex = yield* Effect.makeSemaphore(1)
    const pullMutex = yield* Effect.makeSemaphore(1)
    const pushWake = yield* Queue.sliding<void>(1)
    const pullWake = yield* Queue.sliding<void>(1)
    const onlinePush = yield* Queue.sliding<void>(1)
    const onlinePull = yield* Queue.sliding<void>(1)
    const pubsub = yield* Effect.acquireRelease(PubSub.unbounded<SyncEvent>(), PubSub.shutdown)
    const status = yield* SubscriptionRef.make<SyncStatus>({
      online: false,
      live: Option.isSome(live) ? "connecting" : "none",
      pending: visible().length,
      lastPullAt: undefined,
      lastPushAt: undefined,
      lastError: undefined,
      stuck: undefined
    })
    const fibers = yield* FiberSet.make()

    const publish = (event: SyncEvent) => PubSub.publish(pubsub, event)
    const publishChanges = (changes: ReadonlyArray<LocalChange>, source: "mutate" | "pull" | "reset" | "rollback") =>
      changes.length === 0 ? Effect.void : publish({ _tag: "Changes", changes, source })
    const setStatus = (f: (s: SyncStatus) => SyncStatus) => SubscriptionRef.update(status, f)
    const syncPendingCount = Effect.suspend(() => {
      const n = visible().length
      return setStatus((s) => s.pending === n ? s : { ...s, pending: n })
    })
    const wake = (q: Queue.Queue<void>) => Queue.offer(q, undefined)

    const requestPull = (scope: string) =>
      Effect.zipRight(Effect.sync(() => dirty.add(scope)), wake(pullWake))

    const reportSuccess = (field: "lastPullAt" | "lastPushAt") =>
      Effect.flatMap(Effect.clockWith((c) => c.currentTimeMillis), (now) =>
        setStatus((s) => ({ ...s, online: true, lastError: undefined, [field]: now })))

    const reportFailure = (during: "push" | "pull" | "snapshot") => (error: SyncTransportError) =>
      Effect.zipRight(
        setStatus((s) => ({ ...s, online: isOffline(error) ? false : s.online, lastError: error.message })),
        publish({ _tag: "Error", during, error })
      )

    /**
     * The queue once the server's rows of `scope` include its mutations up to
     * `lmid` (invariant 2): an accepted mutation leaves it; one whose answer
     * never came becomes a probe, to learn whether it was rejected; a
     * placeholder leaves it (the server processed that id after all).
     */
    const confirmUpTo = (scope: string, lmid: number | undefined) => {
      const next: Array<PendingMutation> = []
      const pendingDelete: Array<number> = []
      const pendingPut: Array<PendingMutation> = []
      for (const m of pending) {
        if (lmid === undefined || m.scope !== scope || m.id > lmid || PushPolicy.isProbe(m)) next.push(m)
        else if (PushPolicy.isPlaceholder(m) || accepted.has(m.id)) pendingDelete.push(m.id)
        else {
          const p = PushPolicy.probe(m)
          next.push(p)
          pendingPut.push(p)
        }
      }
      /** Once committed: the accepted ones are done with. */
      const settle = () => {
        for (const id of pendingDelete) accepted.delete(id)
      }
      return { next, pendingDelete, pendingPut, changed: pendingDelete.length + pendingPut.length > 0, settle }
    }

    // ---- tracking ----------------------------------------------------------
    const subscribeLive = (scopesToAdd: ReadonlyArray<string>) =>
      Option.match(live, {
        onNone: () => Effect.void,
        onSome: (client) =>
          FiberSet.run(fibers, client.subscribe(scopesToAdd).pipe(
            Effect.flatMap((cursors) => onHeads(cursors)),
            Effect.catchAll((e) => Effect.logWarning("live subscribe failed", e.message))
          )).pipe(Effect.asVoid)
      })

    /** Heads from a JOIN or SUBSCRIBE reply: pull every scope whose head differs from the local cursor. */
    const onHeads = (cursors: Readonly<Record<string, number>>) =>
      Effect.forEach(Object.entries(cursors), ([scope, head]) =>
        tracked.has(scope) && head !== (scopes.get(scope)?.cursor ?? 0) ? requestPull(scope) : Effect.void, { discard: true })

    const track = (scope: string): Effect.Effect<void, MutateError | ClientStorageError> =>
      Effect.gen(function*() {
        if (!validScope(scope)) return yield* new MutateError({ reason: "invalid_scope", message: `invalid scope ${JSON.stringify(scope)}` })
        if (tracked.has(scope)) return
        yield* locked(Effect.gen(function*() {
          if (scopes.has(scope)) return
          yield* storage.commit({ scopes: [{ scope, cursor: 0 }] })
          scopes.set(scope, emptyScope())
        }))
        if (tracked.has(scope)) return
        tracked.add(scope)
        yield* requestPull(scope)
        yield* subscribeLive([scope])
      })

    // ---- mutate ------------------------------------------------------------
    interface Prepared {
      readonly definition: Mutation.Mutation | undefined
      readonly args: unknown
      readonly wire: unknown
    }

    const invalidArgs = (e: import("effect/ParseResult").ParseError) =>
      new MutateError({ reason: "invalid_args", message: Protocol.formatParseError(e) })

    const prepare = (mutation: Mutation.Mutation | string, args: unknown): Effect.Effect<Prepared, MutateError> => {
      const name = typeof mutation === "string" ? mutation : mutation.name
      const known = registry?.mutations.get(name)
      if (registry !== undefined && known === undefined) {
        return Effect.fail(new MutateError({ reason: "unknown_mutation", message: `unknown mutation ${name}` }))
      }
      const definition = known ?? (typeof mutation === "string" ? undefined : mutation)
      if (definition === undefined) return Effect.succeed({ definition: undefined, args, wire: args })
      if (typeof mutation === "string") {
        return Schema.decodeUnknown(definition.args)(args).pipe(
          Effect.flatMap((decoded) => Effect.map(Schema.encode(definition.args)(decoded), (wire) => ({ definition, args: decoded, wire }))),
          Effect.mapError(invalidArgs)
        )
      }
      return Schema.encodeUnknown(definition.args)(args).pipe(
        Effect.map((wire) => ({ definition, args, wire })),
        Effect.mapError(invalidArgs)
      )
    }

    const mutateImpl = (mutation: Mutation.Mutation | string, args: unknown, opts?: MutateOptions) =>
      Effect.gen(function*() {
        const name = typeof mutation === "string" ? mutation : mutation.name
        const scope = opts?.scope ?? defaultScope
        if (!validScope(scope)) return yield* new MutateError({ reason: "invalid_scope", message: `invalid scope ${JSON.stringify(scope)}` })
        if (PushPolicy.isReservedName(name)) return yield* new MutateError({ reason: "unknown_mutation", message: `${name} is reserved` })
        const prepared = yield* prepare(mutation, args)
        const bytes = PushPolicy.singleRequestBytes(clientId, PushPolicy.wireOf({ id: nextId, name, scope, args: prepared.wire }))
        if (bytes > maxPushBytes) {
          return yield* new MutateError({ reason: "too_large", message: `${name}: a push of it alone is ${bytes} bytes, over maxPushBytes (${maxPushBytes})` })
        }
        const result = yield* locked(Effect.gen(function*() {
          const isNew = !scopes.has(scope)
          const st = scopes.get(scope) ?? emptyScope()
          let view = st.view
          let changes: ReadonlyArray<LocalChange> = []
          if (prepared.definition !== undefined) {
            const outcome = yield* LocalView.runHandler(registry, prepared.definition, scope, prepared.args, st.view)
            if (Either.isLeft(outcome)) return yield* new MutateError({ reason: outcome.left.reason, message: outcome.left.message })
            changes = LocalView.writesToChanges(scope, st.view, outcome.right)
            view = LocalView.copyRows(st.view)
            LocalView.applyWrites(view, outcome.right)
          }
          const m: PendingMutation = { id: nextId, name, scope, args: prepared.wire }
          yield* storage.commit({
            meta: { clientId, nextId: m.id + 1 },
            pendingPut: [m],
            ...(isNew ? { scopes: [{ scope, cursor: 0 }] } : {})
          })
          nextId = m.id + 1
          pending = [...pending, m]
          scopes.set(scope, { ...st, view })
          yield* publishChanges(changes, "mutate")
          yield* syncPendingCount
          return m
        }))
        yield* wake(pushWake)
        yield* track(scope)
        return result
      }).pipe(Effect.withSpan("SyncClient.mutate", { attributes: { name: typeof mutation === "string" ? mutation : mutation.name } }))

    // ---- push ----------------------------------------------------------------
    type PushOutcome = "idle" | "progress" | "retry"

    /**
     * Put `next` in place of the queue (the same ids, some dropped or turned
     * into placeholders; `changed` are the mutations that lost their effect):
     * rebuild the views of their scopes, commit `write`, and tell listeners
     * what the user sees change.
     */
    const replaceQueue = (next: ReadonlyArray<PendingMutation>, changed: ReadonlyArray<PendingMutation>, write: Batch) =>
      Effect.gen(function*() {
        const views = new Map<string, Rows>()
        const changes: Array<LocalChange> = []
        for (const scope of new Set(changed.map((m) => m.scope))) {
          const st = scopes.get(scope) ?? emptyScope()
          const view = yield* rebuild(scope, st.confirmed, next)
          views.set(scope, view)
          changes.push(...LocalView.diff(scope, st.view, view))
        }
        yield* storage.commit(write)
        pending = next
        for (const [scope, view] of views) {
          const st = scopes.get(scope) ?? emptyScope()
          scopes.set(scope, { ...st, view })
        }
        yield* publishChanges(changes, "rollback")
        yield* syncPendingCount
      })

    /**
     * Drop mutations the server refused (their ids are consumed): app
     * mutations lose their effect, probes are answered; each is reported
     * as `Rejected`, as the app queued it.
     */
    const dropRejected = (refused: ReadonlyArray<readonly [PendingMutation, Protocol.MutationError]>) =>
      Effect.gen(function*() {
        const ids = new Set(refused.map(([m]) => m.id))
        const changed = refused.map(([m]) => m).filter((m) => !PushPolicy.isReserved(m))
        yield* replaceQueue(pending.filter((m) => !ids.has(m.id)), changed, { pendingDelete: [...ids] })
        for (const [m, error] of refused) {
          accepted.delete(m.id)
          const code = error.code === "out_of_order" ? "rejected" : error.code
          yield* publish({ _tag: "Rejected", mutation: PushPolicy.isProbe(m) ? PushPolicy.probed(m) : m, code, message: error.message })
        }
      })

    /** Turn mutations the server never consumed into placeholders (`PushPolicy`), rolling their effects back. */
    const toPlaceholders = (ms: ReadonlyArray<PendingMutation>) => {
      const ids = new Set(ms.map((m) => m.id))
      return replaceQueue(
        pending.map((m) => ids.has(m.id) ? PushPolicy.placeholder(m) : m),
        ms,
        { pendingPut: ms.map(PushPolicy.placeholder) }
      )
    }

    /**
     * The client drops a mutation the server refuses as a request (found
     * alone): a placeholder takes its id, a `Rejected` event says why. A
     * placeholder refused alone means the scope it borrowed is refused, so
     * its carrier is the one dropped. A probe refused alone will never be
     * answered: it is given up (the server's rows stand).
     */
    const refuse = (gen0: number, sent: PendingMutation, code: PushPolicy.RefusalCode, message: string) =>
      locked(Effect.gen(function*() {
        if (generation !== gen0) return "retry" as const
        if (PushPolicy.isProbe(sent)) {
          yield* storage.commit({ pendingDelete: [sent.id] })
          pending = pending.filter((m) => m.id !== sent.id)
          yield* Effect.logWarning("push: no answer for a processed mutation; given up", { id: sent.id, scope: sent.scope, code, message })
          return "progress" as const
        }
        const culprit = PushPolicy.carrierOf(pending, sent)
        const current = culprit === undefined ? undefined : pending.find((p) => p.id === culprit.id)
        if (current === undefined || PushPolicy.isPlaceholder(current) || accepted.has(current.id)) return "progress" as const
        yield* toPlaceholders([current])
        yield* publish({ _tag: "Rejected", mutation: current, code, message })
        yield* Effect.logWarning("push: the server refuses this mutation's request; dropped", {
          id: current.id,
          name: current.name,
          scope: current.scope,
          code,
          message
        })
        return "progress" as const
      }))

    /** `out_of_order` with `expected`: renumber (server lost state) or resend from `expected`. */
    const recover = (expected: number) =>
      Effect.gen(function*() {
        const first = pending[0]
        if (first === undefined) return
        if (expected < first.id) {
          // the server forgot every id: placeholders have nothing left to hold
          const renumbered = visible().map((m, i) => ({ ...m, id: expected + i }))
          const next = expected + renumbered.length
          yield* storage.commit({ meta: { clientId, nextId: next }, pendingReplace: renumbered })
          pending = renumbered
          nextId = next
          generation++
          accepted.clear()
          for (const scope of scopes.keys()) {
            needsReset.set(scope, "server_lost_state")
            yield* requestPull(scope)
          }
          yield* publish({ _tag: "Renumbered", from: expected, count: renumbered.length })
          yield* Effect.logWarning("the server lost this client's state; pending mutations renumbered", { expected, count: renumbered.length })
        } else {
          // the server is behind what it said: what it acknowledged from `expected` on goes again
          for (const id of [...accepted]) if (id >= expected) accepted.delete(id)
          yield* unprobe(expected)
        }
      })

    /**
     * Probes from `expected` on ask about mutations the server no longer
     * has (it lost them, with the rows they wrote): they go again as they
     * were queued, and their scopes are reset from a snapshot so the view
     * does not count their effect twice.
     */
    const unprobe = (expected: number) =>
      Effect.gen(function*() {
        const lost = pending.filter((m) => PushPolicy.isProbe(m) && m.id >= expected)
        if (lost.length === 0) return
        const ids = new Set(lost.map((m) => m.id))
        yield* storage.commit({ pendingPut: lost.map(PushPolicy.probed) })
        pending = pending.map((m) => ids.has(m.id) ? PushPolicy.probed(m) : m)
        for (const scope of new Set(lost.map((m) => m.scope))) {
          needsReset.set(scope, "server_lost_state")
          yield* requestPull(scope)
        }
      })

    const handleResults = (gen0: number, batch: ReadonlyArray<PushPolicy.Sent>, results: ReadonlyArray<Protocol.MutationResult>) =>
      locked(Effect.gen(function*() {
        if (generation !== gen0) return "retry" as const
        const byId = new Map(pending.map((m) => [m.id, m] as const))
        const refused: Array<readonly [PendingMutation, Protocol.MutationError]> = []
        /** Placeholders and probes the server has answered: done with. */
        const settled: Array<number> = []
        const toPull = new Set<string>()
        let expected: number | undefined
        let progress = false
        for (let i = 0; i < batch.length; i++) {
          const m = batch[i].mutation
          const r = results[i]
          if (r.error?.code === "out_of_order") {
            expected = r.error.expected ?? pending[0]?.id
            break
          }
          progress = true
          const current = byId.get(m.id)
          if (current === undefined) continue // answered before (a duplicated answer)
          if (PushPolicy.isPlaceholder(current)) {
            settled.push(m.id)
            if (r.ok) {
              // the original reached the server before it was dropped: its effect comes back with the next pull
              toPull.add(current.scope)
              yield* Effect.logWarning("push: a dropped mutation had been applied by the server", { id: m.id, scope: current.scope })
            }
          } else if (r.ok) {
            // a probe answered `ok`: its effect is in the rows already pulled
            if (PushPolicy.isProbe(current)) settled.push(m.id)
            else accepted.add(m.id)
            toPull.add(m.scope)
          } else {
            refused.push([current, r.error ?? { code: "rejected", message: "refused" }])
          }
        }
        if (settled.length > 0) {
          const ids = new Set(settled)
          yield* storage.commit({ pendingDelete: settled })
          pending = pending.filter((m) => !ids.has(m.id))
        }
        if (refused.length > 0) yield* dropRejected(refused)
        if (expected !== undefined) {
          yield* recover(expected)
          progress = true
        }
        for (const scope of toPull) yield* requestPull(scope)
        return progress ? "progress" as const : "retry" as const
      }))

    /** After a failed request, the next carries at most this many mutations (halving finds the one at fault); reset by an answer. */
    let narrowTo = batchSize
    /** The body budget: `maxPushBytes` until a 413 teaches a smaller one. */
    let byteBudget = maxPushBytes
    /** Consecutive failed attempts of one mutation sent alone. */
    let failing: { readonly id: number; readonly count: number } | undefined

    const noteFailure = (sent: PendingMutation, error: SyncTransportError) =>
      Effect.suspend(() => {
        const m = PushPolicy.carrierOf(pending, sent) ?? sent
        const count = failing?.id === m.id ? failing.count + 1 : 1
        failing = { id: m.id, count }
        if (count < stuckAfter) return Effect.void
        const stuck: Stuck = { mutation: PushPolicy.isProbe(m) ? PushPolicy.probed(m) : m, error, attempts: count }
        return Effect.zipRight(
          setStatus((s) => ({ ...s, stuck })),
          count === stuckAfter ? publish({ _tag: "Stuck", ...stuck }) : Effect.void
        )
      })

    const clearStuck = Effect.suspend(() => {
      failing = undefined
      return setStatus((s) => s.stuck === undefined ? s : { ...s, stuck: undefined })
    })

    /** A request failed as a whole: narrow it down, drop what the server will never take, or fail (retried later). */
    const onRequestFailure = (gen0: number, batch: PushPolicy.Batch, error: SyncTransportError): Effect.Effect<PushOutcome, SyncFailure> =>
      Effect.gen(function*() {
        const failure = PushPolicy.classify(error)
        const alone = batch.sent.length === 1
        const head = batch.sent[0].mutation
        switch (failure._tag) {
          case "TooLarge":
            if (alone) return yield* refuse(gen0, head, "too_large", failure.message)
            byteBudget = Math.max(1, Math.floor(batch.bytes / 2))
            return "progress" as const
          case "Refused":
            if (alone) return yield* refuse(gen0, head, failure.code, failure.message)
            narrowTo = Math.ceil(batch.sent.length / 2)
            return "progress" as const
          case "Retry":
            if (alone) yield* noteFailure(head, error)
            else narrowTo = Math.ceil(batch.sent.length / 2)
            return yield* error
        }
      })

    const pushOnce: Effect.Effect<PushOutcome, SyncFailure> = pushMutex.withPermits(1)(Effect.gen(function*() {
      const gen0 = generation
      const limits = { count: Math.min(batchSize, narrowTo), bytes: byteBudget }
      const batch = PushPolicy.nextBatch(pending.filter((m) => !accepted.has(m.id)), limits, clientId)
      const head = batch.sent[0]
      if (head === undefined) {
        yield* clearStuck
        return "idle" as const
      }
      if (batch.sent.length === 1 && batch.bytes > maxPushBytes) {
        return yield* refuse(gen0, head.mutation, "too_large", `a push of it alone is ${batch.bytes} bytes, over maxPushBytes (${maxPushBytes})`)
      }
      const answer = yield* Effect.either(transport.push({
        protocol: Protocol.PROTOCOL_VERSION,
        client_id: clientId,
        mutations: batch.sent.map((x) => x.wire)
      }))
      const results = Either.flatMap(answer, (r): Either.Either<ReadonlyArray<Protocol.MutationResult>, SyncTransportError> =>
        r.results.length === batch.sent.length && r.results.every((x, i) => x.id === batch.sent[i].mutation.id)
          ? Either.right(r.results)
          : Either.left(new TransportError({ reason: "decode", message: "push results do not match the request" })))
      if (Either.isLeft(results)) {
        yield* reportFailure("push")(results.left)
        return yield* onRequestFailure(gen0, batch, results.left)
      }
      narrowTo = batchSize
      yield* clearStuck
      yield* reportSuccess("lastPushAt")
      return yield* handleResults(gen0, batch.sent, results.right)
    }).pipe(Effect.withSpan("SyncClient.push", { attributes: { client_id: clientId } })))

    const pushWorker = Effect.gen(function*() {
      const backoff = yield* Backoff.make(retry, onlinePush)
      while (true) {
        const outcome = yield* Effect.either(pushOnce)
        if (Either.isRight(outcome) && outcome.right !== "retry") {
          yield* backoff.reset
          if (outcome.right === "idle") yield* Queue.take(pushWake)
        } else {
          yield* backoff.wait
        }
      }
    })

    /** Drop a pending mutation before the server applies it (see `Client.discard`). */
    const discard = (id: number): Effect.Effect<PendingMutation, DiscardError | ClientStorageError> =>
      Effect.gen(function*() {
        const m = yield* locked(Effect.gen(function*() {
          const current = pending.find((p) => p.id === id)
          if (current === undefined || PushPolicy.isPlaceholder(current)) {
            return yield* new DiscardError({ reason: "not_pending", message: `no pending mutation ${id}` })
          }
          if (PushPolicy.isProbe(current)) {
            // processed by the server, answer unknown: stop asking (its rows stand)
            yield* storage.commit({ pendingDelete: [id] })
            pending = pending.filter((p) => p.id !== id)
            if (failing?.id === id) yield* clearStuck
            return PushPolicy.probed(current)
          }
          if (accepted.has(id)) {
            return yield* new DiscardError({ reason: "accepted", message: `mutation ${id} was applied by the server; the next pull confirms it` })
          }
          yield* toPlaceholders([current])
          if (failing?.id === id) yield* clearStuck
          return current
        }))
        // cut a backoff short: what was stuck behind it may go now
        yield* wake(onlinePush)
        yield* wake(pushWake)
        return m
      }).pipe(Effect.withSpan("SyncClient.discard", { attributes: { id } }))

    // ---- pull ------------------------------------------------------------------
    type PullOutcome = "done" | "stale"

    const isResetCode = (e: SyncFailure): e is Protocol.ProtocolError =>
      e._tag === "ProtocolError" && (e.code === "cursor_too_old" || e.code === "cursor_ahead")

    const scopeWrite = (scope: string, cursor: number, confirmed: Rows, touched: Iterable<readonly [string, string]>): ScopeWrite => {
      const put: Array<readonly [string, string, unknown]> = []
      const del: Array<readonly [string, string]> = []
      for (const [entity, id] of touched) {
        const row = LocalView.getRow(confirmed, entity, id)
        if (Option.isSome(row)) put.push([entity, id, row.value])
        else del.push([entity, id])
      }
      return { scope, cursor, put, delete: del }
    }

    /** Replace a scope by a snapshot (invariant 6), keeping pending mutations. */
    const resetScope = (scope: string, reason: ResetReason, gen0: number): Effect.Effect<PullOutcome, SyncFailure> =>
      Effect.gen(function*() {
        const snap = yield* transport.snapshot({ protocol: Protocol.PROTOCOL_VERSION, scope, client_id: clientId }).pipe(
          Effect.tapError(reportFailure("snapshot"))
        )
        return yield* locked(Effect.gen(function*() {
          if (generation !== gen0) return "stale" as const
          const st = scopes.get(scope) ?? emptyScope()
          const confirmed = LocalView.fromSnapshot(snap.data)
          const queue = confirmUpTo(scope, snap.last_mutation_id)
          const view = yield* rebuild(scope, confirmed, queue.next)
          const put: Array<readonly [string, string, unknown]> = []
          for (const [entity, ids] of confirmed) for (const [id, data] of ids) put.push([entity, id, data])
          const batch: Batch = {
            scopes: [{ scope, cursor: snap.cursor, reset: true, put }],
            pendingDelete: queue.pendingDelete,
            pendingPut: queue.pendingPut
          }
          yield* storage.commit(batch)
          scopes.set(scope, { cursor: snap.cursor, confirmed, view })
          pending = queue.next
          queue.settle()
          needsReset.delete(scope)
          yield* publish({ _tag: "Reset", scope, reason })
          yield* publishChanges(LocalView.diff(scope, st.view, view), "reset")
          yield* syncPendingCount
          yield* reportSuccess("lastPullAt")
          return "done" as const
        }))
      }).pipe(Effect.withSpan("SyncClient.reset", { attributes: { scope, reason } }))

    const commitPull = (
      scope: string,
      gen0: number,
      from: number,
      changes: ReadonlyArray<Protocol.Change>,
      cursor: number,
      lmid: number | undefined
    ): Effect.Effect<PullOutcome, ClientStorageError> =>
      locked(Effect.gen(function*() {
        if (generation !== gen0) return "stale" as const
        const st = scopes.get(scope) ?? emptyScope()
        if (st.cursor !== from) return "stale" as const
        const queue = confirmUpTo(scope, lmid)
        if (changes.length > 0 || queue.changed || !scopes.has(scope)) {
          const confirmed = LocalView.copyRows(st.confirmed)
          LocalView.applyChanges(confirmed, changes)
          const view = yield* rebuild(scope, confirmed, queue.next)
          const touched = new Map(changes.map((c) => [`${c.entity}\u0000${c.id}`, [c.entity, c.id] as const]))
          yield* storage.commit({
            scopes: [scopeWrite(scope, cursor, confirmed, touched.values())],
            pendingDelete: queue.pendingDelete,
            pendingPut: queue.pendingPut
          })
          scopes.set(scope, { cursor, confirmed, view })
          pending = queue.next
          queue.settle()
          yield* publishChanges(LocalView.diff(scope, st.view, view), "pull")
          yield* syncPendingCount
        }
        yield* reportSuccess("lastPullAt")
        return "done" as const
      }))

    const pullPages = (scope: string, gen0: number): Effect.Effect<PullOutcome, SyncFailure> =>
      Effect.gen(function*() {
        const from = scopes.get(scope)?.cursor ?? 0
        let cursor = from
        const changes: Array<Protocol.Change> = []
        for (let page = 0; ; page++) {
          if (page >= maxPullPages) return yield* resetScope(scope, "backlog", gen0)
          const response = yield* transport.pull({ protocol: Protocol.PROTOCOL_VERSION, scope, cursor, limit: pullLimit, client_id: clientId }).pipe(
            Effect.map(Either.right),
            Effect.catchIf(isResetCode, (e) => Effect.succeed(Either.left(e))),
            Effect.tapError(reportFailure("pull"))
          )
          if (Either.isLeft(response)) {
            return yield* resetScope(scope, response.left.code === "cursor_ahead" ? "cursor_ahead" : "cursor_too_old", gen0)
          }
          const r = response.right
          const last = r.changes[r.changes.length - 1]
          const continues = r.changes.every((c, i) => c.scope === scope && c.cursor === cursor + i + 1) &&
            r.cursor === (last?.cursor ?? cursor) && (r.changes.length > 0 || !r.has_more)
          if (!continues) {
            return yield* new SyncError({ reason: "bad_response", message: `pull of ${scope} from ${cursor} does not continue the log` })
          }
          changes.push(...r.changes)
          cursor = r.cursor
          if (!r.has_more) return yield* commitPull(scope, gen0, from, changes, cursor, r.last_mutation_id)
        }
      })

    const pullScope = (scope: string): Effect.Effect<void, SyncFailure> =>
      pullMutex.withPermits(1)(Effect.gen(function*() {
        for (let tries = 0; tries < 10; tries++) {
          const gen0 = generation
          const reset = needsReset.get(scope)
          const outcome = reset !== undefined ? yield* resetScope(scope, reset, gen0) : yield* pullPages(scope, gen0)
          if (outcome === "done") return
        }
      })).pipe(Effect.withSpan("SyncClient.pull", { attributes: { scope } }))

    const pullWorker = Effect.gen(function*() {
      const backoff = yield* Backoff.make(retry, onlinePull)
      while (true) {
        if (dirty.size === 0) yield* Queue.take(pullWake)
        const batch = [...dirty]
        dirty.clear()
        let failed = false
        for (const scope of batch) {
          const outcome = yield* Effect.either(pullScope(scope))
          if (Either.isLeft(outcome)) {
            failed = true
            dirty.add(scope)
          }
        }
        if (failed) yield* backoff.wait
        else yield* backoff.reset
      }
    })

    // ---- explicit operations ---------------------------------------------------------
    const push: Effect.Effect<void, SyncFailure> = Effect.gen(function*() {
      for (let rounds = 0; ; rounds++) {
        const outcome = yield* pushOnce
        if (outcome === "idle") return
        if (outcome === "retry" && rounds > 10) {
          return yield* new SyncError({ reason: "not_settled", message: "the server keeps answering out of order" })
        }
      }
    })

    const sync: Effect.Effect<void, SyncFailure> = Effect.gen(function*() {
      for (let round = 0; round < 20; round++) {
        yield* push
        for (const scope of new Set([...tracked, ...visible().map((m) => m.scope)])) yield* pullScope(scope)
        if (visible().length === 0) return
      }
      return yield* new SyncError({ reason: "not_settled", message: `${visible().length} mutations still pending` })
    })

    const pull = (scope: string, cursor?: number) =>
      Effect.gen(function*() {
        yield* track(scope)
        if (cursor !== undefined && cursor <= (scopes.get(scope)?.cursor ?? 0) && !needsReset.has(scope)) return
        yield* pullScope(scope)
      })

    // ---- queries -------------------------------------------------------------------
    const viewOf = (scope: string) => scopes.get(scope)?.view ?? LocalView.emptyRows()

    const query = <A, I>(scope: string, entity: Entity.Entity<A, I>) =>
      Effect.suspend(() => {
        const ids = viewOf(scope).get(entity.name)
        const rows = ids === undefined ? [] : [...ids].sort(([a], [b]) => Entity.idOrder(a, b))
        return Effect.forEach(rows, ([id, json]) => Effect.map(Entity.decode(entity, json), (value) => [id, value] as const))
      })

    const get = <A, I>(scope: string, entity: Entity.Entity<A, I>, id: string) =>
      Effect.suspend(() =>
        Option.match(LocalView.getRow(viewOf(scope), entity.name, id), {
          onNone: () => Effect.succeedNone,
          onSome: (json) => Effect.asSome(Entity.decode(entity, json))
        })
      )

    const watch = <A, I>(scope: string, entity: Entity.Entity<A, I>) =>
      Stream.unwrapScoped(Effect.gen(function*() {
        const events = yield* PubSub.subscribe(pubsub)
        const touched = Stream.fromQueue(events).pipe(
          Stream.filter((e) => e._tag === "Changes" && e.changes.some((c) => c.scope === scope && c.entity === entity.name))
        )
        return Stream.concat(Stream.make(undefined), touched).pipe(Stream.mapEffect(() => query(scope, entity)))
      }))

    /** The views as they are now: what one run of a query reads (views are replaced, never changed, by commits). */
    const snapshotViews = (): ReadonlyMap<string, Rows> => new Map([...scopes].map(([scope, st]) => [scope, st.view] as const))

    const watchQuery = <A, E>(run: (tx: Query.ReadTransaction) => Effect.Effect<A, E>): Stream.Stream<A, E> =>
      Stream.unwrapScoped(Effect.gen(function*() {
        // subscribed before the first run, so no commit falls between it and the events
        const events = yield* PubSub.subscribe(pubsub)
        let reads = Query.readNothing
        const once = Effect.suspend(() => {
          const { reads: read, tx } = Query.makeReadTransaction(registry, snapshotViews())
          return Effect.map(run(tx), (a) => {
            reads = read
            return a
          })
        })
        // `reads` is looked at when each event is taken, after the run before it finished
        const reruns = Stream.fromQueue(events).pipe(
          Stream.mapEffect((e): Effect.Effect<Option.Option<A>, E> =>
            e._tag === "Changes" && e.changes.some((c) => reads.touches(c)) ? Effect.asSome(once) : Effect.succeedNone
          ),
          Stream.filterMap((a) => a)
        )
        return Stream.concat(Stream.fromEffect(once), reruns).pipe(Stream.changesWith(Query.equivalent))
      }))

    const watchAny = (first: string | ((tx: Query.ReadTransaction) => Effect.Effect<unknown, unknown>), entity?: Entity.Entity<unknown, unknown>) =>
      typeof first === "function" ? watchQuery(first) : watch(first, entity as Entity.Entity<unknown, unknown>)

    // ---- background work ---------------------------------------------------------------
    yield* FiberSet.run(fibers, pushWorker)
    yield* FiberSet.run(fibers, pullWorker)
    yield* FiberSet.run(fibers, Effect.forever(Effect.zipRight(
      Effect.sleep(pullInterval),
      Effect.suspend(() => Effect.forEach([...tracked], requestPull, { discard: true }))
    )))
    for (const scope of options.scopes ?? []) {
      if (!validScope(scope)) {
        yield* Effect.logWarning(`SyncClient: ignoring the invalid scope ${JSON.stringify(scope)}`)
        continue
      }
      if (!scopes.has(scope)) {
        yield* storage.commit({ scopes: [{ scope, cursor: 0 }] })
        scopes.set(scope, emptyScope())
      }
      tracked.add(scope)
    }
    for (const scope of tracked) yield* requestPull(scope)
    if (pending.length > 0) yield* wake(pushWake)

    if (Option.isSome(live)) {
      const client = live.value
      const events = yield* client.subscribeEvents
      yield* FiberSet.run(fibers, Effect.forever(Effect.flatMap(Queue.take(events), (event) => {
        switch (event._tag) {
          case "Online":
            return Effect.all([
              onHeads(event.cursors),
              wake(onlinePush),
              wake(onlinePull),
              wake(pushWake),
              setStatus((s) => ({ ...s, online: true }))
            ], { discard: true })
          case "Subscribed":
            return onHeads(event.cursors)
          case "Poke":
            return tracked.has(event.scope) && event.cursor > (scopes.get(event.scope)?.cursor ?? 0)
              ? requestPull(event.scope)
              : Effect.void
          default:
            return Effect.void
        }
      })))
      yield* FiberSet.run(fibers, client.statusChanges.pipe(
        Stream.runForEach((s) => setStatus((st) => ({ ...st, live: s })))
      ))
      if (tracked.size > 0) yield* subscribeLive([...tracked])
    }

    const client: Client<M> = {
      clientId,
      registry,
      mutate: mutateImpl,
      mutateUnknown: mutateImpl,
      track,
      pull,
      push,
      sync,
      query,
      get,
      view: (scope) => Effect.sync(() => LocalView.toSnapshot(viewOf(scope))),
      cursor: (scope) => Effect.sync(() => scopes.get(scope)?.cursor ?? 0),
      scopes: Effect.sync(() => [...tracked]),
      pending: Effect.sync(visible),
      discard,
      watch: watchAny as Client<M>["watch"],
      status: SubscriptionRef.get(status),
      statusChanges: status.changes,
      subscribeEvents: PubSub.subscribe(pubsub),
      events: Stream.fromPubSub(pubsub)
    }
    return client
  })

/** A sync client for the layer's lifetime. Uses the `LiveClient` in context, if any, for pokes. */
export const layer = (options: Options = {}): Layer.Layer<SyncClient, ClientStorageError, SyncTransport | ClientStorage> =>
  Layer.scoped(SyncClient, make(options))

/**
 * The client in context, typed by `registry`: the one it was built with
 * (`layer({ registry })`). Dies if the client was built with another
 * registry (or none), since its types would then be a lie.
 */
export const typed = <M extends Mutation.Mutation>(registry: Mutation.Registry<M>): Effect.Effect<Client<M>, never, SyncClient> =>
  Effect.flatMap(SyncClient, (client) =>
    client.registry === registry
      ? Effect.succeed<Client<M>>({ ...client, registry, mutate: client.mutateUnknown })
      : Effect.dieMessage("SyncClient.typed: the client in context was built with another registry"))
