/**
 * The engine's implementation: push (with and without `client_id`), pull
 * and snapshot over the storage, mutator, broker and authorizer services.
 * The invariants it keeps are stated in `SyncEngine.ts`.
 *
 * @internal
 */
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Metric from "effect/Metric"
import * as Schedule from "effect/Schedule"
import * as Metrics from "../../Metrics.js"
import * as Protocol from "../../protocol/Sync.js"
import { ProtocolError } from "../../protocol/Sync.js"
import * as Authorizer from "../Authorizer.js"
import { ChangeLog, type ChangeInput } from "../ChangeLog.js"
import * as Clients from "../Clients.js"
import { type MutationFailed, Mutator } from "../Mutator.js"
import { PokeBroker } from "../PokeBroker.js"
import * as StorageErrors from "../StorageError.js"
import type { StorageError } from "../StorageError.js"
import { Store } from "../Store.js"
import type { Caller, SyncEngine } from "../SyncEngine.js"
import { SyncStorage } from "../SyncStorage.js"
import * as PushBatch from "./pushBatch.js"

/** Map the engine's internal failures to protocol errors (each kind has one mapping, in its own module). */
const toProtocolError = (e: StorageError | Authorizer.Denied | ProtocolError): ProtocolError =>
  e._tag === "ProtocolError" ? e : e._tag === "Denied" ? Authorizer.toProtocolError(e) : StorageErrors.toProtocolError(e)

const logStorageError = <A, R>(self: Effect.Effect<A, StorageError | Authorizer.Denied | ProtocolError, R>) =>
  self.pipe(
    Effect.tapError((e) =>
      e._tag === "StorageError"
        ? Effect.zipRight(Effect.logWarning("storage failure", e.cause ?? e.message), Metric.increment(Metrics.storageErrors))
        : Effect.void
    ),
    Effect.mapError(toProtocolError)
  )

const isConflict = (e: unknown): boolean =>
  typeof e === "object" && e !== null && "_tag" in e && e._tag === "StorageError" && (e as StorageError).reason === "conflict"

/** After a first lost conflict: up to 4 more attempts, ~10, 20, 40 ms apart, jittered. */
const conflictRetries = Schedule.exponential("10 millis").pipe(Schedule.jittered, Schedule.intersect(Schedule.recurs(3)))

/**
 * A transaction that lost a lock conflict (a Postgres deadlock or
 * serialization failure, SQLITE_BUSY) was rolled back whole, so it is safe
 * to run again; a few jittered retries spare the client a 503. The retry
 * machinery is only set up once a conflict happened.
 */
const retryConflicts = <A, E>(self: Effect.Effect<A, E | StorageError>): Effect.Effect<A, E | StorageError> =>
  Effect.catchIf(self, isConflict, () =>
    Effect.retry(Effect.delay(self, Duration.millis(5 + Math.random() * 10)), { schedule: conflictRetries, while: isConflict }))

/** Internal: an attempt without savepoints met a mutation that failed after writing; it runs again with them. */
class NeedsSavepoints extends Data.TaggedError("NeedsSavepoints") {}

/** How a push applies one mutation: its changes (Right), or how it failed (Left). */
type Apply<E> = (
  mutation: Protocol.Mutation,
  scope: string
) => Effect.Effect<Either.Either<ReadonlyArray<ChangeInput>, MutationFailed>, E | StorageError>

export const make: Effect.Effect<
  SyncEngine["Type"],
  never,
  SyncStorage | ChangeLog | Store | Clients.Clients | Mutator | PokeBroker | Authorizer.Authorizer
> = Effect.gen(function*() {
  const storage = yield* SyncStorage
  const log = yield* ChangeLog
  const store = yield* Store
  const clients = yield* Clients.Clients
  const mutator = yield* Mutator
  const broker = yield* PokeBroker
  const authorizer = yield* Authorizer.Authorizer

  /**
   * Authorize every scope of a request; all must yield the same principal.
   * Returns the principal as an owner of client ids: `undefined` for the
   * anonymous principal, which owns none.
   */
  const authorize = (
    action: Authorizer.Action,
    scopes: Iterable<string>,
    caller: Caller,
    clientId: string | undefined
  ): Effect.Effect<string | undefined, Authorizer.Denied> =>
    Effect.flatMap(
      Effect.forEach(
        new Set(scopes),
        (scope) => authorizer.authorize({ action, scope, token: caller.token, headers: caller.headers, clientId })
      ),
      (principals) => {
        const id = principals[0]?.id
        if (principals.some((p) => p.id !== id)) {
          return Authorizer.forbidden("the scopes of this request were authorized as different principals")
        }
        return Effect.succeed(id === undefined || id === Authorizer.anonymous.id ? undefined : id)
      }
    )

  /** `forbidden`: the client id belongs to another principal (whose ids are never revealed). */
  const notOwner = (clientId: string) =>
    Authorizer.forbidden(`client_id ${clientId} belongs to another principal`)

  /** Fail with `forbidden` when another principal owns the client id (pull, snapshot: reads only). */
  const checkOwner = (clientId: string | undefined, owner: string | undefined) =>
    clientId === undefined
      ? Effect.void
      : Effect.flatMap(clients.ownerOf(clientId), (found) => found === undefined || found === owner ? Effect.void : notOwner(clientId))

  const pokeAll = (heads: ReadonlyMap<string, number>) =>
    Effect.forEach(heads, ([scope, cursor]) => broker.poke(scope, cursor), { discard: true })

  /** Run the mutator; a failed mutation (unknown, invalid args, rejected) yields Left. */
  const applyMutation = (
    mutation: Protocol.Mutation,
    scope: string
  ): Effect.Effect<Either.Either<ReadonlyArray<ChangeInput>, MutationFailed>, StorageError> =>
    mutator.apply({ name: mutation.name, scope, args: mutation.args }).pipe(
      Effect.map(Either.right),
      Effect.catchTag("MutationFailed", (e) => Effect.succeed(Either.left(e)))
    )

  /** Claim the client id for `owner` (or find it is another's: then nothing is revealed and all rolls back); its last id. */
  const claimClient = (clientId: string, owner: string | undefined): Effect.Effect<number, StorageError | Authorizer.Denied> =>
    Effect.flatMap(clients.claim(clientId, owner), (claim) => claim.owner === owner ? Effect.succeed(claim.last) : notOwner(clientId))

  /** The remembered failures among the duplicates: one read, only when there are duplicates. */
  const rememberedFailures = (clientId: string, dupes: ReadonlyArray<number>) =>
    dupes.length === 0 ? Effect.succeed(new Map<number, Clients.Failure>()) : clients.failures(clientId, dupes)

  /**
   * Process the mutations in order into the batch: a duplicate is answered
   * from the ledger, a gap ends the request with `out_of_order`, the next id
   * goes through `apply` (in a span of its own).
   */
  const processAll = <E>(batch: PushBatch.Batch, mutations: ReadonlyArray<Protocol.Mutation>, apply: Apply<E>) =>
    Effect.gen(function*() {
      for (let i = 0; i < mutations.length; i++) {
        const mutation = mutations[i]
        const id = mutation.id ?? 0
        const scope = PushBatch.scopeOf(mutation)
        if (id <= batch.last) {
          PushBatch.addDuplicate(batch, id, scope)
          continue
        }
        if (id > batch.last + 1) {
          PushBatch.addOutOfOrder(batch, mutations.slice(i))
          return
        }
        const outcome = yield* apply(mutation, scope).pipe(
          Effect.withSpan("SyncEngine.mutation", { attributes: { name: mutation.name, id, scope }, captureStackTrace: false })
        )
        PushBatch.addOutcome(batch, id, scope, outcome)
      }
    })

  /** Append each scope's pending changes (one append per scope); per scope, its head before and after them. */
  const appendPending = (pending: ReadonlyMap<string, ReadonlyArray<ChangeInput>>) =>
    Effect.gen(function*() {
      const base = new Map<string, number>()
      const heads = new Map<string, number>()
      for (const [scope, changes] of pending) {
        const appended = yield* log.append(scope, changes)
        base.set(scope, appended[0].cursor - 1)
        heads.set(scope, appended[appended.length - 1].cursor)
      }
      return { base, heads }
    })

  /** Each slot's result at its cursor; a scope the push did not write is read once, for its head. */
  const resolveResults = (slots: ReadonlyArray<PushBatch.Slot>, base: Map<string, number>) =>
    Effect.gen(function*() {
      const results: Array<Protocol.MutationResult> = []
      for (const slot of slots) {
        let head = base.get(slot.scope)
        if (head === undefined) {
          head = yield* log.head(slot.scope)
          base.set(slot.scope, head)
        }
        results.push(slot.result(head + slot.upTo))
      }
      return results
    })

  /**
   * One attempt at a push with `client_id`, as one transaction: claim, read
   * the remembered failures among the duplicates, lock every scope's head in
   * one global order (writers of the same scopes then queue instead of
   * deadlocking), process the mutations, append once per scope (cursors in
   * mutation order), record the processed ids once, then resolve the cursors.
   */
  const attempt = <E>(
    clientId: string,
    owner: string | undefined,
    mutations: ReadonlyArray<Protocol.Mutation>,
    scopes: ReadonlyArray<string>,
    apply: Apply<E>
  ) =>
    storage.transaction(Effect.gen(function*() {
      const last = yield* claimClient(clientId, owner)
      const failed = yield* rememberedFailures(clientId, PushBatch.duplicateIds(mutations, last))
      yield* log.lockScopes(scopes)
      const batch = PushBatch.make(last, failed)
      yield* processAll(batch, mutations, apply)
      const { base, heads } = yield* appendPending(batch.pending)
      yield* clients.recordAll(clientId, batch.processed)
      const results = yield* resolveResults(batch.slots, base)
      return { results, heads }
    }))

  const pushWithClient = (clientId: string, owner: string | undefined, mutations: ReadonlyArray<Protocol.Mutation>) => {
    const scopes = [...new Set(mutations.map((m) => PushBatch.scopeOf(m)))].sort()
    // First without savepoints: a mutation that fails before writing anything has nothing to roll
    // back, and most do. One that fails after writing aborts this attempt (rolled back whole) and
    // the push runs again with a savepoint around each mutation.
    const optimistic = attempt(clientId, owner, mutations, scopes, (mutation, scope) =>
      Effect.flatMap(applyMutation(mutation, scope), (outcome) =>
        Either.isLeft(outcome) && outcome.left.wrote !== false ? Effect.fail(new NeedsSavepoints()) : Effect.succeed(outcome)))
    const withSavepoints = attempt(clientId, owner, mutations, scopes, (mutation, scope) =>
      storage.transaction(Effect.flatMap(applyMutation(mutation, scope), (outcome) =>
        // fail inside the savepoint so that it rolls back; caught outside it
        Either.isLeft(outcome) ? Effect.fail(outcome.left) : Effect.succeed(outcome))).pipe(
          Effect.catchTag("MutationFailed", (e) => Effect.succeed(Either.left(e)))
        ))
    return retryConflicts(Effect.catchTag(optimistic, "NeedsSavepoints", () => withSavepoints))
  }

  /**
   * Each mutation commits on its own; the scopes are poked once each, with
   * their last head, when the request ends (also when a later mutation's
   * storage failed: what committed is poked).
   */
  const pushPlain = (mutations: ReadonlyArray<Protocol.Mutation>) => {
    const heads = new Map<string, number>()
    return Effect.gen(function*() {
      const results: Array<Protocol.MutationResult> = []
      for (const mutation of mutations) {
        const scope = PushBatch.scopeOf(mutation)
        // The mutation's own transaction: its writes and its append, or (failed) nothing.
        const outcome = yield* retryConflicts(storage.transaction(
          log.lockScopes([scope]).pipe(
            Effect.zipRight(mutator.apply({ name: mutation.name, scope, args: mutation.args })),
            Effect.flatMap((changes) => log.append(scope, changes))
          )
        ).pipe(
          Effect.map(Either.right),
          Effect.catchTag("MutationFailed", (e) => Effect.succeed(Either.left(e)))
        )).pipe(
          Effect.withSpan("SyncEngine.mutation", { attributes: { name: mutation.name, scope }, captureStackTrace: false })
        )
        const id = mutation.id === undefined ? {} : { id: mutation.id }
        if (Either.isLeft(outcome)) {
          // read after the failed transaction rolled back
          const cursor = yield* log.head(scope)
          results.push({ ...id, ok: false, cursor, error: { code: outcome.left.reason, message: outcome.left.message } })
          continue
        }
        const lastChange = outcome.right[outcome.right.length - 1]
        if (lastChange === undefined) {
          results.push({ ...id, ok: true, cursor: yield* log.head(scope) })
          continue
        }
        results.push({ ...id, ok: true, cursor: lastChange.cursor })
        heads.set(scope, lastChange.cursor)
      }
      return results
    }).pipe(Effect.ensuring(Effect.suspend(() => pokeAll(heads))))
  }

  /** The counter of each result code, made once (a tagged metric is looked up by key each time it is made). */
  const resultCounters = new Map<string, Effect.Effect<void>>()
  const countResults = (results: ReadonlyArray<Protocol.MutationResult>) => {
    const counts = new Map<string, number>()
    for (const r of results) {
      // a duplicate (also of a remembered failure) was counted when first processed
      const code = r.duplicate === true ? "duplicate" : r.error?.code ?? "ok"
      counts.set(code, (counts.get(code) ?? 0) + 1)
    }
    return Effect.zipRight(
      Metric.increment(Metrics.pushRequests),
      Effect.forEach(counts, ([code, n]) => {
        let counter = resultCounters.get(code)
        if (counter === undefined) {
          counter = Metrics.mutationResult(code)
          resultCounters.set(code, counter)
        }
        return n === 1 ? counter : Effect.repeatN(counter, n - 1)
      }, { discard: true })
    )
  }

  const push = (request: Protocol.PushRequest, caller: Caller) => {
    const clientId = request.client_id
    const scopes = request.mutations.map((m) => PushBatch.scopeOf(m))
    return Effect.gen(function*() {
      if (clientId !== undefined) {
        const missing = request.mutations.findIndex((m) => m.id === undefined)
        if (missing >= 0) {
          return yield* new ProtocolError({
            code: "invalid_request",
            message: `mutations[${missing}].id is required when client_id is given`
          })
        }
      }
      const owner = yield* authorize("push", scopes, caller, clientId)
      if (clientId === undefined) {
        const plain = yield* pushPlain(request.mutations)
        yield* countResults(plain)
        return { results: plain }
      }
      const { heads, results } = yield* pushWithClient(clientId, owner, request.mutations)
      yield* countResults(results)
      yield* pokeAll(heads)
      return { results }
    }).pipe(
      logStorageError,
      Effect.withSpan("SyncEngine.push", {
        attributes: { client_id: clientId, mutations: request.mutations.length },
        captureStackTrace: false
      }),
      Effect.annotateLogs({ client_id: clientId ?? "" })
    )
  }

  const pull = (request: Protocol.PullRequest, caller: Caller) =>
    Effect.gen(function*() {
      const owner = yield* authorize("pull", [request.scope], caller, request.client_id)
      const limit = request.limit ?? Protocol.DEFAULT_PULL_LIMIT
      return yield* storage.readConsistent(Effect.gen(function*() {
        yield* checkOwner(request.client_id, owner)
        const head = yield* log.head(request.scope)
        if (request.cursor > head) {
          return yield* new ProtocolError({
            code: "cursor_ahead",
            message: `cursor ${request.cursor} is beyond the scope's head ${head}`,
            details: { head }
          })
        }
        const floor = yield* log.floor(request.scope)
        if (request.cursor < floor) {
          return yield* new ProtocolError({
            code: "cursor_too_old",
            message: `cursor ${request.cursor} is older than the log keeps (floor ${floor})`,
            details: { floor }
          })
        }
        const page = yield* log.since(request.scope, request.cursor, limit)
        yield* Metric.increment(Metrics.pullPages)
        const lastChange = page.changes[page.changes.length - 1]
        const response: Protocol.PullResponse = {
          changes: page.changes,
          cursor: lastChange === undefined ? request.cursor : lastChange.cursor,
          has_more: page.hasMore
        }
        if (request.client_id === undefined) return response
        return { ...response, last_mutation_id: yield* clients.lastIdForScope(request.client_id, request.scope) }
      }))
    }).pipe(
      logStorageError,
      Effect.withSpan("SyncEngine.pull", {
        attributes: { scope: request.scope, cursor: request.cursor },
        captureStackTrace: false
      }),
      Effect.annotateLogs({ scope: request.scope, client_id: request.client_id ?? "" })
    )

  const snapshot = (request: Protocol.SnapshotRequest, caller: Caller) =>
    Effect.gen(function*() {
      const owner = yield* authorize("snapshot", [request.scope], caller, request.client_id)
      return yield* storage.readConsistent(Effect.gen(function*() {
        yield* checkOwner(request.client_id, owner)
        const cursor = yield* log.head(request.scope)
        const data = yield* store.snapshot(request.scope)
        yield* Metric.increment(Metrics.snapshots)
        const response: Protocol.SnapshotResponse = { data, cursor }
        if (request.client_id === undefined) return response
        return { ...response, last_mutation_id: yield* clients.lastIdForScope(request.client_id, request.scope) }
      }))
    }).pipe(
      logStorageError,
      Effect.withSpan("SyncEngine.snapshot", { attributes: { scope: request.scope }, captureStackTrace: false }),
      Effect.annotateLogs({ scope: request.scope, client_id: request.client_id ?? "" })
    )

  const engine: SyncEngine["Type"] = { push, pull, snapshot }
  return engine
})

