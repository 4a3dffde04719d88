/**
 * The push of the engine (the invariants are stated in `SyncEngine.ts`):
 * with `client_id`, one transaction per attempt made of named steps over a
 * `PushBatch`; without, one transaction per mutation.
 *
 * @internal
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as FiberRef from "effect/FiberRef"
import * as Metric from "effect/Metric"
import * as Metrics from "../../Metrics.js"
import type * as Protocol from "../../protocol/Sync.js"
import { ProtocolError } from "../../protocol/Sync.js"
import type * as Authorizer from "../Authorizer.js"
import type { ChangeInput } from "../ChangeLog.js"
import type * as Clients from "../Clients.js"
import type { MutationFailed } from "../Mutator.js"
import type { StorageError } from "../StorageError.js"
import type { Caller, SyncEngine } from "../SyncEngine.js"
import type { Access } from "./access.js"
import { logStorageError, retryConflicts } from "./errors.js"
import { whenTracing } from "../../internal/spans.js"
import * as GroupCommit from "./groupCommit.js"
import * as PushBatch from "./pushBatch.js"
import type { Deps } from "./syncEngine.js"

/** Internal: an attempt without savepoints met a mutation that failed after writing; it runs again with them. */
class NeedsSavepoints extends Data.TaggedError("NeedsSavepoints") {}

/** How a push applies one mutation: its changes (Right), or how it failed (Left). */
type Apply<E> = (
  mutation: Protocol.Mutation,
  scope: string
) => Effect.Effect<Either.Either<ReadonlyArray<ChangeInput>, MutationFailed>, E | StorageError>

/** No remembered failure (a push without duplicates). */
const noFailures: ReadonlyMap<number, Clients.Failure> = new Map()

/** The counter of each result code, tagged once (a tagged metric is looked up by key each time it is made). */
const resultCounters = new Map<string, Metric.Metric.Counter<number>>()

const counterOf = (code: string): Metric.Metric.Counter<number> => {
  let counter = resultCounters.get(code)
  if (counter === undefined) {
    counter = Metric.tagged(Metrics.mutations, "result", code)
    resultCounters.set(code, counter)
  }
  return counter
}

/**
 * Count a push and its results by code, with no allocation per mutation
 * (called from a fiber step); a duplicate (also of a remembered failure)
 * was counted when first processed.
 */
const countResults = (results: ReadonlyArray<Protocol.MutationResult>): { readonly results: ReadonlyArray<Protocol.MutationResult> } => {
  Metrics.pushRequests.unsafeUpdate(1, [])
  let code = ""
  let run = 0
  for (const r of results) {
    const next = r.duplicate === true ? "duplicate" : r.error?.code ?? "ok"
    if (next !== code && run > 0) counterOf(code).unsafeUpdate(run, [])
    if (next !== code) run = 0
    code = next
    run++
  }
  if (run > 0) counterOf(code).unsafeUpdate(run, [])
  return { results }
}

/** Poke each scope once, with its head. */
export const pokeAll = (broker: Deps["broker"], heads: ReadonlyMap<string, number>): Effect.Effect<void> => {
  if (heads.size === 1) {
    const [[scope, cursor]] = heads
    return broker.poke(scope, cursor)
  }
  return Effect.forEach(heads, ([scope, cursor]) => broker.poke(scope, cursor), { discard: true })
}

/**
 * Process the mutations in order into the batch: a duplicate is answered
 * from the ledger, a gap ends the request with `out_of_order`, the next id
 * goes through `apply` (in a span of its own).
 */
const processAll = <E>(
  batch: PushBatch.Batch,
  mutations: ReadonlyArray<Protocol.Mutation>,
  apply: Apply<E>,
  traced: boolean
): Effect.Effect<void, E | StorageError> => {
  // a plain loop up to the next mutation to apply, which continues the loop after it
  const from = (start: number): Effect.Effect<void, E | StorageError> => {
    for (let i = start; i < mutations.length; i++) {
      const mutation = mutations[i]
      const id = mutation.id ?? 0
      const scope = PushBatch.scopeOf(mutation)
      if (id <= batch.last) {
        PushBatch.addDuplicate(batch, id, scope)
        continue
      }
      if (id > batch.last + 1) {
        PushBatch.addOutOfOrder(batch, mutations.slice(i))
        return Effect.void
      }
      const applied = traced
        ? Effect.withSpan(apply(mutation, scope), "SyncEngine.mutation", {
          attributes: { name: mutation.name, id, scope },
          captureStackTrace: false
        })
        : apply(mutation, scope)
      return Effect.flatMap(applied, (outcome) => {
        PushBatch.addOutcome(batch, id, scope, outcome)
        return from(i + 1)
      })
    }
    return Effect.void
  }
  return Effect.suspend(() => from(0))
}

/** A batch as a push prepared in a group: the group appends its changes, then `finish` resolves its cursors. */
const preparedOf = (batch: PushBatch.Batch): GroupCommit.Prepared<ReadonlyArray<Protocol.MutationResult>> => ({
  pending: batch.pending,
  processed: batch.processed,
  finish: (headBefore) => {
    const results = batch.slots.map((slot) => slot.result(headBefore(slot.scope) + slot.upTo))
    const heads = new Map<string, number>()
    for (const [scope, changes] of batch.pending) heads.set(scope, headBefore(scope) + changes.length)
    return { value: results, heads }
  }
})

/** Append each scope's pending changes (one append per scope, in turn); per scope, its head before and after them. */
const appendPending = (log: Deps["log"], pending: ReadonlyMap<string, ReadonlyArray<ChangeInput>>) =>
  Effect.suspend(() => {
    const base = new Map<string, number>()
    const heads = new Map<string, number>()
    const entries = [...pending]
    const from = (i: number): Effect.Effect<{ readonly base: Map<string, number>; readonly heads: Map<string, number> }, StorageError> =>
      i === entries.length
        ? Effect.succeed({ base, heads })
        : Effect.flatMap(log.append(entries[i][0], entries[i][1]), (appended) => {
          base.set(entries[i][0], appended[0].cursor - 1)
          heads.set(entries[i][0], appended[appended.length - 1].cursor)
          return from(i + 1)
        })
    return from(0)
  })

/** Each slot's result at its cursor; the head of a scope the push did not write is read once (only then a read). */
const resolveResults = (
  log: Deps["log"],
  slots: ReadonlyArray<PushBatch.Slot>,
  base: Map<string, number>
): Effect.Effect<ReadonlyArray<Protocol.MutationResult>, StorageError> => {
  const unread = [...new Set(slots.filter((slot) => !base.has(slot.scope)).map((slot) => slot.scope))]
  const results = () => slots.map((slot) => slot.result((base.get(slot.scope) ?? 0) + slot.upTo))
  if (unread.length === 0) return Effect.sync(results)
  return Effect.map(
    Effect.forEach(unread, (scope) => Effect.map(log.head(scope), (head) => base.set(scope, head)), { discard: true }),
    results
  )
}

/**
 * Each mutation commits on its own; the scopes are poked once each, with
 * their last head, when the request ends (also when a later mutation's
 * storage failed: what committed is poked).
 */
const pushPlain = (deps: Deps, mutations: ReadonlyArray<Protocol.Mutation>, version: number | undefined) => {
  const heads = new Map<string, number>()
  return pushPlainEach(deps, mutations, version, heads).pipe(Effect.ensuring(Effect.suspend(() => pokeAll(deps.broker, heads))))
}

/** `pushPlain`'s mutations one by one, each scope's last head into `heads` (made once: see `Effect.fnUntraced` in bench/README). */
const pushPlainEach = Effect.fnUntraced(function*(
  { log, mutator, storage }: Deps,
  mutations: ReadonlyArray<Protocol.Mutation>,
  version: number | undefined,
  heads: Map<string, number>
) {
  const results: Array<Protocol.MutationResult> = []
  for (const mutation of mutations) {
    const scope = PushBatch.scopeOf(mutation)
    // The mutation's own transaction: its writes and its append, or (failed) nothing.
    const outcome = yield* retryConflicts(storage.transaction(
      log.lockScopes([scope]).pipe(
        Effect.zipRight(mutator.apply({ name: mutation.name, scope, args: mutation.args, version })),
        Effect.flatMap((changes) => log.append(scope, changes))
      )
    ).pipe(
      Effect.map(Either.right),
      Effect.catchTag("MutationFailed", (e) => Effect.succeed(Either.left(e)))
    )).pipe(
      whenTracing("SyncEngine.mutation", { attributes: { name: mutation.name, scope }, captureStackTrace: false })
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
})

/**
 * Why a push made under app `version` is refused as a whole (nothing of it
 * applied): older than the registry's `minVersion`, or newer than its
 * `version` (a process still on older code); undefined when it is accepted.
 */
const versionRefusal = (mutator: Deps["mutator"], version: number | undefined): ProtocolError | undefined => {
  const range = mutator.versions
  if (version === undefined || range === undefined) return undefined
  if (version < range.minVersion) {
    return new ProtocolError({
      code: "version_too_old",
      message: `app version ${version} is no longer accepted: ${range.minVersion} or newer (this server is ${range.version}); reload the app`,
      details: { min: range.minVersion, version: range.version }
    })
  }
  if (version > range.version) {
    return new ProtocolError({
      code: "version_too_new",
      message: `app version ${version} is newer than this server's ${range.version}; retry later`,
      details: { max: range.version }
    })
  }
  return undefined
}

/**
 * The engine's `push` over its services. A builder: its body is the named
 * steps of a push with `client_id` that close over the services (each a
 * few lines), and `push` itself.
 */
export const make = (deps: Deps, { authorize, notOwner }: Access, group: GroupCommit.GroupCommit): SyncEngine["Type"]["push"] => {
  const { clients, log, mutator, storage } = deps

  /** Run the mutator; a failed mutation (unknown, invalid args, rejected) yields Left. */
  const applyMutation = (
    mutation: Protocol.Mutation,
    scope: string,
    version: number | undefined
  ): Effect.Effect<Either.Either<ReadonlyArray<ChangeInput>, MutationFailed>, StorageError> =>
    mutator.apply({ name: mutation.name, scope, args: mutation.args, version }).pipe(
      Effect.map(Either.right),
      Effect.catchTag("MutationFailed", (e) => Effect.succeed(Either.left(e)))
    )

  /** Claim the client id for `owner` (or find it is another's: then nothing is revealed and all rolls back); its last id. */
  const claimClient = (clientId: string, owner: string | undefined): Effect.Effect<number, StorageError | Authorizer.Denied> =>
    Effect.flatMap(clients.claim(clientId, owner), (claim) => lastOf(clientId, owner, claim))

  /** The client's last id from its claim, unless the claim found another owner. */
  const lastOf = (clientId: string, owner: string | undefined, claim: Clients.Claim): Effect.Effect<number, Authorizer.Denied> =>
    claim.owner === owner ? Effect.succeed(claim.last) : notOwner(clientId)


  /**
   * Lock every scope's head in one global order unless the group did
   * (writers of the same scopes then queue instead of deadlocking), claim,
   * read the remembered failures among the duplicates (one read, only when
   * there are duplicates), process the mutations and record the processed
   * ids once: the batch, its changes not yet appended. With `claimed` the
   * group has claimed the client (this is the claim) and records the ids.
   */
  const processed = <E>(
    clientId: string,
    owner: string | undefined,
    mutations: ReadonlyArray<Protocol.Mutation>,
    scopes: ReadonlyArray<string>,
    locked: boolean,
    apply: Apply<E>,
    claimed: Clients.Claim | undefined
  ) =>
    Effect.withFiberRuntime<PushBatch.Batch, E | StorageError | Authorizer.Denied>((fiber) => {
      const traced = fiber.getFiberRef(FiberRef.currentTracerEnabled)
      const fromLast = (last: number, failed: ReadonlyMap<number, Clients.Failure>) => {
        const batch = PushBatch.make(last, failed)
        const processing = processAll(batch, mutations, apply, traced)
        if (claimed !== undefined) return Effect.as(processing, batch)
        // the ids are recorded once processed (`recordAll` reads them when it is called)
        const record = Effect.suspend(() => clients.recordAll(clientId, batch.processed))
        return Effect.as(Effect.zipRight(processing, record), batch)
      }
      const last = claimed === undefined ? claimClient(clientId, owner) : lastOf(clientId, owner, claimed)
      const body = Effect.flatMap(last, (last) => {
        const dupes = PushBatch.duplicateIds(mutations, last)
        return dupes.length === 0
          ? fromLast(last, noFailures)
          : Effect.flatMap(clients.failures(clientId, dupes), (failed) => fromLast(last, failed))
      })
      return locked ? body : Effect.zipRight(log.lockScopes(scopes), body)
    })

  /**
   * One attempt at a push with `client_id`, as one transaction (a savepoint
   * inside a group's): the batch (`processed`), then its changes appended
   * once per scope (cursors in mutation order) and the cursors resolved.
   */
  const attempt = <E>(
    clientId: string,
    owner: string | undefined,
    mutations: ReadonlyArray<Protocol.Mutation>,
    scopes: ReadonlyArray<string>,
    mode: "alone" | "savepoint",
    apply: Apply<E>
  ) =>
    storage.transaction(
      Effect.flatMap(processed(clientId, owner, mutations, scopes, mode !== "alone", apply, undefined), (batch) =>
        Effect.flatMap(
          appendPending(log, batch.pending),
          ({ base, heads }) => Effect.map(resolveResults(log, batch.slots, base), (results) => ({ value: results, heads }))
        ))
    )

  /**
   * A push joined to a group's transaction (no savepoint): its batch, whose
   * changes the group appends with every other push's, once per scope.
   * A mutation that failed after writing cannot be undone here: `Rerun`.
   */
  const prepareJoined = (
    clientId: string,
    owner: string | undefined,
    mutations: ReadonlyArray<Protocol.Mutation>,
    scopes: ReadonlyArray<string>,
    claimed: Clients.Claim | undefined,
    version: number | undefined
  ): Effect.Effect<GroupCommit.Prepared<ReadonlyArray<Protocol.MutationResult>>, GroupCommit.Failure | GroupCommit.Rerun> =>
    processed(clientId, owner, mutations, scopes, true, optimisticApply(version), claimed).pipe(
      Effect.map(preparedOf),
      Effect.catchTag("NeedsSavepoints", () => Effect.fail(new GroupCommit.Rerun()))
    )

  /** Run the mutator without a savepoint: a mutation that failed after writing aborts the attempt (`NeedsSavepoints`). */
  const optimisticApply = (version: number | undefined): Apply<NeedsSavepoints> => (mutation, scope) =>
    Effect.matchEffect(mutator.apply({ name: mutation.name, scope, args: mutation.args, version }), {
      onFailure: (e): Effect.Effect<Either.Either<ReadonlyArray<ChangeInput>, MutationFailed>, NeedsSavepoints | StorageError> =>
        e._tag !== "MutationFailed"
          ? Effect.fail(e)
          : e.wrote !== false
          ? Effect.fail(new NeedsSavepoints())
          : Effect.succeed(Either.left(e)),
      onSuccess: (changes) => Effect.succeed(Either.right(changes))
    })

  const pushWithClient = (
    clientId: string,
    owner: string | undefined,
    mutations: ReadonlyArray<Protocol.Mutation>,
    scopes: ReadonlyArray<string>,
    mode: "alone" | "savepoint",
    version: number | undefined
  ) => {
    // First without savepoints: a mutation that fails before writing anything has nothing to roll
    // back, and most do. One that fails after writing aborts this attempt (rolled back whole) and
    // the push runs again with a savepoint around each mutation.
    const optimistic = attempt(clientId, owner, mutations, scopes, mode, optimisticApply(version))
    // built only when needed (rarely)
    const withSavepoints = () =>
      attempt(clientId, owner, mutations, scopes, mode, (mutation, scope) =>
        storage.transaction(Effect.flatMap(applyMutation(mutation, scope, version), (outcome) =>
          // fail inside the savepoint so that it rolls back; caught outside it
          Either.isLeft(outcome) ? Effect.fail(outcome.left) : Effect.succeed(outcome))).pipe(
            Effect.catchTag("MutationFailed", (e) => Effect.succeed(Either.left(e)))
          ))
    return Effect.catchTag(optimistic, "NeedsSavepoints", withSavepoints)
  }

  /** With tracing on, the push in its `SyncEngine.push` span; off, nothing around it (not even a no-op span). */
  const push = (request: Protocol.PushRequest, caller: Caller) =>
    pushUntraced(request, caller).pipe(whenTracing("SyncEngine.push", {
      attributes: { client_id: request.client_id, mutations: request.mutations.length },
      captureStackTrace: false
    }))

  /**
   * Authorize, then commit with the pushes waiting beside it (their scopes
   * poked once, after the commit), or mutation by mutation without a
   * client id. Logs of the push (a storage failure here, the mutators' in
   * the writer) are annotated with its `client_id`.
   */
  const pushUntraced = (request: Protocol.PushRequest, caller: Caller) => {
    const clientId = request.client_id
    const annotations = { client_id: clientId ?? "" }
    const version = request.app_version
    const refused = versionRefusal(mutator, version)
    if (refused !== undefined) return Effect.fail(refused)
    if (clientId !== undefined) {
      const missing = request.mutations.findIndex((m) => m.id === undefined)
      if (missing >= 0) {
        return Effect.fail(
          new ProtocolError({ code: "invalid_request", message: `mutations[${missing}].id is required when client_id is given` })
        )
      }
    }
    const scopes = request.mutations.length === 1
      ? [PushBatch.scopeOf(request.mutations[0])]
      : request.mutations.map((m) => PushBatch.scopeOf(m))
    const pushed = Effect.flatMap(authorize("push", scopes, caller, clientId), (owner) => {
      if (clientId === undefined) return Effect.map(pushPlain(deps, request.mutations, version), countResults)
      const locking = PushBatch.scopesOf(request.mutations)
      return Effect.map(
        group.submit(locking, request.mutations.length, {
          annotations,
          run: (mode) => pushWithClient(clientId, owner, request.mutations, locking, mode, version),
          clientId,
          owner,
          prepare: (claimed) => prepareJoined(clientId, owner, request.mutations, locking, claimed, version)
        }),
        countResults
      )
    })
    return logStorageError(pushed, annotations)
  }

  return push
}
