/**
 * The client's rebase as pure steps: `state, input → state, write, events`.
 * Nothing here reads a clock, does I/O or keeps state; the caller commits
 * `write` to `ClientStorage` before it adopts `state`, then publishes
 * `events` (invariant 7 of `SyncClient`).
 *
 * Invariants every step keeps (numbers as in `SyncClient`'s header):
 * - (1) `view(scope)` = `confirmed(scope)` with the scope's app mutations of
 *   `pending` replayed on top, in id order; each step recomputes the views it
 *   touches from this definition, so a view never drifts from it.
 *   Placeholders and probes (`PushPolicy`) have no local effect.
 * - (2) `confirmed(scope)` reflects exactly the mutations with id <=
 *   `last_mutation_id` the server sent with it: a step that brings rows also
 *   confirms the queue up to that id (`confirmUpTo`), so no mutation counts
 *   twice or is missing.
 * - `pending` stays in id order and ids never move, except when the server
 *   lost this client's state (`renumber`).
 * - `write` holds exactly what changed of the stored state: `state` is what
 *   `load` gives back after it.
 *
 * Why steps return `Effect`: replaying runs the app's handlers, which are
 * Effects; they never fail and need nothing (`LocalView.replay`).
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Checksum from "../../protocol/Checksum.js"
import type * as Protocol from "../../protocol/Sync.js"
import type * as Mutation from "../../sync/Mutation.js"
import type { Batch, ScopeWrite, StoredState } from "../ClientStorage.js"
import * as LocalView from "../LocalView.js"
import type { LocalChange, PendingMutation, Rows } from "../LocalView.js"
import * as PushPolicy from "../PushPolicy.js"
import type { ResetReason, SyncEvent } from "../SyncClient.js"

/** One scope: the server's rows as of `cursor`, and the view the app reads. */
export interface ScopeState {
  readonly cursor: number
  readonly confirmed: Rows
  readonly view: Rows
}

/** The state the rebase works on; everything but `accepted` and the views is stored. */
export interface State {
  readonly clientId: string
  /** The id the next mutation gets. */
  readonly nextId: number
  /** The queue in id order: the app's mutations, placeholders of dropped ones and probes. */
  readonly pending: ReadonlyArray<PendingMutation>
  readonly scopes: ReadonlyMap<string, ScopeState>
  /** Ids the server answered `ok` for: not sent again, dropped when a pull confirms them (others become probes). */
  readonly accepted: ReadonlySet<number>
}

/** A step's result: the new state, what to commit first (nothing when `undefined`), what to tell after. */
export interface Step {
  readonly state: State
  readonly write: Batch | undefined
  readonly events: ReadonlyArray<SyncEvent>
}

/** A scope never pulled. */
export const emptyScope = (): ScopeState => ({ cursor: 0, confirmed: LocalView.emptyRows(), view: LocalView.emptyRows() })

/** The queue as the app sees it: its own mutations, without placeholders and probes. */
export const visible = (pending: ReadonlyArray<PendingMutation>): ReadonlyArray<PendingMutation> =>
  pending.filter((m) => !PushPolicy.isReserved(m))

/** A scope's view: its confirmed rows with its app mutations of `queue` replayed, in id order (1). */
export const rebuild = (
  registry: Mutation.Registry | undefined,
  scope: string,
  confirmed: Rows,
  queue: ReadonlyArray<PendingMutation>
): Effect.Effect<Rows> => LocalView.rebuild(registry, scope, confirmed, visible(queue))

const withScope = (scopes: ReadonlyMap<string, ScopeState>, scope: string, st: ScopeState): ReadonlyMap<string, ScopeState> =>
  new Map(scopes).set(scope, st)

const changesEvent = (changes: ReadonlyArray<LocalChange>, source: "mutate" | "pull" | "reset" | "rollback" | "repair"): ReadonlyArray<SyncEvent> =>
  changes.length === 0 ? [] : [{ _tag: "Changes", changes, source }]

/** The state `load` gave, views rebuilt; a scope with pending mutations but no rows yet is there too. */
export const fromStored = (
  registry: Mutation.Registry | undefined,
  stored: StoredState,
  clientId: string
): Effect.Effect<State> =>
  Effect.gen(function*() {
    const pending = stored.pending
    const scopes = new Map<string, ScopeState>()
    for (const [scope, s] of Object.entries(stored.scopes)) {
      const confirmed = LocalView.fromSnapshot(s.rows)
      scopes.set(scope, { cursor: s.cursor, confirmed, view: yield* rebuild(registry, scope, confirmed, pending) })
    }
    for (const m of pending) {
      if (!scopes.has(m.scope)) scopes.set(m.scope, { ...emptyScope(), view: yield* rebuild(registry, m.scope, LocalView.emptyRows(), pending) })
    }
    const nextId = Math.max(stored.nextId, (pending[pending.length - 1]?.id ?? 0) + 1)
    return { clientId, nextId, pending, scopes, accepted: new Set() }
  })

/** A scope added with no rows (`track`, or a scope given at start). */
export const addScope = (state: State, scope: string): Step =>
  state.scopes.has(scope)
    ? { state, write: undefined, events: [] }
    : { state: { ...state, scopes: withScope(state.scopes, scope, emptyScope()) }, write: { scopes: [{ scope, cursor: 0 }] }, events: [] }

/** The queue once `scope`'s rows include its mutations up to `lmid` (2), and what that writes. */
export interface Confirmed {
  readonly pending: ReadonlyArray<PendingMutation>
  readonly accepted: ReadonlySet<number>
  readonly pendingDelete: ReadonlyArray<number>
  readonly pendingPut: ReadonlyArray<PendingMutation>
  readonly changed: boolean
}

/**
 * Confirm the queue of `scope` up to `lmid` (2): an accepted mutation leaves
 * it; one whose answer never came becomes a probe, to learn whether it was
 * rejected; a placeholder leaves it (the server processed that id after all).
 */
export const confirmUpTo = (state: State, scope: string, lmid: number | undefined): Confirmed => {
  const pending: Array<PendingMutation> = []
  const pendingDelete: Array<number> = []
  const pendingPut: Array<PendingMutation> = []
  for (const m of state.pending) {
    if (lmid === undefined || m.scope !== scope || m.id > lmid || PushPolicy.isProbe(m)) pending.push(m)
    else if (PushPolicy.isPlaceholder(m) || state.accepted.has(m.id)) pendingDelete.push(m.id)
    else {
      const p = PushPolicy.probe(m)
      pending.push(p)
      pendingPut.push(p)
    }
  }
  const accepted = new Set(state.accepted)
  for (const id of pendingDelete) accepted.delete(id)
  return { pending, accepted, pendingDelete, pendingPut, changed: pendingDelete.length + pendingPut.length > 0 }
}

/** The stored form of the rows of `confirmed` that `touched` names (deleted where they are gone). */
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

/** What one pull gathered: the changes after `from`, up to `cursor`, with the `last_mutation_id` of its last page. */
export interface Pulled {
  readonly scope: string
  readonly from: number
  readonly changes: ReadonlyArray<Protocol.Change>
  readonly cursor: number
  readonly lastMutationId: number | undefined
  /** The server's checksum of the scope at `cursor` (the last page's), when it sent one. */
  readonly checksum?: number | undefined
}

/**
 * The checksums of confirmed rows, by the `Rows` object: a scope's confirmed
 * rows are replaced, never changed, once adopted (every step copies them
 * first), so a checksum computed once stays right; a step that applies
 * changes records the new one from the old and the changes' deltas.
 */
const checksums = new WeakMap<Rows, number>()

/** The checksum (`Checksum`) of a scope's confirmed rows: the server's at the same cursor, unless one of them drifted. */
export const checksumOf = (rows: Rows): number => {
  const known = checksums.get(rows)
  if (known !== undefined) return known
  let sum = 0
  for (const [entity, ids] of rows) for (const [id, data] of ids) sum = Checksum.add(sum, Checksum.rowHash(entity, id, data))
  checksums.set(rows, sum)
  return sum
}

/** Apply `changes` to `rows` (a fresh copy of `before`) in order, recording the checksum `before`'s moves to. */
const applyCounted = (before: Rows, rows: Rows, changes: ReadonlyArray<Protocol.Change>): void => {
  let sum = checksumOf(before)
  for (const c of changes) {
    const old = LocalView.getRow(rows, c.entity, c.id)
    LocalView.applyChanges(rows, [c])
    const now = LocalView.getRow(rows, c.entity, c.id)
    sum = Checksum.add(sum, Checksum.delta(c.entity, c.id, Option.isSome(old) ? old : undefined, Option.isSome(now) ? now : undefined))
  }
  checksums.set(rows, sum)
}

/**
 * Apply a pull: the changes enter `confirmed`, the queue is confirmed up to
 * `lastMutationId` (2), the view is rebuilt (1). `undefined` when the pull
 * does not start at the local cursor (the state moved on since it was sent).
 */
export const applyPull = (registry: Mutation.Registry | undefined, state: State, pulled: Pulled): Effect.Effect<Step | undefined> =>
  Effect.gen(function*() {
    const { changes, cursor, scope } = pulled
    const st = state.scopes.get(scope) ?? emptyScope()
    if (st.cursor !== pulled.from) return undefined
    const queue = confirmUpTo(state, scope, pulled.lastMutationId)
    if (changes.length === 0 && !queue.changed && state.scopes.has(scope)) return { state, write: undefined, events: [] }
    const confirmed = LocalView.copyRows(st.confirmed)
    applyCounted(st.confirmed, confirmed, changes)
    const view = yield* rebuild(registry, scope, confirmed, queue.pending)
    const touched = new Map(changes.map((c) => [`${c.entity}\u0000${c.id}`, [c.entity, c.id] as const]))
    return {
      state: { ...state, pending: queue.pending, accepted: queue.accepted, scopes: withScope(state.scopes, scope, { cursor, confirmed, view }) },
      write: { scopes: [scopeWrite(scope, cursor, confirmed, touched.values())], pendingDelete: queue.pendingDelete, pendingPut: queue.pendingPut },
      events: changesEvent(LocalView.diff(scope, st.view, view), "pull")
    }
  })

/** Replace a scope by a snapshot, keeping pending mutations (replayed on top), confirmed up to its `last_mutation_id`. */
export const applySnapshot = (
  registry: Mutation.Registry | undefined,
  state: State,
  scope: string,
  snapshot: Protocol.SnapshotResponse,
  reason: ResetReason
): Effect.Effect<Step> =>
  Effect.gen(function*() {
    const st = state.scopes.get(scope) ?? emptyScope()
    const confirmed = LocalView.fromSnapshot(snapshot.data)
    const queue = confirmUpTo(state, scope, snapshot.last_mutation_id)
    const view = yield* rebuild(registry, scope, confirmed, queue.pending)
    const put: Array<readonly [string, string, unknown]> = []
    for (const [entity, ids] of confirmed) for (const [id, data] of ids) put.push([entity, id, data])
    return {
      state: {
        ...state,
        pending: queue.pending,
        accepted: queue.accepted,
        scopes: withScope(state.scopes, scope, { cursor: snapshot.cursor, confirmed, view })
      },
      write: { scopes: [{ scope, cursor: snapshot.cursor, reset: true, put }], pendingDelete: queue.pendingDelete, pendingPut: queue.pendingPut },
      events: [{ _tag: "Reset", scope, reason }, ...changesEvent(LocalView.diff(scope, st.view, view), "reset")]
    }
  })

/** The server's rows of one key range, as a repair fetched them. */
export interface RepairedRange {
  readonly from?: Checksum.Key | undefined
  readonly to?: Checksum.Key | undefined
  readonly rows: ReadonlyArray<Protocol.Row>
}

/**
 * Repair a scope whose checksum differs from the server's at the same
 * cursor: in each range, the confirmed rows become the server's (rows the
 * server does not have are removed); the rest of the scope is untouched, the
 * cursor and the queue too. `undefined` when the scope is no longer at `cursor`.
 */
export const applyRepair = (
  registry: Mutation.Registry | undefined,
  state: State,
  scope: string,
  cursor: number,
  ranges: ReadonlyArray<RepairedRange>
): Effect.Effect<Step | undefined> =>
  Effect.gen(function*() {
    const st = state.scopes.get(scope)
    if (st === undefined || st.cursor !== cursor) return undefined
    const confirmed = LocalView.copyRows(st.confirmed)
    const touched = new Map<string, readonly [string, string]>()
    const changes: Array<Protocol.Change> = []
    for (const range of ranges) {
      const server = new Set(range.rows.map((row) => `${row.entity}\u0000${row.id}`))
      for (const row of Checksum.rowsIn(st.confirmed, range.from, range.to)) {
        if (!server.has(`${row.entity}\u0000${row.id}`)) {
          changes.push({ cursor: Math.max(1, cursor), scope, entity: row.entity, id: row.id, op: "delete", ts: "" })
        }
      }
      for (const row of range.rows) {
        changes.push({ cursor: Math.max(1, cursor), scope, entity: row.entity, id: row.id, op: "update", data: row.data, ts: "" })
      }
    }
    for (const c of changes) touched.set(`${c.entity}\u0000${c.id}`, [c.entity, c.id])
    applyCounted(st.confirmed, confirmed, changes)
    const view = yield* rebuild(registry, scope, confirmed, state.pending)
    return {
      state: { ...state, scopes: withScope(state.scopes, scope, { cursor, confirmed, view }) },
      write: { scopes: [scopeWrite(scope, cursor, confirmed, touched.values())] },
      events: [
        { _tag: "Repaired", scope, ranges: ranges.length, rows: ranges.reduce((n, r) => n + r.rows.length, 0) },
        ...changesEvent(LocalView.diff(scope, st.view, view), "repair")
      ]
    }
  })

/** The result of running a new mutation's handler over its scope's view. */
export type Applied = Either.Either<Step, LocalView.LocalRejection>

/**
 * Queue a new mutation `m` (its id is `state.nextId`): with a definition, its
 * handler runs over the view first (a rejection queues nothing); the scope is
 * added if new.
 */
export const applyMutate = <A, I>(
  registry: Mutation.Registry | undefined,
  state: State,
  m: PendingMutation,
  local: { readonly definition: Mutation.Mutation<string, A, I>; readonly args: A } | undefined
): Effect.Effect<Applied> =>
  Effect.gen(function*() {
    const isNew = !state.scopes.has(m.scope)
    const st = state.scopes.get(m.scope) ?? emptyScope()
    let view = st.view
    let changes: ReadonlyArray<LocalChange> = []
    if (local !== undefined) {
      const outcome = yield* LocalView.runHandler(registry, local.definition, m.scope, local.args, st.view)
      if (Either.isLeft(outcome)) return Either.left(outcome.left)
      changes = LocalView.writesToChanges(m.scope, st.view, outcome.right)
      view = LocalView.copyRows(st.view)
      LocalView.applyWrites(view, outcome.right)
    }
    return Either.right({
      state: { ...state, nextId: m.id + 1, pending: [...state.pending, m], scopes: withScope(state.scopes, m.scope, { ...st, view }) },
      write: { meta: { clientId: state.clientId, nextId: m.id + 1 }, pendingPut: [m], ...(isNew ? { scopes: [{ scope: m.scope, cursor: 0 }] } : {}) },
      events: changesEvent(changes, "mutate")
    })
  })

/**
 * Put `next` in place of the queue (the same ids, some dropped or turned
 * into placeholders; `changed` are the mutations that lost their effect):
 * rebuild the views of their scopes (1), commit `write`, and tell what the
 * user sees change (`rollback`).
 */
const replaceQueue = (
  registry: Mutation.Registry | undefined,
  state: State,
  next: ReadonlyArray<PendingMutation>,
  changed: ReadonlyArray<PendingMutation>,
  write: Batch
): Effect.Effect<Step> =>
  Effect.gen(function*() {
    const scopes = new Map(state.scopes)
    const changes: Array<LocalChange> = []
    for (const scope of new Set(changed.map((m) => m.scope))) {
      const st = state.scopes.get(scope) ?? emptyScope()
      const view = yield* rebuild(registry, scope, st.confirmed, next)
      scopes.set(scope, { ...st, view })
      changes.push(...LocalView.diff(scope, st.view, view))
    }
    return { state: { ...state, pending: next, scopes }, write, events: changesEvent(changes, "rollback") }
  })

/**
 * Drop mutations the server refused (their ids are consumed): app mutations
 * lose their effect, probes are answered; each is reported as `Rejected`, as
 * the app queued it.
 */
export const dropRejected = (
  registry: Mutation.Registry | undefined,
  state: State,
  refused: ReadonlyArray<readonly [PendingMutation, Protocol.MutationError]>
): Effect.Effect<Step> =>
  Effect.map(
    replaceQueue(
      registry,
      state,
      state.pending.filter((m) => !refused.some(([r]) => r.id === m.id)), // a handful per answer
      refused.map(([m]) => m).filter((m) => !PushPolicy.isReserved(m)),
      { pendingDelete: refused.map(([m]) => m.id) }
    ),
    (step) => {
      const accepted = new Set(step.state.accepted)
      for (const [m] of refused) accepted.delete(m.id)
      const rejected = refused.map(([m, error]): SyncEvent => ({
        _tag: "Rejected",
        mutation: PushPolicy.isProbe(m) ? PushPolicy.probed(m) : m,
        code: error.code === "out_of_order" ? "rejected" : error.code,
        message: error.message
      }))
      return { state: { ...step.state, accepted }, write: step.write, events: [...step.events, ...rejected] }
    }
  )

/** Turn mutations the server never consumed into placeholders (`PushPolicy`), rolling their effects back. */
export const toPlaceholders = (
  registry: Mutation.Registry | undefined,
  state: State,
  ms: ReadonlyArray<PendingMutation>
): Effect.Effect<Step> => {
  const ids = new Set(ms.map((m) => m.id))
  return replaceQueue(
    registry,
    state,
    state.pending.map((m) => ids.has(m.id) ? PushPolicy.placeholder(m) : m),
    ms,
    { pendingPut: ms.map(PushPolicy.placeholder) }
  )
}

/** Remove entries from the queue with no effect on any view (answered placeholders and probes). */
export const removeQuietly = (state: State, ids: ReadonlyArray<number>): Step => {
  const drop = new Set(ids)
  return { state: { ...state, pending: state.pending.filter((m) => !drop.has(m.id)) }, write: { pendingDelete: [...ids] }, events: [] }
}

/** What a push's answers mean for the queue (`classifyResults`). */
export interface Answered {
  /** Ids answered `ok` for the first time: accepted, not sent again. */
  readonly accepted: ReadonlyArray<number>
  /** Placeholders and probes the server has answered: done with. */
  readonly settled: ReadonlyArray<number>
  /** Placeholders whose original the server had applied after all (their effect comes back with a pull). */
  readonly appliedPlaceholders: ReadonlyArray<PendingMutation>
  readonly refused: ReadonlyArray<readonly [PendingMutation, Protocol.MutationError]>
  /** Scopes to pull: their rows changed on the server. */
  readonly toPull: ReadonlySet<string>
  /** The `expected` of an `out_of_order` answer, where the answers stop. */
  readonly expected: number | undefined
  /** Whether any answer before `out_of_order` came. */
  readonly progress: boolean
}

/**
 * Read a push's answers, in order, up to the first `out_of_order` (the
 * server processes a client's mutations in id order, so nothing after it was
 * processed). An answer for an id no longer queued was answered before.
 */
export const classifyResults = (
  state: State,
  sent: ReadonlyArray<PushPolicy.Sent>,
  results: ReadonlyArray<Protocol.MutationResult>
): Answered => {
  const byId = new Map(state.pending.map((m) => [m.id, m] as const))
  const accepted: Array<number> = []
  const settled: Array<number> = []
  const appliedPlaceholders: Array<PendingMutation> = []
  const refused: Array<readonly [PendingMutation, Protocol.MutationError]> = []
  const toPull = new Set<string>()
  let expected: number | undefined
  let progress = false
  for (let i = 0; i < sent.length; i++) {
    const m = sent[i].mutation
    const r = results[i]
    if (r.error?.code === "out_of_order") {
      expected = r.error.expected ?? state.pending[0]?.id
      break
    }
    progress = true
    const current = byId.get(m.id)
    if (current === undefined) continue
    if (PushPolicy.isPlaceholder(current)) {
      settled.push(m.id)
      if (r.ok) {
        toPull.add(current.scope)
        appliedPlaceholders.push(current)
      }
    } else if (r.ok) {
      // a probe answered `ok`: its effect is in the rows already pulled
      if (PushPolicy.isProbe(current)) settled.push(m.id)
      else accepted.push(m.id)
      toPull.add(m.scope)
    } else {
      refused.push([current, r.error ?? { code: "rejected", message: "refused" }])
    }
  }
  return { accepted, settled, appliedPlaceholders, refused, toPull, expected, progress }
}

/** Mark ids accepted (in memory only: an accepted mutation is still stored as pending until a pull confirms it). */
export const accept = (state: State, ids: ReadonlyArray<number>): State =>
  ids.length === 0 ? state : { ...state, accepted: new Set([...state.accepted, ...ids]) }

/**
 * The server lost every id of this client (`out_of_order` with `expected`
 * below the first pending id): the app's mutations are numbered again from
 * `expected` (placeholders have nothing left to hold), nothing is accepted.
 * The caller resets every scope from a snapshot.
 */
export const renumber = (state: State, expected: number): Step => {
  const renumbered = visible(state.pending).map((m, i) => ({ ...m, id: expected + i }))
  const nextId = expected + renumbered.length
  return {
    state: { ...state, pending: renumbered, nextId, accepted: new Set() },
    write: { meta: { clientId: state.clientId, nextId }, pendingReplace: renumbered },
    events: [{ _tag: "Renumbered", from: expected, count: renumbered.length }]
  }
}

/**
 * The server is behind what it acknowledged (`out_of_order` at `expected`
 * within the queue): what it accepted from `expected` on goes again, and
 * probes from there go again as they were queued (the server lost them, with
 * the rows they wrote). `lost` are the scopes of those probes: the caller
 * resets them from a snapshot, so their effect does not count twice.
 */
export const resendFrom = (state: State, expected: number): { readonly step: Step; readonly lost: ReadonlySet<string> } => {
  const accepted = new Set([...state.accepted].filter((id) => id < expected))
  const probes = state.pending.filter((m) => PushPolicy.isProbe(m) && m.id >= expected)
  if (probes.length === 0) return { step: { state: { ...state, accepted }, write: undefined, events: [] }, lost: new Set() }
  const ids = new Set(probes.map((m) => m.id))
  return {
    step: {
      state: { ...state, accepted, pending: state.pending.map((m) => ids.has(m.id) ? PushPolicy.probed(m) : m) },
      write: { pendingPut: probes.map(PushPolicy.probed) },
      events: []
    },
    lost: new Set(probes.map((m) => m.scope))
  }
}
