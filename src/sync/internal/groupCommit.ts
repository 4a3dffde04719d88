/**
 * Group commit: concurrent pushes with `client_id` share one storage
 * transaction, each in a savepoint of its own.
 *
 * Invariants:
 * - **A lone push commits at once.** A writer woken by a push lets the
 *   event loop finish its current turn (a `setImmediate`, so the requests
 *   already read join), then takes every push waiting (up to `MAX_PUSHES`,
 *   split so no group passes `MAX_MUTATIONS`) and never waits for more: no
 *   timer, so latency at low load does not grow; under load the pushes
 *   that arrive while a group commits form the next one.
 * - **Each push rolls back alone.** A group of several runs first with no
 *   savepoint: each push is processed straight in the group's transaction
 *   (mutators; the claims of the group's clients and their ledger rows are
 *   one statement each for the whole group when no client is in it twice,
 *   else each push's own) and the group appends every push's changes
 *   at once, one append per scope in push order, so the common case costs
 *   no SAVEPOINT round trip and one head bump per scope; if any push cannot finish
 *   cleanly (a mutation that failed after writing, another principal's
 *   client id, a storage error, a defect) the group is rolled back whole and
 *   runs again with every push nested in a savepoint of its own: a push that
 *   fails then leaves no write behind and fails by itself; the others
 *   commit. A group of one is the push's own transaction, as before.
 * - **Nothing is answered before the commit.** Results, then pokes (once per
 *   scope per group, with the scope's head after the commit), come only
 *   after the group's COMMIT; a failed COMMIT fails every push of the group
 *   (nothing of any was applied) with the storage error.
 * - **Lock order.** A group locks the union of its pushes' scopes first, in
 *   one global order, then each push claims its client (`Clients.claim`):
 *   writers of overlapping scopes queue instead of deadlocking. A lock
 *   conflict that still happens (Postgres deadlock detection, SQLITE_BUSY)
 *   rolls back only what it touched: a push that lost one inside its
 *   savepoint runs again in a later group, once the group that won has
 *   committed; a group whose COMMIT lost one runs again whole. Both a few
 *   times, then `503`.
 * - **Writers.** With `SyncStorage.writers` `"one"` (memory, SQLite) one
 *   writer takes every push; with `"many"` (Postgres) there is one writer
 *   per set of scopes (an `RcMap` entry held while a push of that set
 *   waits), so a hot scope's pushes coalesce and other scopes commit in
 *   parallel on other connections.
 * - **The request's fiber waits; the writer works.** An interrupted
 *   request (a client gone) does not interrupt its group: its push still
 *   commits, and the client's retry finds it a duplicate. When the engine's
 *   scope closes, the group in flight is rolled back and every push still
 *   waiting fails with `unavailable` (nothing of it applied).
 *
 * @internal
 */
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberRef from "effect/FiberRef"
import * as HashMap from "effect/HashMap"
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as RcMap from "effect/RcMap"
import type * as Scope from "effect/Scope"
import type * as Tracer from "effect/Tracer"
import type { Change } from "../../protocol/Sync.js"
import type * as Authorizer from "../Authorizer.js"
import type { ChangeInput } from "../ChangeLog.js"
import type * as Clients from "../Clients.js"
import { StorageError } from "../StorageError.js"
import type { SyncStorage } from "../SyncStorage.js"

/** The at most pushes per group: a group of this many answers them all at one commit. */
export const MAX_PUSHES = 128

/** The at most mutations per group (one push of 1,000 mutations, the protocol's maximum, is a group of its own). */
export const MAX_MUTATIONS = 2_000

/** How many times a push (or a group) that lost a lock conflict runs again before it answers `503`. */
const CONFLICT_RETRIES = 4

/** Pushes per committed group, for `mizu_push_group_size`. */
const groupSize = Metric.histogram(
  "mizu_push_group_size",
  MetricBoundaries.exponential({ start: 1, factor: 2, count: 8 }),
  "pushes committed together in one transaction"
)

/** What a push's attempt fails with. */
export type Failure = StorageError | Authorizer.Denied

/** A push prepared in a group (no savepoint) could not finish cleanly: run the group again with one savepoint per push. */
export class Rerun extends Data.TaggedError("Rerun") {}

/** What a committed push yields: its results, and per scope it wrote the head after it. */
export interface Committed<A> {
  readonly value: A
  readonly heads: ReadonlyMap<string, number>
}

/**
 * A push processed straight in a group's transaction, its changes not yet
 * appended: the group appends every push's changes at once per scope, then
 * `finish` gives the push's value and heads from, per scope, the head
 * before its first change (the head, for a scope it did not write).
 */
export interface Prepared<A> {
  readonly pending: ReadonlyMap<string, ReadonlyArray<ChangeInput>>
  /** The mutations it processed, for the group to record (only when the group claimed its client). */
  readonly processed: ReadonlyArray<Clients.Processed>
  readonly finish: (headBefore: (scope: string) => number) => Committed<A>
}

/** A push's two ways to run: whole (alone, or in a savepoint), or prepared in a group with no savepoint. */
export interface Attempt<A> {
  /** Log annotations of the push, added to its request's while the writer runs it. */
  readonly annotations?: Readonly<Record<string, string>> | undefined
  readonly run: (mode: "alone" | "savepoint") => Effect.Effect<Committed<A>, Failure>
  /** The push's client id and the owner it claims it for. */
  readonly clientId: string
  readonly owner: string | undefined
  /**
   * Fails with `Rerun` when it cannot finish cleanly without a savepoint.
   * `claimed`: the group claimed the client already (this is the claim) and
   * records the push's processed ids with the others' (`Prepared.processed`);
   * `undefined`: the push claims and records itself.
   */
  readonly prepare: (claimed: Clients.Claim | undefined) => Effect.Effect<Prepared<A>, Failure | Rerun>
}

/** One push waiting for a writer. */
interface Job<A> {
  /** The push's scopes, sorted and unique. */
  readonly scopes: ReadonlyArray<string>
  readonly mutations: number
  /** The push's attempt (the group has locked its scopes unless `"alone"`). */
  readonly attempt: Attempt<A>
  readonly parent: Option.Option<Tracer.AnySpan>
  readonly tracing: boolean
  /** The request's log annotations with the attempt's. */
  readonly annotations: HashMap.HashMap<string, unknown>
  /** Answer the request (at most once; nothing once it was interrupted). */
  readonly done: (exit: Exit.Exit<A, Failure>) => void
  conflicts: number
}

/** Submit a push's attempt and wait for its group's commit. */
export interface GroupCommit {
  readonly submit: <A>(
    scopes: ReadonlyArray<string>,
    mutations: number,
    attempt: Attempt<A>
  ) => Effect.Effect<A, Failure>
}

export interface Options {
  readonly storage: SyncStorage["Type"]
  /** The ledger: a group of distinct clients claims them and records their processed ids at once. */
  readonly clients: Clients.Clients["Type"]
  /** Lock the heads of these scopes (sorted) for the rest of the transaction. */
  readonly lockScopes: (scopes: ReadonlyArray<string>) => Effect.Effect<void, StorageError>
  /** Append changes to a scope's log (cursors after its head), and read a head: the group's appends. */
  readonly append: (scope: string, changes: ReadonlyArray<ChangeInput>) => Effect.Effect<ReadonlyArray<Change>, StorageError>
  readonly head: (scope: string) => Effect.Effect<number, StorageError>
  /** After a group's commit: each scope it wrote, once, with its head. */
  readonly committed: (heads: ReadonlyMap<string, number>) => Effect.Effect<void>
}

const isConflict = (exit: Exit.Exit<unknown, Failure>): boolean =>
  Exit.isFailure(exit) && exit.cause._tag === "Fail" && exit.cause.error._tag === "StorageError" &&
  exit.cause.error.reason === "conflict"

const shuttingDown = new StorageError({ reason: "unavailable", message: "the server is shutting down" })

/**
 * Resume once the event loop has run the I/O callbacks already due (a
 * `setImmediate`, not a timer: microseconds when idle). Without it a writer
 * woken by the first request of a burst commits that request alone before
 * the others of the same turn are read, and every group is one push.
 */
const endOfTurn: Effect.Effect<void> = Effect.async<void>((resume) => {
  const handle = setImmediate(() => resume(Effect.void))
  return Effect.sync(() => clearImmediate(handle))
})

/** Split the pushes taken into groups of at most `MAX_MUTATIONS` (a bigger push is a group of its own). */
const split = <A>(jobs: ReadonlyArray<Job<A>>): ReadonlyArray<ReadonlyArray<Job<A>>> => {
  const groups: Array<Array<Job<A>>> = []
  let current: Array<Job<A>> = []
  let size = 0
  for (const job of jobs) {
    if (current.length > 0 && size + job.mutations > MAX_MUTATIONS) {
      groups.push(current)
      current = []
      size = 0
    }
    current.push(job)
    size += job.mutations
  }
  if (current.length > 0) groups.push(current)
  return groups
}

/** The sorted union of the groups' scopes. */
const unionOf = <A>(jobs: ReadonlyArray<Job<A>>): ReadonlyArray<string> => {
  if (jobs.length === 1) return jobs[0].scopes
  const all = new Set<string>()
  for (const job of jobs) for (const scope of job.scopes) all.add(scope)
  return [...all].sort()
}

/**
 * The writer takes on a job's tracing setting and log annotations before it
 * runs it: set on the writer's own fiber, which runs one job at a time and
 * sets them again for the next (no `locally` and its restore per job).
 */
const adopt = (job: Job<unknown>): Effect.Effect<void> =>
  Effect.withFiberRuntime((fiber) => {
    const tracing = fiber.getFiberRef(FiberRef.currentTracerEnabled) === job.tracing
      ? Effect.void
      : FiberRef.set(FiberRef.currentTracerEnabled, job.tracing)
    return fiber.getFiberRef(FiberRef.currentLogAnnotations) === job.annotations
      ? tracing
      : Effect.zipRight(tracing, FiberRef.set(FiberRef.currentLogAnnotations, job.annotations))
  })

/** A job's effect with the request's tracing setting, log annotations and parent span. */
const asRequest = <A, E>(job: Job<unknown>, effect: Effect.Effect<A, E>): Effect.Effect<A, E> =>
  Effect.zipRight(adopt(job), job.tracing && Option.isSome(job.parent) ? Effect.withParentSpan(effect, job.parent.value) : effect)

const runJob = <A>(job: Job<A>, mode: "alone" | "savepoint"): Effect.Effect<Committed<A>, Failure> =>
  asRequest(job as Job<unknown>, job.attempt.run(mode))

const prepareJob = <A>(job: Job<A>, claimed: Clients.Claim | undefined): Effect.Effect<Prepared<A>, Failure | Rerun> =>
  asRequest(job as Job<unknown>, job.attempt.prepare(claimed))

/** Whether no two pushes of the group share a client id (then the group claims and records them all at once). */
const distinctClients = <A>(jobs: ReadonlyArray<Job<A>>): boolean => {
  const seen = new Set<string>()
  for (const job of jobs) {
    if (seen.has(job.attempt.clientId)) return false
    seen.add(job.attempt.clientId)
  }
  return true
}

/** The group commit over `options` (see the module header), its writers in the caller's scope. */
export const make = (options: Options): Effect.Effect<GroupCommit, never, Scope.Scope> =>
  Effect.gen(function*() {
    const { append, clients, committed, head, lockScopes, storage } = options

    /** After the commit: the scopes' heads (the last write of each wins), poked once, then every push answered. */
    const settle = <A>(jobs: ReadonlyArray<Job<A>>, exits: ReadonlyArray<Exit.Exit<Committed<A>, Failure>>) => {
      const heads = new Map<string, number>()
      for (const exit of exits) {
        if (Exit.isSuccess(exit)) for (const [scope, head] of exit.value.heads) heads.set(scope, Math.max(heads.get(scope) ?? 0, head))
      }
      const answer = Effect.sync(() => {
        groupSize.unsafeUpdate(jobs.length, [])
        for (let i = 0; i < jobs.length; i++) {
          const exit = exits[i]
          jobs[i].done(Exit.isSuccess(exit) ? Exit.succeed(exit.value.value) : Exit.failCause(exit.cause))
        }
      })
      return heads.size === 0 ? answer : Effect.zipRight(committed(heads), answer)
    }

    /** Conflicts lost: the pushes that may still run again, after a short jittered wait; the others fail. */
    const retryLater = <A>(jobs: ReadonlyArray<Job<A>>, exits: ReadonlyArray<Exit.Exit<unknown, Failure>>) => {
      const again: Array<Job<A>> = []
      for (let i = 0; i < jobs.length; i++) {
        const job = jobs[i]
        if (isConflict(exits[i]) && job.conflicts < CONFLICT_RETRIES) {
          job.conflicts++
          again.push(job)
        }
      }
      return again
    }

    /** One push alone: its own transaction; a lost conflict runs it again, a few times. */
    const runOne = <A>(job: Job<A>): Effect.Effect<void> =>
      Effect.flatMap(Effect.exit(runJob(job, "alone")), (exit) => {
        if (retryLater([job], [exit]).length === 1) {
          return Effect.zipRight(Effect.sleep(Duration.millis(5 + Math.random() * 10 * job.conflicts)), runOne(job))
        }
        return settle([job], [exit])
      })

    /**
     * Several pushes in one transaction, first with no savepoint at all (each
     * push joined): if every push finishes cleanly the group commits as it
     * is; any failure rolls the group back and it runs again with a
     * savepoint per push (see the module header).
     */
    const runGroup = <A>(jobs: ReadonlyArray<Job<A>>): Effect.Effect<void> => {
      if (jobs.length === 1) return runOne(jobs[0])
      const scopes = unionOf(jobs)
      // Distinct clients (the common case): one claim for all, each push processed, one record for all.
      // A client twice in the group: each push claims and records its own, seeing the one before.
      const prepareAll = distinctClients(jobs)
        ? Effect.flatMap(clients.claimAll(jobs.map((job) => ({ clientId: job.attempt.clientId, owner: job.attempt.owner }))), (claims) =>
          Effect.flatMap(
            Effect.forEach(jobs, (job) => {
              const claim = claims.get(job.attempt.clientId)
              return claim === undefined ? Effect.dieMessage(`claimAll returned no claim of ${job.attempt.clientId}`) : prepareJob(job, claim)
            }),
            (prepared) =>
              Effect.as(
                clients.recordEach(prepared.map((p, i) => ({ clientId: jobs[i].attempt.clientId, processed: p.processed }))),
                prepared
              )
          ))
        : Effect.forEach(jobs, (job) => prepareJob(job, undefined))
      const joined = Effect.zipRight(lockScopes(scopes), Effect.flatMap(prepareAll, (prepared) => appendAll(scopes, prepared)))
      return Effect.flatMap(Effect.exit(storage.transaction(joined)), (exit) => {
        if (Exit.isSuccess(exit)) return settle(jobs, exit.value)
        // a conflict lost at the lock or the COMMIT: nothing committed, the whole group runs again
        if (isConflict(exit as Exit.Exit<never, Failure>) && retryLater(jobs, jobs.map(() => exit as Exit.Exit<never, Failure>)).length === jobs.length) {
          return Effect.zipRight(Effect.sleep(Duration.millis(5 + Math.random() * 10)), runGroup(jobs))
        }
        return runWithSavepoints(jobs)
      })
    }

    /**
     * The group's changes appended once per scope, in push order (so cursors
     * are what the pushes one after the other would have had), then each
     * push finished from the head before its own changes.
     */
    const appendAll = <A>(
      scopes: ReadonlyArray<string>,
      prepared: ReadonlyArray<Prepared<A>>
    ): Effect.Effect<ReadonlyArray<Exit.Exit<Committed<A>, Failure>>, StorageError> => {
      // a loop of flatMaps, not Effect.gen: a generator function made per call is slow on V8 (bench/README)
      const before = new Map<string, number>()
      const finishAll = () =>
        prepared.map((p): Exit.Exit<Committed<A>, Failure> => {
          const exit = Exit.succeed(p.finish((scope) => before.get(scope) ?? 0))
          for (const [scope, changes] of p.pending) before.set(scope, (before.get(scope) ?? 0) + changes.length)
          return exit
        })
      const from = (i: number): Effect.Effect<ReadonlyArray<Exit.Exit<Committed<A>, Failure>>, StorageError> => {
        if (i === scopes.length) return Effect.sync(finishAll)
        const scope = scopes[i]
        const changes: Array<ChangeInput> = []
        for (const p of prepared) {
          const mine = p.pending.get(scope)
          if (mine !== undefined) changes.push(...mine)
        }
        return changes.length === 0
          ? Effect.flatMap(head(scope), (cursor) => {
            before.set(scope, cursor)
            return from(i + 1)
          })
          : Effect.flatMap(append(scope, changes), (appended) => {
            before.set(scope, appended[0].cursor - 1)
            return from(i + 1)
          })
      }
      return Effect.suspend(() => from(0))
    }

    /** Several pushes in one transaction, a savepoint each: a push that fails rolls back alone. */
    const runWithSavepoints = <A>(jobs: ReadonlyArray<Job<A>>): Effect.Effect<void> => {
      const unit = Effect.zipRight(
        lockScopes(unionOf(jobs)),
        Effect.forEach(jobs, (job) => Effect.exit(runJob(job, "savepoint")))
      )
      return Effect.flatMap(Effect.exit(storage.transaction(unit)), (outer) => {
        if (Exit.isFailure(outer)) {
          // nothing of the group committed: run it again whole after a lost conflict, else every push fails
          const again = retryLater(jobs, jobs.map(() => outer))
          if (again.length === jobs.length) {
            return Effect.zipRight(Effect.sleep(Duration.millis(5 + Math.random() * 10)), runWithSavepoints(jobs))
          }
          return Effect.sync(() => {
            for (const job of jobs) job.done(Exit.failCause(outer.cause))
          })
        }
        const exits = outer.value
        const again = retryLater(jobs, exits)
        const settled = again.length === 0 ? jobs : jobs.filter((job) => !again.includes(job))
        const settledExits = again.length === 0 ? exits : exits.filter((_, i) => !again.includes(jobs[i]))
        return Effect.zipRight(settle(settled, settledExits), again.length === 0 ? Effect.void : runWithSavepoints(again))
      })
    }

    const fail = <A>(jobs: Iterable<Job<A>>) =>
      Effect.sync(() => {
        for (const job of jobs) job.done(Exit.fail(shuttingDown))
      })

    /**
     * A writer: woken by a push, it lets the event loop finish the turn it
     * is in (the requests already read by the server reach the queue too),
     * takes every waiting push (bounded) and commits them in groups; jobs
     * left at the end fail `unavailable`.
     */
    const writer = (queue: Queue.Queue<Job<unknown>>) =>
      Effect.forever(
        Effect.flatMap(Queue.take(queue), (first) =>
          Effect.zipRight(
            endOfTurn,
            Effect.flatMap(Queue.takeUpTo(queue, MAX_PUSHES - 1), (rest) => {
              const jobs = [first, ...rest]
              const groups = split(jobs)
              const run = groups.length === 1 ? runGroup(groups[0]) : Effect.forEach(groups, runGroup, { discard: true })
              return Effect.onInterrupt(run, () => fail(jobs))
            })
          ))
      )

    /** A queue and its writer, in `scope`; closing it fails what is still queued. */
    const makeLane = Effect.gen(function*() {
      const queue = yield* Effect.acquireRelease(
        Queue.unbounded<Job<unknown>>(),
        (queue) => Effect.flatMap(Queue.takeAll(queue), fail)
      )
      yield* Effect.forkScoped(writer(queue))
      return queue
    })

    const submitTo = <A>(
      queue: Queue.Queue<Job<unknown>>,
      scopes: ReadonlyArray<string>,
      mutations: number,
      attempt: Attempt<A>
    ) =>
      Effect.withFiberRuntime<A, Failure>((fiber) => {
        let annotations = fiber.getFiberRef(FiberRef.currentLogAnnotations)
        const own = attempt.annotations
        if (own !== undefined) for (const key in own) annotations = HashMap.set(annotations, key, own[key])
        const parent = fiber.currentSpan === undefined ? Option.none() : Option.some(fiber.currentSpan)
        const tracing = fiber.getFiberRef(FiberRef.currentTracerEnabled)
        // the request waits on a callback the writer calls (no Deferred: one allocation less per push)
        return Effect.async<A, Failure>((resume) => {
          let answered = false
          const job: Job<A> = {
            scopes,
            mutations,
            attempt,
            parent,
            tracing,
            annotations,
            done: (exit) => {
              if (answered) return
              answered = true
              resume(exit)
            },
            conflicts: 0
          }
          // an unbounded queue: the offer hands the job to a waiting writer, or queues it (false once shut down)
          if (!queue.unsafeOffer(job as Job<unknown>)) job.done(Exit.fail(shuttingDown))
          // interrupted (the client went away): its push still commits, its answer goes nowhere
          return Effect.sync(() => {
            answered = true
          })
        })
      })

    if (storage.writers !== "many") {
      const queue = yield* makeLane
      return { submit: (scopes, mutations, attempt) => submitTo(queue, scopes, mutations, attempt) }
    }
    // one writer per set of scopes, kept while a push of that set waits and a moment after
    const lanes = yield* RcMap.make({ lookup: (_key: string) => makeLane, idleTimeToLive: "5 seconds" })
    return {
      submit: (scopes, mutations, attempt) =>
        Effect.scoped(Effect.flatMap(RcMap.get(lanes, scopes.join("\u0000")), (queue) => submitTo(queue, scopes, mutations, attempt)))
    }
  })
