/**
 * push / pull / snapshot: the logic of PROTOCOL.md section 1.
 *
 * Invariants (why the code is shaped as it is):
 * - A push with `client_id` is one `SyncStorage.transaction`; each mutation is
 *   a nested transaction (a savepoint) holding the mutator's writes, the log
 *   append and the client's new last id, so they take effect together or not
 *   at all. A mutation that fails (unknown, invalid args, rejected) rolls back
 *   its savepoint and then only consumes its id. A `StorageError` anywhere
 *   rolls the whole request back and surfaces as `503 unavailable`.
 * - The client's last id is read first inside the transaction; SQL layers
 *   lock the client's row there, so concurrent retries of one client are
 *   serialized and a mutation is applied exactly once.
 * - Results are returned, and scopes poked, only after the commit.
 * - Pull reads the head, floor, page and `last_mutation_id` in one consistent
 *   read, so `last_mutation_id` never claims a mutation whose changes the page
 *   does not yet reach.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Schedule from "effect/Schedule"
import * as Metrics from "../Metrics.js"
import * as Protocol from "../protocol/Sync.js"
import { ProtocolError } from "../protocol/Sync.js"
import * as Authorizer from "./Authorizer.js"
import { ChangeLog } from "./ChangeLog.js"
import { Clients } from "./Clients.js"
import { Mutator } from "./Mutator.js"
import { PokeBroker } from "./PokeBroker.js"
import type { StorageError } from "./StorageError.js"
import { Store } from "./Store.js"
import { SyncStorage } from "./SyncStorage.js"

/** Who is asking: what the `Authorizer` sees besides the action and scope. */
export interface Caller {
  readonly token: string | undefined
  readonly headers: Readonly<Record<string, string | undefined>>
}

/** A caller with no credentials (tests, trusted in-process callers behind an allow-all authorizer). */
export const anonymous: Caller = { token: undefined, headers: {} }

export class SyncEngine extends Context.Tag("@mizu/sync/SyncEngine")<SyncEngine, {
  readonly push: (request: Protocol.PushRequest, caller: Caller) => Effect.Effect<Protocol.PushResponse, ProtocolError>
  readonly pull: (request: Protocol.PullRequest, caller: Caller) => Effect.Effect<Protocol.PullResponse, ProtocolError>
  readonly snapshot: (
    request: Protocol.SnapshotRequest,
    caller: Caller
  ) => Effect.Effect<Protocol.SnapshotResponse, ProtocolError>
}>() {}

/** Map the engine's internal failures to protocol errors, in one place. */
const toProtocolError = (e: StorageError | Authorizer.Denied | ProtocolError): ProtocolError => {
  switch (e._tag) {
    case "ProtocolError":
      return e
    case "Denied":
      return new ProtocolError({ code: e.reason, message: e.message })
    case "StorageError":
      return new ProtocolError({ code: "unavailable", message: "storage unavailable, retry later" })
  }
}

const logStorageError = <A, R>(self: Effect.Effect<A, StorageError | Authorizer.Denied | ProtocolError, R>) =>
  self.pipe(
    Effect.tapError((e) =>
      e._tag === "StorageError"
        ? Effect.zipRight(Effect.logWarning("storage failure", e.cause ?? e.message), Metric.increment(Metrics.storageErrors))
        : Effect.void
    ),
    Effect.mapError(toProtocolError)
  )

export const make = Effect.gen(function*() {
  const storage = yield* SyncStorage
  const log = yield* ChangeLog
  const store = yield* Store
  const clients = yield* Clients
  const mutator = yield* Mutator
  const broker = yield* PokeBroker
  const authorizer = yield* Authorizer.Authorizer

  const authorize = (action: Authorizer.Action, scopes: Iterable<string>, caller: Caller, clientId: string | undefined) =>
    Effect.forEach(
      new Set(scopes),
      (scope) => authorizer.authorize({ action, scope, token: caller.token, headers: caller.headers, clientId }),
      { discard: true }
    )

  const pokeAll = (heads: ReadonlyMap<string, number>) =>
    Effect.forEach(heads, ([scope, cursor]) => broker.poke(scope, cursor), { discard: true })

  /** Mutator + append + (optionally) the ledger, as one savepoint; a failed mutation yields Left. */
  const applyOne = (mutation: Protocol.Mutation, scope: string, record: Effect.Effect<void, StorageError>) =>
    storage.transaction(
      log.lockScopes([scope]).pipe(
        Effect.zipRight(mutator.apply({ name: mutation.name, scope, args: mutation.args })),
        Effect.flatMap((changes) => log.append(scope, changes)),
        Effect.tap(record)
      )
    ).pipe(
      Effect.map(Either.right),
      Effect.catchTag("MutationFailed", (e) => Effect.succeed(Either.left(e)))
    )

  const resultOf = (
    mutation: Protocol.Mutation,
    scope: string,
    outcome: Either.Either<ReadonlyArray<Protocol.Change>, { readonly reason: Protocol.MutationErrorCode; readonly message: string }>,
    heads: Map<string, number>
  ): Effect.Effect<Protocol.MutationResult, StorageError> =>
    Either.match(outcome, {
      onLeft: (e) =>
        Effect.map(log.head(scope), (cursor) => ({
          ...(mutation.id === undefined ? {} : { id: mutation.id }),
          ok: false,
          cursor,
          error: { code: e.reason, message: e.message }
        })),
      onRight: (changes) => {
        const lastChange = changes[changes.length - 1]
        if (lastChange !== undefined) heads.set(scope, lastChange.cursor)
        return Effect.map(
          lastChange === undefined ? log.head(scope) : Effect.succeed(lastChange.cursor),
          (cursor) => ({ ...(mutation.id === undefined ? {} : { id: mutation.id }), ok: true, cursor })
        )
      }
    })

  /**
   * A transaction that lost a lock conflict (a Postgres deadlock or
   * serialization failure, SQLITE_BUSY) was rolled back whole, so it is safe
   * to run again; a few jittered retries spare the client a 503.
   */
  const retryConflicts = <A, E>(self: Effect.Effect<A, E | StorageError>) =>
    Effect.retry(self, {
      schedule: Schedule.exponential("10 millis").pipe(Schedule.jittered, Schedule.intersect(Schedule.recurs(4))),
      while: (e) => typeof e === "object" && e !== null && "_tag" in e && e._tag === "StorageError" && (e as StorageError).reason === "conflict"
    })

  const pushWithClient = (clientId: string, mutations: ReadonlyArray<Protocol.Mutation>) =>
    storage.transaction(Effect.gen(function*() {
      let last = yield* clients.lastId(clientId)
      // Lock every scope's head first, in one global order: writers of the same scopes then queue
      // instead of deadlocking (a mutation's row writes followed by another request's head lock).
      yield* log.lockScopes([...new Set(mutations.map((m) => m.scope ?? Protocol.DEFAULT_SCOPE))].sort())
      const results: Array<Protocol.MutationResult> = []
      const heads = new Map<string, number>()
      for (let i = 0; i < mutations.length; i++) {
        const mutation = mutations[i]
        const id = mutation.id ?? 0
        const scope = mutation.scope ?? Protocol.DEFAULT_SCOPE
        if (id <= last) {
          results.push({ id, ok: true, duplicate: true, cursor: yield* log.head(scope) })
          continue
        }
        if (id > last + 1) {
          const expected = last + 1
          for (const rest of mutations.slice(i)) {
            results.push({
              ...(rest.id === undefined ? {} : { id: rest.id }),
              ok: false,
              cursor: yield* log.head(rest.scope ?? Protocol.DEFAULT_SCOPE),
              error: { code: "out_of_order", message: `expected mutation id ${expected}`, expected }
            })
          }
          break
        }
        const outcome = yield* applyOne(mutation, scope, clients.record(clientId, id, scope)).pipe(
          Effect.withSpan("SyncEngine.mutation", { attributes: { name: mutation.name, id, scope } })
        )
        // A failed mutation rolled back its savepoint; its id is consumed all the same.
        if (Either.isLeft(outcome)) yield* clients.record(clientId, id, scope)
        results.push(yield* resultOf(mutation, scope, outcome, heads))
        last = id
      }
      return { results, heads }
    })).pipe(retryConflicts)

  const pushPlain = (mutations: ReadonlyArray<Protocol.Mutation>) =>
    Effect.gen(function*() {
      const results: Array<Protocol.MutationResult> = []
      for (const mutation of mutations) {
        const scope = mutation.scope ?? Protocol.DEFAULT_SCOPE
        const heads = new Map<string, number>()
        // applyOne is the mutation's own top-level transaction; the result's head is read after it commits
        const outcome = yield* retryConflicts(applyOne(mutation, scope, Effect.void))
        results.push(yield* resultOf(mutation, scope, outcome, heads))
        yield* pokeAll(heads)
      }
      return results
    })

  const countResults = (results: ReadonlyArray<Protocol.MutationResult>) =>
    Effect.zipRight(
      Metric.increment(Metrics.pushRequests),
      Effect.forEach(
        results,
        (r) => Metrics.mutationResult(r.error?.code ?? (r.duplicate === true ? "duplicate" : "ok")),
        { discard: true }
      )
    )

  const push = (request: Protocol.PushRequest, caller: Caller) => {
    const clientId = request.client_id
    const scopes = request.mutations.map((m) => m.scope ?? Protocol.DEFAULT_SCOPE)
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
      yield* authorize("push", scopes, caller, clientId)
      if (clientId === undefined) {
        const plain = yield* pushPlain(request.mutations)
        yield* countResults(plain)
        return { results: plain }
      }
      const { heads, results } = yield* pushWithClient(clientId, request.mutations)
      yield* countResults(results)
      yield* pokeAll(heads)
      return { results }
    }).pipe(
      logStorageError,
      Effect.withSpan("SyncEngine.push", { attributes: { client_id: clientId, mutations: request.mutations.length } }),
      Effect.annotateLogs({ client_id: clientId ?? "" })
    )
  }

  const pull = (request: Protocol.PullRequest, caller: Caller) =>
    Effect.gen(function*() {
      yield* authorize("pull", [request.scope], caller, request.client_id)
      const limit = request.limit ?? Protocol.DEFAULT_PULL_LIMIT
      return yield* storage.readConsistent(Effect.gen(function*() {
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
      Effect.withSpan("SyncEngine.pull", { attributes: { scope: request.scope, cursor: request.cursor } }),
      Effect.annotateLogs({ scope: request.scope, client_id: request.client_id ?? "" })
    )

  const snapshot = (request: Protocol.SnapshotRequest, caller: Caller) =>
    Effect.gen(function*() {
      yield* authorize("snapshot", [request.scope], caller, request.client_id)
      return yield* storage.readConsistent(Effect.gen(function*() {
        const cursor = yield* log.head(request.scope)
        const data = yield* store.snapshot(request.scope)
        yield* Metric.increment(Metrics.snapshots)
        const response: Protocol.SnapshotResponse = { data, cursor }
        if (request.client_id === undefined) return response
        return { ...response, last_mutation_id: yield* clients.lastIdForScope(request.client_id, request.scope) }
      }))
    }).pipe(
      logStorageError,
      Effect.withSpan("SyncEngine.snapshot", { attributes: { scope: request.scope } }),
      Effect.annotateLogs({ scope: request.scope, client_id: request.client_id ?? "" })
    )

  return SyncEngine.of({ push, pull, snapshot })
})

/** The engine over the storage, mutator, broker and authorizer services. */
export const layer: Layer.Layer<
  SyncEngine,
  never,
  SyncStorage | ChangeLog | Store | Clients | Mutator | PokeBroker | Authorizer.Authorizer
> = Layer.effect(SyncEngine, make)
