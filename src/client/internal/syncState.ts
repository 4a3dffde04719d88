/**
 * The one owner of a sync client's mutable state: the rebase state (replaced
 * only by `commit`, under `locked`), the coordination of the workers (the
 * generation, the tracked scopes, the scopes to reset or pull), the status
 * and the event hub.
 *
 * Invariant 7 of `SyncClient` lives here: `commit(step)` writes the step's
 * batch to `ClientStorage` before the state changes and before anyone is
 * told, and its callers hold `locked`, so listeners see each committed
 * batch once, in order.
 *
 * Shared by tabs (a `TabGroup` that is `shared`): `locked` also holds the
 * group's `exclusive`, and before it runs anything it compares the store's
 * revision with the one this tab last saw; another tab's commit in between
 * makes it reload the stored state (`refresh`: the views rebuilt, one
 * `Changes` event with source `tab` for what differs). Every batch commits
 * the next revision and is announced to the other tabs (`Committed`), which
 * refresh then. So each step is computed from the store as it is, whatever
 * tab wrote last, and mutation ids stay unique per client id.
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberSet from "effect/FiberSet"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as SubscriptionRef from "effect/SubscriptionRef"
import * as Protocol from "../../protocol/Sync.js"
import type * as Mutation from "../../sync/Mutation.js"
import * as Backoff from "../Backoff.js"
import type { ClientStorage, ClientStorageError } from "../ClientStorage.js"
import type { LiveClient } from "../LiveClient.js"
import * as LocalView from "../LocalView.js"
import * as PushPolicy from "../PushPolicy.js"
import type { Options, ResetReason, SyncEvent, SyncStatus } from "../SyncClient.js"
import { isOffline, type SyncTransport, type SyncTransportError } from "../SyncTransport.js"
import type { TabGroup } from "../TabGroup.js"
import * as Rebase from "./syncRebase.js"

/** The options, with their defaults and bounds applied. */
export interface Config {
  readonly registry: Mutation.Registry | undefined
  readonly defaultScope: string
  readonly pullLimit: number
  readonly maxPullPages: number
  readonly batchSize: number
  readonly maxPushBytes: number
  readonly stuckAfter: number
  readonly retry: Backoff.Options
  readonly pullInterval: Duration.Duration
}

/** `Options` with defaults, bounded by the protocol's limits. */
export const config = (options: Options<any>): Config => ({
  registry: options.registry,
  defaultScope: options.defaultScope ?? Protocol.DEFAULT_SCOPE,
  pullLimit: Math.max(1, Math.min(Protocol.MAX_PULL_LIMIT, options.pullLimit ?? 500)),
  maxPullPages: Math.max(1, options.maxPullPages ?? 20),
  batchSize: Math.max(1, Math.min(Protocol.MAX_MUTATIONS_PER_PUSH, options.pushBatchSize ?? 100)),
  maxPushBytes: Math.max(1, options.maxPushBytes ?? PushPolicy.DEFAULT_MAX_PUSH_BYTES),
  stuckAfter: Math.max(1, options.stuckAfter ?? 5),
  retry: { initial: options.retryInitial ?? Duration.millis(500), max: options.retryMax ?? Duration.seconds(30) },
  pullInterval: Duration.decode(options.pullInterval ?? Duration.seconds(30))
})

/** How the workers coordinate, beside the rebase state. */
export interface Coordination {
  /** Bumped when the queue is renumbered: answers to requests sent before speak of other ids. */
  generation: number
  /** The scopes this client syncs. */
  readonly tracked: Set<string>
  /** Scopes to reset from a snapshot before they are pulled again, and why. */
  readonly needsReset: Map<string, ResetReason>
  /** Scopes the pull worker has yet to pull. */
  readonly dirty: Set<string>
}

/** The state of one client and what changes it; built once per client by `make`. */
export interface SyncState {
  readonly config: Config
  readonly clientId: string
  readonly transport: SyncTransport["Type"]
  readonly storage: ClientStorage["Type"]
  readonly live: Option.Option<LiveClient["Type"]>
  readonly tabs: TabGroup["Type"]
  /** Reload the stored state if another tab committed since this one last looked (call under `locked`). */
  readonly refresh: Effect.Effect<void, ClientStorageError>
  /** The rebase state now; views are replaced, never changed, so a caller may keep what it read. */
  readonly current: () => Rebase.State
  readonly coordination: Coordination
  /** Run under the one lock every change of state takes. */
  readonly locked: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E | ClientStorageError, R>
  /** Commit a step (its batch first), adopt its state, update the pending count, publish its events. */
  readonly commit: (step: Rebase.Step) => Effect.Effect<void, ClientStorageError>
  readonly publish: (event: SyncEvent) => Effect.Effect<void>
  readonly events: PubSub.PubSub<SyncEvent>
  readonly status: SubscriptionRef.SubscriptionRef<SyncStatus>
  readonly setStatus: (f: (s: SyncStatus) => SyncStatus) => Effect.Effect<void>
  /** A request reached the server: online, no error, the time of `field`. */
  readonly reportSuccess: (field: "lastPullAt" | "lastPushAt") => Effect.Effect<void>
  /** A request failed: the status says so, an `Error` event is published. */
  readonly reportFailure: (during: "push" | "pull" | "snapshot") => (error: SyncTransportError) => Effect.Effect<void>
  /** Ask the pull worker to pull `scope`. */
  readonly requestPull: (scope: string) => Effect.Effect<void>
  /** Work for the push worker. */
  readonly pushWake: Queue.Queue<void>
  /** Work for the pull worker. */
  readonly pullWake: Queue.Queue<void>
  /** Cut the push worker's backoff short (the live socket is back, a discard). */
  readonly onlinePush: Queue.Queue<void>
  /** Cut the pull worker's backoff short. */
  readonly onlinePull: Queue.Queue<void>
  /** The client's background fibers, interrupted with its scope. */
  readonly fibers: FiberSet.FiberSet
}

/** Signal a worker (at most one signal waits). */
export const wake = (q: Queue.Queue<void>): Effect.Effect<void> => Effect.asVoid(Queue.offer(q, undefined))

/** The state of a client that `load` gave as `initial`. */
export const make = (
  config: Config,
  initial: Rebase.State,
  services: {
    readonly transport: SyncTransport["Type"]
    readonly storage: ClientStorage["Type"]
    readonly live: Option.Option<LiveClient["Type"]>
    readonly tabs: TabGroup["Type"]
  },
  /** The store's revision `initial` was loaded at. */
  initialRevision: number
): Effect.Effect<SyncState, never, Scope.Scope> =>
  Effect.gen(function*() {
    let state = initial
    let revision = initialRevision
    const { storage, tabs } = services
    const storedRevision = tabs.shared ? storage.revision : undefined
    const lock = yield* Effect.makeSemaphore(1)
    const events = yield* Effect.acquireRelease(PubSub.unbounded<SyncEvent>(), PubSub.shutdown)
    const status = yield* SubscriptionRef.make<SyncStatus>({
      online: false,
      live: Option.isSome(services.live) ? "connecting" : "none",
      pending: Rebase.visible(state.pending).length,
      lastPullAt: undefined,
      lastPushAt: undefined,
      lastError: undefined,
      stuck: undefined
    })
    const pullWake = yield* Queue.sliding<void>(1)
    const publish = (event: SyncEvent) => Effect.asVoid(PubSub.publish(events, event))
    const setStatus = (f: (s: SyncStatus) => SyncStatus) => SubscriptionRef.update(status, f)
    const setPending = () => {
      const n = Rebase.visible(state.pending).length
      return setStatus((s) => s.pending === n ? s : { ...s, pending: n })
    }
    const commit = (step: Rebase.Step) =>
      Effect.gen(function*() {
        if (step.write !== undefined) {
          if (storedRevision === undefined) yield* storage.commit(step.write)
          else {
            yield* storage.commit({ ...step.write, revision: revision + 1 })
            revision++
            yield* tabs.post({ _tag: "Committed", revision })
          }
        }
        state = step.state
        yield* setPending()
        for (const event of step.events) yield* publish(event)
      })
    const coordination: Coordination = { generation: 0, tracked: new Set(state.scopes.keys()), needsReset: new Map(), dirty: new Set() }
    const pushWake = yield* Queue.sliding<void>(1)
    const refresh: Effect.Effect<void, ClientStorageError> = storedRevision === undefined ? Effect.void : Effect.gen(function*() {
      const now = yield* storedRevision
      if (now === revision) return
      const stored = yield* storage.load
      const fresh = yield* Rebase.fromStored(config.registry, stored, state.clientId)
      const before = state
      const ids = new Set(fresh.pending.map((m) => m.id))
      // what this tab learned from the server and has not stored (answered ids) stays
      state = { ...fresh, accepted: new Set([...before.accepted].filter((id) => ids.has(id))) }
      revision = stored.revision ?? now
      const changes: Array<LocalView.LocalChange> = []
      for (const scope of new Set([...before.scopes.keys(), ...state.scopes.keys()])) {
        changes.push(...LocalView.diff(scope, before.scopes.get(scope)?.view ?? LocalView.emptyRows(), state.scopes.get(scope)?.view ?? LocalView.emptyRows()))
      }
      for (const scope of state.scopes.keys()) {
        if (coordination.tracked.has(scope)) continue
        coordination.tracked.add(scope)
        coordination.dirty.add(scope)
        yield* wake(pullWake)
      }
      yield* setPending()
      if (changes.length > 0) yield* publish({ _tag: "Changes", changes, source: "tab" })
      if (state.pending.some((m) => !before.pending.some((b) => b.id === m.id))) yield* wake(pushWake)
    })
    return {
      config,
      clientId: initial.clientId,
      ...services,
      refresh,
      current: () => state,
      coordination,
      locked: storedRevision === undefined
        ? lock.withPermits(1)
        : (effect) => lock.withPermits(1)(tabs.exclusive(Effect.zipRight(refresh, effect))),
      commit,
      publish,
      events,
      status,
      setStatus,
      reportSuccess: (field) =>
        Effect.flatMap(Effect.clockWith((c) => c.currentTimeMillis), (now) =>
          setStatus((s) => ({ ...s, online: true, lastError: undefined, [field]: now }))),
      reportFailure: (during) => (error) =>
        Effect.zipRight(
          setStatus((s) => ({ ...s, online: isOffline(error) ? false : s.online, lastError: error.message })),
          publish({ _tag: "Error", during, error })
        ),
      requestPull: (scope) => Effect.zipRight(Effect.sync(() => coordination.dirty.add(scope)), wake(pullWake)),
      pushWake,
      pullWake,
      onlinePush: yield* Queue.sliding<void>(1),
      onlinePull: yield* Queue.sliding<void>(1),
      fibers: yield* FiberSet.make()
    }
  })
