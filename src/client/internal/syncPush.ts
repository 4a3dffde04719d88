/**
 * The push side of a sync client: one request at a time from the head of
 * the queue (the server processes a client's mutations in id order), the
 * answers folded into the state by the rebase (`syncRebase`), and a request
 * refused as a whole narrowed down by `PushPolicy` so it never wedges the
 * queue (invariants 4, 4b and 5 of `SyncClient`).
 *
 * The worker retries failures with the shared policy (`Backoff`, through
 * `Effect.retry`); the live socket coming back, or a `discard`, cuts a wait
 * short. What the policy learns from failures (a smaller request, a smaller
 * body, the mutation failing alone) is one small object owned here.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Queue from "effect/Queue"
import * as Protocol from "../../protocol/Sync.js"
import type { ClientStorageError } from "../ClientStorage.js"
import type { PendingMutation } from "../LocalView.js"
import * as PushPolicy from "../PushPolicy.js"
import { DiscardError, type Stuck, SyncError, type SyncFailure } from "../SyncClient.js"
import { type SyncTransportError, TransportError } from "../SyncTransport.js"
import * as Rebase from "./syncRebase.js"
import { type SyncState, wake } from "./syncState.js"
import * as Versions from "./syncVersions.js"
import * as Backoff from "../Backoff.js"

/** What one request achieved: nothing to send, answers that moved the queue, or nothing learned (send again later). */
export type PushOutcome = "idle" | "progress" | "retry"

/** The push side, as `syncClient` uses it. */
export interface Push {
  /** Send one request from the head of the queue and fold its answer in. */
  readonly pushOnce: Effect.Effect<PushOutcome, SyncFailure>
  /** Push until every pending mutation has an answer (`Client.push`). */
  readonly push: Effect.Effect<void, SyncFailure>
  /** The background worker: push whenever there is work, retry with backoff. */
  readonly worker: Effect.Effect<never>
  /** `Client.discard`. */
  readonly discard: (id: number) => Effect.Effect<PendingMutation, DiscardError | ClientStorageError>
}

/** What the push policy has learned from failed requests; reset by an answer. */
interface Learned {
  /** The next request carries at most this many mutations (halving finds the one at fault). */
  narrowTo: number
  /** The body budget: `maxPushBytes` until a 413 teaches a smaller one. */
  byteBudget: number
  /** Consecutive failed attempts of one mutation sent alone. */
  failing: { readonly id: number; readonly count: number } | undefined
}

/** The push side of the client whose state is `s`. */
export const make = (s: SyncState): Effect.Effect<Push> =>
  Effect.map(Effect.makeSemaphore(1), (pushMutex) => {
    const { clientId, config } = s
    const learned: Learned = { narrowTo: config.batchSize, byteBudget: config.maxPushBytes, failing: undefined }
    const failures = makeFailures(s, learned)
    const answers = makeAnswers(s)

    const pushOnce: Effect.Effect<PushOutcome, SyncFailure> = pushMutex.withPermits(1)(Effect.gen(function*() {
      const gen0 = s.coordination.generation
      const state = s.current()
      if ((yield* s.status.get).updateNeeded !== undefined) return "idle" as const
      const limits = { count: Math.min(config.batchSize, learned.narrowTo), bytes: learned.byteBudget }
      const mine = Versions.pushable(config.registry, state.pending)
      if (mine.length < state.pending.length && mine.every((m) => state.accepted.has(m.id))) {
        // what is left was made by newer code (another tab reloaded): this tab's code is the one to update
        const newer = state.pending[mine.length]
        return yield* updateNeeded(s, newer === undefined ? undefined : Versions.versionOf(newer), "newer code queued mutations")
      }
      const batch = PushPolicy.nextBatch(mine.filter((m) => !state.accepted.has(m.id)), limits, clientId)
      const head = batch.sent[0]
      if (head === undefined) {
        yield* failures.clearStuck
        return "idle" as const
      }
      if (batch.sent.length === 1 && batch.bytes > config.maxPushBytes) {
        const message = `a push of it alone is ${batch.bytes} bytes, over maxPushBytes (${config.maxPushBytes})`
        return yield* answers.refuse(gen0, head.mutation, "too_large", message)
      }
      const answer = yield* Effect.either(s.transport.push({
        protocol: Protocol.PROTOCOL_VERSION,
        ...(config.registry === undefined ? {} : { app_version: config.registry.version }),
        client_id: clientId,
        mutations: batch.sent.map((x) => x.wire)
      }))
      const results = Either.flatMap(answer, (r): Either.Either<ReadonlyArray<Protocol.MutationResult>, SyncTransportError> =>
        r.results.length === batch.sent.length && r.results.every((x, i) => x.id === batch.sent[i].mutation.id)
          ? Either.right(r.results)
          : Either.left(new TransportError({ reason: "decode", message: "push results do not match the request" })))
      if (Either.isLeft(results)) {
        yield* s.reportFailure("push")(results.left)
        return yield* failures.onRequestFailure(gen0, batch, results.left, answers.refuse)
      }
      learned.narrowTo = config.batchSize
      yield* failures.clearStuck
      yield* s.reportSuccess("lastPushAt")
      return yield* answers.handleResults(gen0, batch.sent, results.right)
    }).pipe(Effect.withSpan("SyncClient.push", { attributes: { client_id: clientId } })))

    const push: Effect.Effect<void, SyncFailure> = Effect.gen(function*() {
      for (let rounds = 0;; rounds++) {
        const outcome = yield* pushOnce
        if (outcome === "idle") {
          const needed = (yield* s.status.get).updateNeeded
          if (needed === undefined) return
          return yield* new SyncError({ reason: "update_needed", message: `the server accepts app version ${needed.min ?? "(newer)"} and up; reload the app` })
        }
        if (outcome === "retry" && rounds > 10) {
          return yield* new SyncError({ reason: "not_settled", message: "the server keeps answering out of order" })
        }
      }
    })

    // a "retry" outcome waits like a failure; each request that moved the queue starts the backoff over
    const worker = Effect.forever(pushOnce.pipe(
      Effect.filterOrFail((outcome) => outcome !== "retry", () => "retry" as const),
      Effect.retry(Backoff.wakeable(config.retry, s.onlinePush)),
      Effect.orDie, // the schedule never ends, so the retry never gives up
      Effect.flatMap((outcome) => outcome === "idle" ? Queue.take(s.pushWake) : Effect.void)
    ))

    return { pushOnce, push, worker, discard: makeDiscard(s, learned, failures.clearStuck) }
  })

/** `Client.discard`: a placeholder takes the mutation's id (a probe is just dropped); a backoff in progress is cut short. */
const makeDiscard = (s: SyncState, learned: Learned, clearStuck: Effect.Effect<void>) =>
  (id: number): Effect.Effect<PendingMutation, DiscardError | ClientStorageError> =>
    Effect.gen(function*() {
      const m = yield* s.locked(Effect.gen(function*() {
        const state = s.current()
        const current = state.pending.find((p) => p.id === id)
        if (current === undefined || PushPolicy.isPlaceholder(current)) {
          return yield* new DiscardError({ reason: "not_pending", message: `no pending mutation ${id}` })
        }
        if (PushPolicy.isProbe(current)) {
          // processed by the server, answer unknown: stop asking (its rows stand)
          yield* s.commit(Rebase.removeQuietly(state, [id]))
          if (learned.failing?.id === id) yield* clearStuck
          return PushPolicy.probed(current)
        }
        if (state.accepted.has(id)) {
          return yield* new DiscardError({ reason: "accepted", message: `mutation ${id} was applied by the server; the next pull confirms it` })
        }
        yield* s.commit(yield* Rebase.toPlaceholders(s.config.registry, state, [current]))
        if (learned.failing?.id === id) yield* clearStuck
        return current
      }))
      // cut a backoff short: what was stuck behind it may go now
      yield* wake(s.onlinePush)
      yield* wake(s.pushWake)
      return m
    }).pipe(Effect.withSpan("SyncClient.discard", { attributes: { id } }))

/**
 * The server refused this client's code as too old: stop pushing (the
 * status says so until the app reloads), keep the queue, tell the app once.
 */
const updateNeeded = (s: SyncState, min: number | undefined, message: string): Effect.Effect<PushOutcome> =>
  Effect.gen(function*() {
    const before = yield* s.status.get
    if (before.updateNeeded !== undefined) return "idle" as const
    yield* s.setStatus((st) => ({ ...st, updateNeeded: { min } }))
    yield* s.publish({ _tag: "UpdateNeeded", min, version: s.config.registry?.version, message })
    yield* Effect.logWarning("SyncClient: the server needs newer app code; pushing stopped until the app reloads", { min, message })
    return "idle" as const
  })

type Refuse = (gen0: number, sent: PendingMutation, code: PushPolicy.RefusalCode, message: string) => Effect.Effect<PushOutcome, ClientStorageError>

/** Failed requests: narrow them down, count the failures of a mutation alone (`stuck`). */
const makeFailures = (s: SyncState, learned: Learned) => {
  const noteFailure = (sent: PendingMutation, error: SyncTransportError) =>
    Effect.suspend(() => {
      const m = PushPolicy.carrierOf(s.current().pending, sent) ?? sent
      const count = learned.failing?.id === m.id ? learned.failing.count + 1 : 1
      learned.failing = { id: m.id, count }
      if (count < s.config.stuckAfter) return Effect.void
      const stuck: Stuck = { mutation: PushPolicy.isProbe(m) ? PushPolicy.probed(m) : m, error, attempts: count }
      return Effect.zipRight(
        s.setStatus((st) => ({ ...st, stuck })),
        count === s.config.stuckAfter ? s.publish({ _tag: "Stuck", ...stuck }) : Effect.void
      )
    })

  const clearStuck = Effect.suspend(() => {
    learned.failing = undefined
    return s.setStatus((st) => st.stuck === undefined ? st : { ...st, stuck: undefined })
  })

  /** A request failed as a whole: narrow it down, drop what the server will never take, or fail (retried later). */
  const onRequestFailure = (
    gen0: number,
    batch: PushPolicy.Batch,
    error: SyncTransportError,
    refuse: Refuse
  ): Effect.Effect<PushOutcome, SyncFailure> =>
    Effect.gen(function*() {
      const failure = PushPolicy.classify(error)
      const alone = batch.sent.length === 1
      const head = batch.sent[0].mutation
      switch (failure._tag) {
        case "UpdateNeeded":
          return yield* updateNeeded(s, failure.min, failure.message)
        case "ServerBehind":
          // a process still on older code: nothing is wrong with the mutations, send them again later
          return yield* error
        case "TooLarge":
          if (alone) return yield* refuse(gen0, head, "too_large", failure.message)
          learned.byteBudget = Math.max(1, Math.floor(batch.bytes / 2))
          return "progress" as const
        case "Refused":
          if (alone) return yield* refuse(gen0, head, failure.code, failure.message)
          learned.narrowTo = Math.ceil(batch.sent.length / 2)
          return "progress" as const
        case "Retry":
          if (alone) yield* noteFailure(head, error)
          else learned.narrowTo = Math.ceil(batch.sent.length / 2)
          return yield* error
      }
    })

  return { clearStuck, onRequestFailure }
}

/** The server's `out_of_order`: what the queue becomes, and which scopes are reset. */
const makeRecover = (s: SyncState) => {
  const resetLater = (scope: string) =>
    Effect.zipRight(Effect.sync(() => s.coordination.needsReset.set(scope, "server_lost_state")), s.requestPull(scope))

  /** `out_of_order` with `expected`: renumber (the server lost this client's state) or resend from `expected` (invariant 5). */
  const recover = (expected: number) =>
    Effect.gen(function*() {
      const state = s.current()
      const first = state.pending[0]
      if (first === undefined) return
      if (expected < first.id) {
        const step = Rebase.renumber(state, expected)
        yield* s.commit({ ...step, events: [] })
        s.coordination.generation++
        yield* Effect.forEach(state.scopes.keys(), resetLater, { discard: true })
        yield* Effect.forEach(step.events, s.publish, { discard: true })
        yield* Effect.logWarning("the server lost this client's state; pending mutations renumbered", {
          expected,
          count: step.state.pending.length
        })
      } else {
        const { lost, step } = Rebase.resendFrom(state, expected)
        yield* s.commit(step)
        yield* Effect.forEach(lost, resetLater, { discard: true })
      }
    })
  return recover
}

/** Answers: results folded into the state, refusals, and the server's `out_of_order`. */
const makeAnswers = (s: SyncState) => {
  const registry = s.config.registry
  const recover = makeRecover(s)

  /**
   * The client drops a mutation the server refuses as a request (found
   * alone): a placeholder takes its id, a `Rejected` event says why. A
   * placeholder refused alone means the scope it borrowed is refused, so
   * its carrier is the one dropped. A probe refused alone will never be
   * answered: it is given up (the server's rows stand).
   */
  const refuse: Refuse = (gen0, sent, code, message) =>
    s.locked(Effect.gen(function*() {
      if (s.coordination.generation !== gen0) return "retry" as const
      const state = s.current()
      if (PushPolicy.isProbe(sent)) {
        yield* s.commit(Rebase.removeQuietly(state, [sent.id]))
        yield* Effect.logWarning("push: no answer for a processed mutation; given up", { id: sent.id, scope: sent.scope, code, message })
        return "progress" as const
      }
      const culprit = PushPolicy.carrierOf(state.pending, sent)
      const current = culprit === undefined ? undefined : state.pending.find((p) => p.id === culprit.id)
      if (current === undefined || PushPolicy.isPlaceholder(current) || state.accepted.has(current.id)) return "progress" as const
      const step = yield* Rebase.toPlaceholders(registry, state, [current])
      yield* s.commit({ ...step, events: [...step.events, { _tag: "Rejected", mutation: current, code, message }] })
      yield* Effect.logWarning("push: the server refuses this mutation's request; dropped", {
        id: current.id,
        name: current.name,
        scope: current.scope,
        code,
        message
      })
      return "progress" as const
    }))

  const handleResults = (gen0: number, sent: ReadonlyArray<PushPolicy.Sent>, results: ReadonlyArray<Protocol.MutationResult>) =>
    s.locked(Effect.gen(function*() {
      if (s.coordination.generation !== gen0) return "retry" as const
      const answered = Rebase.classifyResults(s.current(), sent, results)
      for (const m of answered.appliedPlaceholders) {
        // the original reached the server before it was dropped: its effect comes back with the next pull
        yield* Effect.logWarning("push: a dropped mutation had been applied by the server", { id: m.id, scope: m.scope })
      }
      yield* s.commit({ state: Rebase.accept(s.current(), answered.accepted), write: undefined, events: [] })
      if (answered.settled.length > 0) yield* s.commit(Rebase.removeQuietly(s.current(), answered.settled))
      if (answered.refused.length > 0) yield* s.commit(yield* Rebase.dropRejected(registry, s.current(), answered.refused))
      if (answered.expected !== undefined) yield* recover(answered.expected)
      yield* Effect.forEach(answered.toPull, s.requestPull, { discard: true })
      return answered.progress || answered.expected !== undefined ? "progress" as const : "retry" as const
    }))

  return { refuse, handleResults }
}
