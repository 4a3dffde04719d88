/**
 * Group commit, differentially: many concurrent pushes through the real
 * engine (in process on memory, SQLite on a file and Postgres; over HTTP on
 * SQLite) are compared with the same pushes applied one by one, on a fresh
 * memory engine, in an order consistent with the commit order the run showed.
 *
 * The workload (seeded: the seed is in each test's name, `GC_SEED=n` explores
 * another): 16 clients, each sending its pushes one after the other as a real
 * client does, all clients at once; a mix of fresh mutations, retried pushes
 * (the same body again), an old id mixed into a new push, an id repeated
 * inside a request, gaps (`out_of_order`, at the start or in the middle),
 * unknown mutations, invalid args, mutators that reject before writing and
 * mutators that write and then reject (the savepoint path), pushes over two or
 * three scopes, four scopes shared by every client with a few keys each, so
 * that what a mutation does (and whether it is rejected) depends on what other
 * clients committed before it.
 *
 * The commit order is derived from the results alone: per scope, a push that
 * wrote there is placed by its last cursor (the head after it), a push that
 * did not by the head it saw (after every writer whose head is at most that,
 * before every other); per client, its pushes in the order it sent them; then
 * a topological sort (a cycle is a failure: no serial order explains the
 * results). Replayed in that order, every push's results, each scope's log
 * (cursor, entity, id, op, data), its snapshot and each client's
 * `last_mutation_id` per scope must be identical.
 *
 * Why this cannot pass by accident:
 * - every written row names the mutation that wrote it (`by`) and carries a
 *   count that depends on the writes before it, so any other order of two
 *   writers of a scope changes the log;
 * - the run must show real concurrency (pushes in flight together), writers
 *   of several clients interleaved in every scope, and every case of the mix
 *   at least a few times (the coverage assertions);
 * - the same pushes replayed in a wrong order that respects each client's own
 *   order (client after client) must NOT match: the comparison does see
 *   order;
 * - the replay is on an engine of its own, fresh; pokes are checked against
 *   the heads the results report.
 */
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import * as NodeUtil from "node:util"
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { Authorizer, Entity, LivePubSub, Metrics, Mutation, Protocol, SqlStorage, SyncEngine, SyncStorage } from "mizu-sync-live"
import { layerEngine, layerMemoryEngine, PokeRecorder, type RecordedPoke } from "mizu-sync-live/testing"
import * as PushGroups from "./fixtures/pushGroups.js"
import { describePostgres } from "./support/Postgres.js"
import { BaseUrl, layerServer, post } from "./support/TestServer.js"

const SEED = Number(process.env["GC_SEED"] ?? 20_261_202)
const CLIENTS = 16
const PUSHES_PER_CLIENT = 24
const SCOPE_COUNT = 4
const KEYS = ["k0", "k1", "k2", "k3", "k4", "k5"] as const

// ---------------------------------------------------------------------------
// The test registry: every success writes at least one change; outcomes and
// data depend on what was committed before.
// ---------------------------------------------------------------------------

const Cell = Schema.Struct({ key: Schema.String, n: Schema.Int, by: Schema.String })
const CellEntity = Entity.make("cell", Cell)
const Key = Schema.String.pipe(Schema.minLength(1), Schema.maxLength(16))
const By = Schema.String.pipe(Schema.minLength(1))

/** Create a cell; rejected (before writing) when it exists. */
const put = Mutation.make("gc/put", {
  args: Schema.Struct({ key: Key, by: By }),
  handler: ({ by, key }, tx) =>
    Effect.gen(function*() {
      if (Option.isSome(yield* tx.get(CellEntity, key))) return yield* Mutation.reject(`${key} exists`)
      yield* tx.put(CellEntity, key, { key, n: 1, by })
    })
})

/** Count a cell up; rejected (before writing) when it is missing. */
const bump = Mutation.make("gc/bump", {
  args: Schema.Struct({ key: Key, by: By }),
  handler: ({ by, key }, tx) =>
    Effect.gen(function*() {
      const cell = yield* tx.get(CellEntity, key)
      if (Option.isNone(cell)) return yield* Mutation.reject(`${key} missing`)
      yield* tx.put(CellEntity, key, { key, n: cell.value.n + 1, by })
    })
})

/** Count a cell up, then reject AFTER writing when the new count is even: the savepoint path, depending on state. */
const bumpOdd = Mutation.make("gc/bump-odd", {
  args: Schema.Struct({ key: Key, by: By }),
  handler: ({ by, key }, tx) =>
    Effect.gen(function*() {
      const cell = yield* tx.get(CellEntity, key)
      if (Option.isNone(cell)) return yield* Mutation.reject(`${key} missing`)
      const n = cell.value.n + 1
      yield* tx.put(CellEntity, key, { key, n, by })
      if (n % 2 === 0) return yield* Mutation.reject(`${key} would be ${n}`)
    })
})

/** Delete a cell; rejected when it is missing. */
const drop = Mutation.make("gc/drop", {
  args: Schema.Struct({ key: Key }),
  handler: ({ key }, tx) =>
    Effect.gen(function*() {
      if (Option.isNone(yield* tx.get(CellEntity, key))) return yield* Mutation.reject(`${key} missing`)
      yield* tx.delete(CellEntity, key)
    })
})

/** Writes, then always rejects: nothing of it may remain. */
const half = Mutation.make("gc/half", {
  args: Schema.Struct({ key: Key, by: By }),
  handler: ({ by, key }, tx) =>
    Effect.zipRight(tx.put(CellEntity, key, { key, n: -1, by }), Mutation.reject("half written, then refused"))
})

/** Several changes in one mutation: each key counted up (created at 1). */
const many = Mutation.make("gc/many", {
  args: Schema.Struct({ keys: Schema.Array(Key).pipe(Schema.minItems(1)), by: By }),
  handler: ({ by, keys }, tx) =>
    Effect.forEach(keys, (key) =>
      Effect.flatMap(tx.get(CellEntity, key), (cell) =>
        tx.put(CellEntity, key, { key, n: Option.match(cell, { onNone: () => 1, onSome: (c) => c.n + 1 }), by })), {
      discard: true
    })
})

const registry = Mutation.registry({ entities: [CellEntity], mutations: [put, bump, bumpOdd, drop, half, many] })

// ---------------------------------------------------------------------------
// The workload: per client, its requests, computed up front (what the server
// does with a client's ids depends only on that client's own history).
// ---------------------------------------------------------------------------

/** mulberry32: a small seeded generator, the same sequence on every run of a seed. */
const makeRandom = (seed: number) => {
  let a = seed >>> 0
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const int = (n: number): number => Math.floor(next() * n)
  const pick = <A>(xs: ReadonlyArray<A>): A => xs[int(xs.length)]
  return { next, int, pick }
}
type Random = ReturnType<typeof makeRandom>

interface Plan {
  readonly client: string
  readonly requests: ReadonlyArray<Protocol.PushRequest>
}

/** The server's rule for a client's ids: skip duplicates, stop at a gap; the client's last id after the request. */
const lastAfter = (last: number, mutations: ReadonlyArray<Protocol.Mutation>): number => {
  for (const m of mutations) {
    const id = m.id ?? 0
    if (id <= last) continue
    if (id > last + 1) break
    last = id
  }
  return last
}

const mutationOf = (rng: Random, id: number, scope: string, by: string): Protocol.Mutation => {
  const key = rng.pick(KEYS)
  const roll = rng.next()
  if (roll < 0.24) return { id, name: "gc/put", scope, args: { key, by } }
  if (roll < 0.44) return { id, name: "gc/bump", scope, args: { key, by } }
  if (roll < 0.56) return { id, name: "gc/bump-odd", scope, args: { key, by } }
  if (roll < 0.64) return { id, name: "gc/drop", scope, args: { key } }
  if (roll < 0.71) return { id, name: "gc/half", scope, args: { key, by } }
  if (roll < 0.82) {
    const keys = [...new Set([key, rng.pick(KEYS), rng.pick(KEYS)].slice(0, 1 + rng.int(3)))]
    return { id, name: "gc/many", scope, args: { keys, by } }
  }
  if (roll < 0.89) return { id, name: "gc/nope", scope, args: { key } }
  // invalid args: a number where the schema wants a string, or a missing field
  return rng.next() < 0.5
    ? { id, name: "gc/bump", scope, args: { key: 42, by } }
    : { id, name: "gc/put", scope, args: { key } }
}

const makePlans = (seed: number, scopes: ReadonlyArray<string>, run: string): ReadonlyArray<Plan> =>
  Array.from({ length: CLIENTS }, (_, c) => {
    const rng = makeRandom(seed * 31 + c)
    const client = `gc-${run}-c${c}`
    const requests: Array<Protocol.PushRequest> = []
    let last = 0
    for (let k = 0; k < PUSHES_PER_CLIENT; k++) {
      const previous = requests[requests.length - 1]
      const roll = rng.next()
      let request: Protocol.PushRequest
      if (previous !== undefined && roll < 0.1) {
        // a retry: the same body again (its reply was "lost")
        request = previous
      } else if (roll < 0.17) {
        // a gap at the start: nothing applied, every mutation out_of_order
        const start = last + 2 + rng.int(3)
        const scope = rng.pick(scopes)
        request = { client_id: client, mutations: [0, 1].slice(0, 1 + rng.int(2)).map((i) => mutationOf(rng, start + i, scope, `${client}#${start + i}`)) }
      } else {
        const home = rng.pick(scopes)
        const multi = rng.next() < 0.3
        // a push over two or three scopes, or one
        const others = scopes.filter((s) => s !== home)
        const start = rng.int(others.length)
        const spread = [home, ...Array.from({ length: multi ? 1 + rng.int(2) : 0 }, (_, j) => others[(start + j) % others.length])]
        const n = Math.max(spread.length, 1 + rng.int(4))
        const mutations: Array<Protocol.Mutation> = []
        let id = last + 1
        for (let i = 0; i < n; i++) {
          const scope = i < spread.length ? spread[i] : rng.pick(spread)
          mutations.push(mutationOf(rng, id, scope, `${client}#${id}`))
          id++
        }
        const twist = rng.next()
        if (twist < 0.1 && last > 0) {
          // an old id first: a duplicate (answered ok, or its remembered failure)
          const old = 1 + rng.int(last)
          mutations.unshift(mutationOf(rng, old, rng.pick(spread), `${client}#${old}`))
        } else if (twist < 0.2) {
          // an id repeated inside the request: the repeat is a duplicate of what it just did
          const j = rng.int(mutations.length)
          mutations.splice(j + 1, 0, { ...mutations[j], args: { key: rng.pick(KEYS), by: `${client}#again` } })
        } else if (twist < 0.28 && mutations.length > 1) {
          // a gap in the middle: the first part applies, the rest is out_of_order
          const j = 1 + rng.int(mutations.length - 1)
          for (let i = j; i < mutations.length; i++) mutations[i] = { ...mutations[i], id: (mutations[i].id ?? 0) + 1 }
        }
        request = { client_id: client, mutations }
      }
      requests.push(request)
      last = lastAfter(last, request.mutations)
    }
    return { client, requests }
  })

// ---------------------------------------------------------------------------
// Running the workload, and reading the state it left
// ---------------------------------------------------------------------------

/** The sync API, in process or over HTTP: every answer as plain JSON (what the wire would carry). */
interface Api {
  readonly push: (request: Protocol.PushRequest) => Effect.Effect<unknown>
  readonly pull: (request: Protocol.PullRequest) => Effect.Effect<Protocol.PullResponse>
  readonly snapshot: (request: Protocol.SnapshotRequest) => Effect.Effect<Protocol.SnapshotResponse>
}

/** Plain JSON: what a response is on the wire (no `undefined` fields). */
const plain = (value: unknown): unknown => JSON.parse(JSON.stringify(value))

const engineApi = (engine: SyncEngine.SyncEngine["Type"]): Api => ({
  push: (request) => Effect.map(Effect.orDie(engine.push(request, SyncEngine.anonymous)), plain),
  pull: (request) => Effect.orDie(engine.pull(request, SyncEngine.anonymous)),
  snapshot: (request) => Effect.orDie(engine.snapshot(request, SyncEngine.anonymous))
})

const httpCall = (url: string, body: unknown) =>
  Effect.flatMap(post(url, JSON.stringify(body)), (res) =>
    res.status === 200 ? Effect.succeed(res.json) : Effect.dieMessage(`${url} answered ${res.status}: ${res.text}`))

const httpApi = (base: string): Api => ({
  push: (request) => httpCall(`${base}/_sync/push`, request),
  pull: (request) => Effect.map(httpCall(`${base}/_sync/pull`, request), Schema.decodeUnknownSync(Protocol.PullResponse)),
  snapshot: (request) => Effect.map(httpCall(`${base}/_sync/snapshot`, request), Schema.decodeUnknownSync(Protocol.SnapshotResponse))
})

/** One push of the run: which client, its place in that client's sequence, what was sent and answered. */
interface Sent {
  readonly client: number
  readonly seq: number
  readonly request: Protocol.PushRequest
  readonly results: ReadonlyArray<Protocol.MutationResult>
}

const decodeResults = (json: unknown): ReadonlyArray<Protocol.MutationResult> =>
  Schema.decodeUnknownSync(Protocol.PushResponse)(json).results

/** Every client at once, each sending its requests one after the other; the most pushes seen in flight together. */
const runConcurrently = (api: Api, plans: ReadonlyArray<Plan>) =>
  Effect.gen(function*() {
    let inFlight = 0
    let maxInFlight = 0
    const sent = yield* Effect.forEach(plans, (plan, client) =>
      Effect.forEach(plan.requests, (request, seq) =>
        Effect.gen(function*(): Effect.fn.Return<Sent> {
          inFlight++
          maxInFlight = Math.max(maxInFlight, inFlight)
          const json = yield* api.push(request).pipe(Effect.ensuring(Effect.sync(() => inFlight--)))
          return { client, seq, request, results: decodeResults(json) }
        })), { concurrency: "unbounded" })
    return { sent: sent.flat(), maxInFlight }
  })

const pullAll = (api: Api, scope: string) =>
  Effect.gen(function*() {
    const changes: Array<Omit<Protocol.Change, "ts">> = []
    let cursor = 0
    for (;;) {
      const page = yield* api.pull({ scope, cursor, limit: 1000 })
      for (const { ts: _ts, ...change } of page.changes) changes.push(plain(change) as Omit<Protocol.Change, "ts">)
      cursor = page.cursor
      if (!page.has_more) return changes
    }
  })

/** Per scope: the log without `ts`, the snapshot, and every client's `last_mutation_id` there. */
const stateOf = (api: Api, scopes: ReadonlyArray<string>, plans: ReadonlyArray<Plan>) =>
  Effect.forEach(scopes, (scope) =>
    Effect.gen(function*() {
      const log = yield* pullAll(api, scope)
      const snapshot = yield* api.snapshot({ scope })
      const lastIds = yield* Effect.forEach(plans, (plan) =>
        Effect.map(api.snapshot({ scope, client_id: plan.client }), (s) => [plan.client, s.last_mutation_id] as const))
      return { scope, log, snapshot: plain(snapshot), lastIds: Object.fromEntries(lastIds) }
    }))

type State = Effect.Effect.Success<ReturnType<typeof stateOf>>

// ---------------------------------------------------------------------------
// The commit order, derived from the results
// ---------------------------------------------------------------------------

const scopeOf = (m: Protocol.Mutation): string => m.scope ?? Protocol.DEFAULT_SCOPE

/** A result that committed changes: every success of the registry writes, a duplicate or failure does not. */
const wrote = (r: Protocol.MutationResult): boolean => r.ok && r.duplicate !== true

/** Per scope the push touched: whether it wrote there, and its position (its last head if it wrote, the head it saw if not). */
const positions = (push: Sent) => {
  const out = new Map<string, { writer: boolean; at: number; seen: Set<number> }>()
  push.request.mutations.forEach((m, i) => {
    const r = push.results[i]
    const scope = scopeOf(m)
    const entry = out.get(scope) ?? { writer: false, at: 0, seen: new Set<number>() }
    entry.writer ||= wrote(r)
    entry.at = Math.max(entry.at, r.cursor)
    entry.seen.add(r.cursor)
    out.set(scope, entry)
  })
  return out
}

/**
 * A serial order of the pushes that explains the results, or a failed
 * assertion saying why none does.
 */
const commitOrder = (sent: ReadonlyArray<Sent>): ReadonlyArray<Sent> => {
  const index = new Map(sent.map((p, i) => [p, i]))
  const after = sent.map(() => new Set<number>())
  const edge = (from: Sent, to: Sent) => {
    const a = index.get(from) ?? -1
    const b = index.get(to) ?? -1
    if (a !== b) after[a].add(b)
  }
  // per client: the order it sent them in
  const byClient = new Map<number, Array<Sent>>()
  for (const p of sent) byClient.set(p.client, [...(byClient.get(p.client) ?? []), p])
  for (const pushes of byClient.values()) {
    pushes.sort((a, b) => a.seq - b.seq)
    for (let i = 1; i < pushes.length; i++) edge(pushes[i - 1], pushes[i])
  }
  // per scope: writers by their last head; the others between the writers around the head they saw
  const byScope = new Map<string, Array<{ push: Sent; writer: boolean; at: number }>>()
  for (const p of sent) {
    for (const [scope, pos] of positions(p)) {
      if (!pos.writer) assert.strictEqual(pos.seen.size, 1, `a push that did not write ${scope} saw one head there: ${JSON.stringify(p.results)}`)
      byScope.set(scope, [...(byScope.get(scope) ?? []), { push: p, writer: pos.writer, at: pos.at }])
    }
  }
  for (const [scope, entries] of byScope) {
    const writers = entries.filter((e) => e.writer).sort((a, b) => a.at - b.at)
    for (let i = 1; i < writers.length; i++) {
      assert.notStrictEqual(writers[i - 1].at, writers[i].at, `two pushes end at cursor ${writers[i].at} in ${scope}`)
      edge(writers[i - 1].push, writers[i].push)
    }
    for (const e of entries) {
      if (e.writer) continue
      const before = writers.filter((w) => w.at <= e.at).pop()
      const next = writers.find((w) => w.at > e.at)
      if (before !== undefined) edge(before.push, e.push)
      if (next !== undefined) edge(e.push, next.push)
    }
  }
  // Kahn's sort, smallest index first among the ready ones (deterministic)
  const indegree = sent.map(() => 0)
  for (const outs of after) for (const b of outs) indegree[b]++
  const ready = indegree.flatMap((d, i) => (d === 0 ? [i] : []))
  const order: Array<Sent> = []
  while (ready.length > 0) {
    ready.sort((a, b) => a - b)
    const i = ready.shift() ?? 0
    order.push(sent[i])
    for (const b of after[i]) if (--indegree[b] === 0) ready.push(b)
  }
  assert.strictEqual(order.length, sent.length, "the results admit a serial order (no cycle among the pushes)")
  return order
}

// ---------------------------------------------------------------------------
// The checks
// ---------------------------------------------------------------------------

/** Replay `order` one push at a time on a fresh memory engine: the answers (plain JSON) and the state left. */
const replay = (order: ReadonlyArray<Sent>, scopes: ReadonlyArray<string>, plans: ReadonlyArray<Plan>) =>
  Effect.gen(function*() {
    const context = yield* Layer.build(layerMemoryEngine(registry))
    const api = engineApi(Context.get(context, SyncEngine.SyncEngine))
    const answers: Array<unknown> = []
    for (const p of order) answers.push(yield* api.push(p.request))
    return { answers, state: yield* stateOf(api, scopes, plans) }
  }).pipe(Effect.scoped)

/** Each case of the mix happened at least a few times, and the run was concurrent and interleaved. */
const assertCoverage = (sent: ReadonlyArray<Sent>, maxInFlight: number) => {
  const count = (f: (m: Protocol.Mutation, r: Protocol.MutationResult, p: Sent, i: number) => boolean) =>
    sent.reduce((n, p) => n + p.request.mutations.filter((m, i) => f(m, p.results[i], p, i)).length, 0)
  const code = (c: string) => count((_, r) => r.duplicate !== true && r.error?.code === c)
  const cases = {
    ok: count((_, r) => wrote(r)),
    duplicate: count((_, r) => r.duplicate === true),
    repeatedInRequest: count((m, r, p, i) => r.duplicate === true && p.request.mutations.slice(0, i).some((o) => o.id === m.id)),
    retriedPush: sent.filter((p) => p.results.length > 0 && p.results.every((r) => r.duplicate === true)).length,
    out_of_order: code("out_of_order"),
    unknown_mutation: code("unknown_mutation"),
    invalid_args: code("invalid_args"),
    rejectedBeforeWriting: count((m, r) => r.duplicate !== true && r.error?.code === "rejected" && (m.name === "gc/put" || m.name === "gc/drop" || m.name === "gc/bump")),
    rejectedAfterWriting: count((m, r) => r.duplicate !== true && r.error?.code === "rejected" && (m.name === "gc/half" || (m.name === "gc/bump-odd" && (r.error?.message ?? "").includes("would be")))),
    multiScopePushes: sent.filter((p) => new Set(p.request.mutations.map(scopeOf)).size > 1 && p.results.some(wrote)).length
  }
  for (const [name, n] of Object.entries(cases)) assert.isAtLeast(n, 5, `the run had ${name} (${JSON.stringify(cases)})`)
  assert.isAtLeast(maxInFlight, 2, "pushes were in flight together")
  // in every scope, writers of several clients, their commits interleaved (not one client's run after another's)
  const writersByScope = new Map<string, Array<{ at: number; client: number }>>()
  for (const p of sent) {
    for (const [scope, pos] of positions(p)) if (pos.writer) writersByScope.set(scope, [...(writersByScope.get(scope) ?? []), { at: pos.at, client: p.client }])
  }
  for (const [scope, writers] of writersByScope) {
    const clients = writers.sort((a, b) => a.at - b.at).map((w) => w.client)
    const switches = clients.filter((c, i) => i > 0 && c !== clients[i - 1]).length
    assert.isAtLeast(new Set(clients).size, 4, `writers of several clients in ${scope}`)
    assert.isAtLeast(switches, 10, `writers of ${scope} interleaved`)
  }
  return cases
}

/** Every poke names a scope's head after some push that wrote there, and the last head of each scope was poked. */
const assertPokes = (pokes: ReadonlyArray<RecordedPoke>, sent: ReadonlyArray<Sent>, state: State) => {
  const ends = new Map<string, Set<number>>()
  for (const p of sent) for (const [scope, pos] of positions(p)) if (pos.writer) ends.set(scope, (ends.get(scope) ?? new Set()).add(pos.at))
  for (const poke of pokes) {
    assert.isTrue(ends.get(poke.scope)?.has(poke.cursor) ?? false, `poke ${poke.scope}@${poke.cursor} is a head some push reported`)
  }
  for (const s of state) {
    const head = s.log.length
    const poked = pokes.filter((p) => p.scope === s.scope).reduce((m, p) => Math.max(m, p.cursor), 0)
    assert.strictEqual(poked, head, `the last head of ${s.scope} was poked`)
  }
}

/** What a run checks besides the replay. */
interface Checks {
  /** The engine's recorded pokes (in process). */
  readonly pokes?: Effect.Effect<ReadonlyArray<RecordedPoke>>
  /** The run must have committed some group of more than one push, once `mizu_push_group_size` exists. */
  readonly groups?: boolean
}

/** Run the workload on `api`, then check it against the serial replay. */
const differential = (api: Api, run: string, checks: Checks = {}) =>
  Effect.gen(function*() {
    const scopes = Array.from({ length: SCOPE_COUNT }, (_, i) => `gc:${run}:s${i}`)
    const plans = makePlans(SEED, scopes, run)
    // the server runs in this process (also over HTTP): its metrics are this process's
    const groupsBefore = PushGroups.parse(yield* Metrics.prometheus)
    const { maxInFlight, sent } = yield* runConcurrently(api, plans)
    const groupsAfter = PushGroups.parse(yield* Metrics.prometheus)
    if (checks.groups === true) {
      // with 16 pushes in flight a writer must have taken more than one waiting push at least once
      assert.isDefined(groupsAfter, "mizu_push_group_size is recorded")
      const { extraPushes, groups } = PushGroups.delta(groupsBefore, groupsAfter)
      assert.isAbove(groups, 0, "groups were committed")
      assert.isAbove(extraPushes, 0, "some committed group held more than one push")
    }
    const state = yield* stateOf(api, scopes, plans)
    assertCoverage(sent, maxInFlight)
    // gap-free logs, whatever the order
    for (const s of state) assert.deepStrictEqual(s.log.map((c) => c.cursor), Array.from({ length: s.log.length }, (_, i) => i + 1))
    if (checks.pokes !== undefined) assertPokes(yield* checks.pokes, sent, state)

    const order = commitOrder(sent)
    const serial = yield* replay(order, scopes, plans)
    order.forEach((p, i) => {
      assert.deepStrictEqual(serial.answers[i], plain({ results: p.results }), `client ${p.client} push ${p.seq}: ${JSON.stringify(p.request)}`)
    })
    assert.deepStrictEqual(serial.state, state)

    // the comparison sees order: client after client (each client's own order kept) does not explain this run
    const clientMajor = [...sent].sort((a, b) => a.client - b.client || a.seq - b.seq)
    const wrong = yield* replay(clientMajor, scopes, plans)
    const sameAnswers = clientMajor.every((p, i) => NodeUtil.isDeepStrictEqual(wrong.answers[i], plain({ results: p.results })))
    assert.isFalse(sameAnswers && NodeUtil.isDeepStrictEqual(wrong.state, state), "a wrong serial order is told apart")
  })

const directory = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "mizu-group-"))
afterAll(() => NodeFs.rmSync(directory, { recursive: true, force: true }))

/** Run the workload in process over `storage`, with the recorded pokes checked too. */
const inProcess = (storage: Layer.Layer<SyncStorage.Services, unknown>, run: string) =>
  Effect.gen(function*() {
    const context = yield* Layer.build(layerEngine(registry, storage))
    const recorder = Context.get(context, PokeRecorder)
    yield* differential(engineApi(Context.get(context, SyncEngine.SyncEngine)), run, { pokes: recorder.pokes, groups: true })
  }).pipe(Effect.scoped)

describe(`group commit: concurrent pushes equal their serial replay (seed ${SEED})`, () => {
  it.live("memory, in process", () => inProcess(SyncStorage.layerMemory, "mem"), 120_000)

  it.live("SQLite file, in process", () =>
    inProcess(SqlStorage.layerSqlite({ filename: NodePath.join(directory, "engine.db") }), "sqlite"), 120_000)

  it.live("SQLite file, over HTTP", () =>
    Effect.gen(function*() {
      const deps = Layer.mergeAll(
        SqlStorage.layerSqlite({ filename: NodePath.join(directory, "http.db") }),
        LivePubSub.layerMemory,
        Authorizer.layerAllowAll
      )
      const context = yield* Layer.build(layerServer({ registry }, deps))
      yield* differential(httpApi(Context.get(context, BaseUrl)), "http", { groups: true })
    }).pipe(Effect.scoped), 120_000)
})

describePostgres(`group commit on Postgres: concurrent pushes equal their serial replay (seed ${SEED})`, ({ storage }) => {
  it.live("Postgres, in process", () => inProcess(storage(), "pg"), 120_000)
})

// ---------------------------------------------------------------------------
// A request that goes away while its push is in a group: the push still
// commits (the writer owns it), and the client's retry finds it a duplicate.
// ---------------------------------------------------------------------------

/** Blocks in its mutator until the test lets it go: the push is then inside the writer's group. */
const makeGate = Effect.gen(function*() {
  const entered = yield* Deferred.make<void>()
  const release = yield* Deferred.make<void>()
  const gated = Mutation.make("gc/gated", {
    args: Schema.Struct({ key: Key, by: By }),
    handler: ({ by, key }, tx) =>
      Effect.zipRight(
        Effect.zipRight(Deferred.succeed(entered, undefined), Deferred.await(release)),
        tx.put(CellEntity, key, { key, n: 1, by })
      )
  })
  return { entered, release, registry: Mutation.registry({ entities: [CellEntity], mutations: [put, gated] }) }
})

const interruptedRequest = (storage: Layer.Layer<SyncStorage.Services, unknown>) =>
  Effect.gen(function*() {
    const gate = yield* makeGate
    const context = yield* Layer.build(layerEngine(gate.registry, storage))
    const engine = Context.get(context, SyncEngine.SyncEngine)
    const caller = { token: undefined, headers: {} }
    const scope = `gc-interrupt-${Math.random().toString(36).slice(2, 8)}`
    const body: Protocol.PushRequest = { client_id: "gone", mutations: [{ id: 1, name: "gc/gated", scope, args: { key: "k0", by: "gone" } }] }
    const request = yield* Effect.fork(engine.push(body, caller))
    yield* Deferred.await(gate.entered)
    // a push of another client queues behind the group in flight
    const other = yield* Effect.fork(
      engine.push({ client_id: "stays", mutations: [{ id: 1, name: "gc/put", scope, args: { key: "k1", by: "stays" } }] }, caller)
    )
    yield* Fiber.interrupt(request)
    yield* Deferred.succeed(gate.release, undefined)
    const stays = yield* Fiber.join(other)
    assert.deepStrictEqual(stays.results.map((r) => [r.ok, r.cursor]), [[true, 2]])
    // the retry of the interrupted request: already applied (its change is cursor 1; the head is 2)
    const retried = yield* engine.push(body, caller)
    assert.deepStrictEqual(retried.results.map((r) => [r.ok, r.duplicate, r.cursor]), [[true, true, 2]])
    const pulled = yield* engine.pull({ scope, cursor: 0, client_id: "gone" }, caller)
    assert.deepStrictEqual(pulled.changes.map((c) => [c.cursor, c.id, (c.data as { by: string }).by]), [[1, "k0", "gone"], [2, "k1", "stays"]])
    assert.strictEqual(pulled.last_mutation_id, 1)
  }).pipe(Effect.scoped)

describe("group commit: a request interrupted while its push is in a group", () => {
  it.live("memory: the push commits once; the retry is a duplicate", () => interruptedRequest(SyncStorage.layerMemory), 30_000)
  it.live("SQLite file: the push commits once; the retry is a duplicate", () =>
    interruptedRequest(SqlStorage.layerSqlite({ filename: NodePath.join(directory, "interrupt.db") })), 30_000)
})
