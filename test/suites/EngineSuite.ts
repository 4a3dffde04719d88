/**
 * The engine suite: PROTOCOL.md section 1 over a storage family, and client
 * id ownership (`OwnershipSuite`). Each family runs it with one line:
 * `engineSuite("memory", SyncStorage.layerMemory)`.
 */
import { assert, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { ChangeLog, Clients, Mutation, type Protocol, Store, SyncEngine, type SyncStorage } from "mizu-sync-live"
import { layerEngine, PokeRecorder } from "mizu-sync-live/testing"
import { createTodo, deleteTodo, renameTodo, TodoEntity, toggleTodo } from "../../examples/todo/mutations.js"
import { ownershipSuite } from "./OwnershipSuite.js"
import { freshClient, freshScope, range } from "./util.js"

/** Writes, then rejects: nothing of it may remain. */
const halfThenReject = Mutation.make("test/half-reject", {
  args: Schema.Struct({ id: Schema.String }),
  handler: ({ id }, tx) =>
    Effect.zipRight(tx.put(TodoEntity, id, { id, title: "half", completed: false }), Mutation.reject("changed my mind"))
})

/** Writes, then hits a bug (a defect): the whole request must roll back. */
const halfThenDie = Mutation.make("test/half-die", {
  args: Schema.Struct({ id: Schema.String }),
  handler: ({ id }, tx) => Effect.zipRight(tx.put(TodoEntity, id, { id, title: "half", completed: false }), Effect.die("bug"))
})

/** Writes several entities in one mutation. */
const createMany = Mutation.make("test/create-many", {
  args: Schema.Struct({ ids: Schema.Array(Schema.String) }),
  handler: ({ ids }, tx) =>
    Effect.forEach(ids, (id) => tx.put(TodoEntity, id, { id, title: id, completed: false }), { discard: true })
})

export const registry = Mutation.registry({
  entities: [TodoEntity],
  mutations: [createTodo, toggleTodo, renameTodo, deleteTodo, halfThenReject, halfThenDie, createMany]
})

const create = (id: number, todo: string, scope: string, title = todo): Protocol.Mutation => ({
  id,
  name: "todo/create",
  scope,
  args: { id: todo, title }
})

/** Fold a scope's whole change log into `{entity: {id: data}}`. */
export const foldChanges = (changes: ReadonlyArray<Protocol.Change>) => {
  const out: Record<string, Record<string, unknown>> = {}
  for (const c of changes) {
    const rows = (out[c.entity] ??= {})
    if (c.op === "delete") delete rows[c.id]
    else rows[c.id] = c.data
  }
  for (const k of Object.keys(out)) if (Object.keys(out[k]).length === 0) delete out[k]
  return out
}

export const engineSuite = (name: string, storage: Layer.Layer<SyncStorage.Services, unknown>) => {
  ownershipSuite(name, registry, storage)
  engineCore(name, storage)
}

const engineCore = (name: string, storage: Layer.Layer<SyncStorage.Services, unknown>) =>
  layer(layerEngine(registry, storage), { timeout: 120_000 })(`SyncEngine (${name})`, (it) => {
    const anon = SyncEngine.anonymous

    const pullAll = (scope: string, clientId?: string) =>
      Effect.gen(function*() {
        const engine = yield* SyncEngine.SyncEngine
        const changes: Array<Protocol.Change> = []
        let cursor = 0
        let last: Protocol.PullResponse | undefined
        do {
          last = yield* engine.pull({ scope, cursor, limit: 1000, ...(clientId ? { client_id: clientId } : {}) }, anon)
          changes.push(...last.changes)
          cursor = last.cursor
        } while (last.has_more)
        return { changes, last }
      })

    it.effect("a push without client_id also pokes each scope once, with its last head", () =>
      Effect.gen(function*() {
        const engine = yield* SyncEngine.SyncEngine
        const recorder = yield* PokeRecorder
        const a = freshScope()
        const b = freshScope()
        const res = yield* engine.push({
          mutations: [["p1", a], ["p2", a], ["p3", b]].map(([todo, scope]) => ({ name: "todo/create", scope, args: { id: todo, title: todo } }))
        }, anon)
        assert.deepStrictEqual(res.results.map((r) => [r.ok, r.cursor]), [[true, 1], [true, 2], [true, 1]])
        const pokes = (yield* recorder.pokes).filter((p) => p.scope === a || p.scope === b)
        assert.deepStrictEqual(pokes, [{ scope: a, cursor: 2 }, { scope: b, cursor: 1 }])
      }))

    it.effect("applies mutations, returns cursors, pokes each scope once after commit with its head", () =>
      Effect.gen(function*() {
        const engine = yield* SyncEngine.SyncEngine
        const recorder = yield* PokeRecorder
        const a = freshScope()
        const b = freshScope()
        const c = freshClient()
        const res = yield* engine.push({
          client_id: c,
          mutations: [create(1, "t1", a), create(2, "t2", a), create(3, "t3", b), { id: 4, name: "todo/toggle", scope: a, args: { id: "t1" } }]
        }, anon)
        assert.deepStrictEqual(res.results, [
          { id: 1, ok: true, cursor: 1 },
          { id: 2, ok: true, cursor: 2 },
          { id: 3, ok: true, cursor: 1 },
          { id: 4, ok: true, cursor: 3 }
        ])
        const pokes = (yield* recorder.pokes).filter((p) => p.scope === a || p.scope === b)
        assert.deepStrictEqual(pokes, [{ scope: a, cursor: 3 }, { scope: b, cursor: 1 }])
        const { changes } = yield* pullAll(a)
        assert.deepStrictEqual(changes.map((ch) => [ch.cursor, ch.op, ch.id]), [[1, "create", "t1"], [2, "create", "t2"], [3, "update", "t1"]])
        assert.deepStrictEqual(changes[0].data, { id: "t1", title: "t1", completed: false })
        assert.deepStrictEqual(changes[2].data, { id: "t1", title: "t1", completed: true })
      }))

    it.effect("a mutation without scope goes to _default", () =>
      Effect.gen(function*() {
        const engine = yield* SyncEngine.SyncEngine
        const store = yield* Store.Store
        const id = `d-${freshClient()}`
        const res = yield* engine.push({ mutations: [{ name: "todo/create", args: { id, title: "x" } }] }, anon)
        assert.isTrue(res.results[0].ok)
        assert.isTrue(Option.isSome(yield* store.get("_default", "todo", id)))
      }))

    it.effect("dedupe: 50 concurrent retries of one request apply it exactly once", () =>
      Effect.gen(function*() {
        const engine = yield* SyncEngine.SyncEngine
        const s = freshScope()
        const c = freshClient()
        const request = { client_id: c, mutations: [create(1, "a", s), create(2, "b", s), { id: 3, name: "todo/toggle", scope: s, args: { id: "a" } }] }
        const all = yield* Effect.forEach(range(50), () => engine.push(request, anon), { concurrency: "unbounded" })
        const fresh = all.filter((r) => r.results.every((m) => m.ok && m.duplicate === undefined))
        const dupes = all.filter((r) => r.results.every((m) => m.ok && m.duplicate === true))
        assert.strictEqual(fresh.length, 1)
        assert.strictEqual(dupes.length, 49)
        for (const r of dupes) assert.deepStrictEqual(r.results.map((m) => m.cursor), [3, 3, 3])
        const { changes } = yield* pullAll(s)
        assert.strictEqual(changes.length, 3)
        assert.deepStrictEqual(foldChanges(changes), { todo: { a: { id: "a", title: "a", completed: true }, b: { id: "b", title: "b", completed: false } } })
      }))

    it.effect("out_of_order stops the request: nothing after the gap is applied", () =>
      Effect.gen(function*() {
        const engine = yield* SyncEngine.SyncEngine
        const s = freshScope()
        const c = freshClient()
        const res = yield* engine.push({ client_id: c, mutations: [create(1, "a", s), create(3, "c", s), create(4, "d", s)] }, anon)
        assert.deepStrictEqual(res.results[0], { id: 1, ok: true, cursor: 1 })
        for (const r of res.results.slice(1)) {
          assert.isFalse(r.ok)
          assert.strictEqual(r.error?.code, "out_of_order")
          assert.strictEqual(r.error?.expected, 2)
        }
        assert.strictEqual((yield* pullAll(s)).changes.length, 1)
        // A gap at the very start: nothing applied, expected 1.
        const c2 = freshClient()
        const res2 = yield* engine.push({ client_id: c2, mutations: [create(5, "x", s)] }, anon)
        assert.strictEqual(res2.results[0].error?.expected, 1)
        assert.strictEqual((yield* pullAll(s)).changes.length, 1)
      }))

    it.effect("unknown_mutation, invalid_args (naming the field) and rejected consume the id with no changes", () =>
      Effect.gen(function*() {
        const engine = yield* SyncEngine.SyncEngine
        const s = freshScope()
        const c = freshClient()
        const res = yield* engine.push({
          client_id: c,
          mutations: [
            { id: 1, name: "todo/nope", scope: s, args: {} },
            { id: 2, name: "todo/create", scope: s, args: { id: "a", title: 42 } },
            { id: 3, name: "todo/toggle", scope: s, args: { id: "missing" } },
            create(4, "ok", s),
            create(5, "ok", s)
          ]
        }, anon)
        assert.strictEqual(res.results[0].error?.code, "unknown_mutation")
        assert.strictEqual(res.results[1].error?.code, "invalid_args")
        assert.include(res.results[1].error?.message ?? "", "title")
        assert.strictEqual(res.results[2].error?.code, "rejected")
        assert.include(res.results[2].error?.message ?? "", "not found")
        assert.deepStrictEqual(res.results[3], { id: 4, ok: true, cursor: 1 })
        assert.strictEqual(res.results[4].error?.code, "rejected")
        assert.include(res.results[4].error?.message ?? "", "already exists")
        assert.deepStrictEqual(res.results.map((r) => r.cursor), [0, 0, 0, 1, 1])
        // the ids were consumed: resending one is a duplicate (answered its remembered rejection, not
        // applied even though it would now succeed), and 6 is next
        const again = yield* engine.push({ client_id: c, mutations: [{ id: 3, name: "todo/toggle", scope: s, args: { id: "ok" } }, create(6, "six", s)] }, anon)
        assert.deepStrictEqual(again.results, [
          { id: 3, ok: false, duplicate: true, cursor: 1, error: { code: "rejected", message: res.results[2].error?.message ?? "" } },
          { id: 6, ok: true, cursor: 2 }
        ])
        assert.deepStrictEqual((yield* pullAll(s)).changes.map((ch) => ch.id), ["ok", "six"])
      }))

    it.effect("a mutator that fails half-way leaves no partial write and no log entry", () =>
      Effect.gen(function*() {
        const engine = yield* SyncEngine.SyncEngine
        const store = yield* Store.Store
        const log = yield* ChangeLog.ChangeLog
        const s = freshScope()
        const c = freshClient()
        const res = yield* engine.push({
          client_id: c,
          mutations: [create(1, "before", s), { id: 2, name: "test/half-reject", scope: s, args: { id: "half" } }, create(3, "after", s)]
        }, anon)
        assert.deepStrictEqual(res.results.map((r) => r.ok), [true, false, true])
        assert.isTrue(Option.isNone(yield* store.get(s, "todo", "half")))
        assert.deepStrictEqual((yield* pullAll(s)).changes.map((ch) => [ch.cursor, ch.id]), [[1, "before"], [2, "after"]])

        // A defect rolls back the whole request, including the mutations before it.
        const c2 = freshClient()
        const s2 = freshScope()
        const failed = yield* engine.push({
          client_id: c2,
          mutations: [create(1, "kept?", s2), { id: 2, name: "test/half-die", scope: s2, args: { id: "half" } }]
        }, anon).pipe(Effect.exit)
        assert.strictEqual(failed._tag, "Failure")
        assert.strictEqual(yield* log.head(s2), 0)
        assert.deepStrictEqual(yield* store.snapshot(s2), {})
        const retry = yield* engine.push({ client_id: c2, mutations: [create(1, "kept", s2)] }, anon)
        assert.deepStrictEqual(retry.results, [{ id: 1, ok: true, cursor: 1 }])
      }))

    it.effect("a rejection after writing, in a push over two scopes: exact cursors, changes and last ids per scope", () =>
      Effect.gen(function*() {
        const engine = yield* SyncEngine.SyncEngine
        const store = yield* Store.Store
        const recorder = yield* PokeRecorder
        const a = freshScope()
        const b = freshScope()
        const c = freshClient()
        yield* recorder.clear
        const res = yield* engine.push({
          client_id: c,
          mutations: [
            create(1, "a1", a),
            create(2, "b1", b),
            { id: 3, name: "test/half-reject", scope: a, args: { id: "a-half" } },
            { id: 4, name: "test/create-many", scope: b, args: { ids: ["b2", "b3"] } },
            { id: 5, name: "test/half-reject", scope: b, args: { id: "b-half" } },
            create(6, "a2", a)
          ]
        }, anon)
        assert.deepStrictEqual(
          res.results.map((r) => [r.id, r.ok, r.ok ? r.cursor : r.error?.code]),
          [[1, true, 1], [2, true, 1], [3, false, "rejected"], [4, true, 3], [5, false, "rejected"], [6, true, 2]]
        )
        assert.isTrue(Option.isNone(yield* store.get(a, "todo", "a-half")))
        assert.isTrue(Option.isNone(yield* store.get(b, "todo", "b-half")))
        const pulledA = yield* pullAll(a, c)
        const pulledB = yield* pullAll(b, c)
        assert.deepStrictEqual(pulledA.changes.map((ch) => [ch.cursor, ch.id]), [[1, "a1"], [2, "a2"]])
        assert.deepStrictEqual(pulledB.changes.map((ch) => [ch.cursor, ch.id]), [[1, "b1"], [2, "b2"], [3, "b3"]])
        // The client's last id in each scope is its last mutation there, rejected or not.
        assert.strictEqual(pulledA.last?.last_mutation_id, 6)
        assert.strictEqual(pulledB.last?.last_mutation_id, 5)
        assert.deepStrictEqual(
          (yield* recorder.pokes).filter((p) => p.scope === a || p.scope === b).map((p) => [p.scope === a ? "a" : "b", p.cursor]).sort(),
          [["a", 2], ["b", 3]]
        )
        // Exactly once: the same request again changes nothing and answers duplicate.
        const again = yield* engine.push({ client_id: c, mutations: [create(6, "a2", a)] }, anon)
        assert.strictEqual(again.results[0].ok && again.results[0].duplicate, true)
        assert.strictEqual((yield* pullAll(a)).changes.length, 2)
      }))

    it.effect("a retried failed mutation (its reply lost) is answered its failure again, with duplicate: true; a successful one ok duplicate", () =>
      Effect.gen(function*() {
        const engine = yield* SyncEngine.SyncEngine
        const s = freshScope()
        const c = freshClient()
        const request = {
          client_id: c,
          mutations: [
            { id: 1, name: "todo/nope", scope: s, args: {} },
            { id: 2, name: "todo/create", scope: s, args: { id: "a", title: 42 } },
            { id: 3, name: "todo/toggle", scope: s, args: { id: "missing" } },
            create(4, "ok", s)
          ]
        }
        const first = yield* engine.push(request, anon)
        assert.deepStrictEqual(first.results.map((r) => [r.ok, r.error?.code]), [
          [false, "unknown_mutation"],
          [false, "invalid_args"],
          [false, "rejected"],
          [true, undefined]
        ])
        // the same request again (the client never saw the first reply)
        const again = yield* engine.push(request, anon)
        assert.deepStrictEqual(again.results, [
          { id: 1, ok: false, duplicate: true, cursor: 1, error: first.results[0].error },
          { id: 2, ok: false, duplicate: true, cursor: 1, error: first.results[1].error },
          { id: 3, ok: false, duplicate: true, cursor: 1, error: first.results[2].error },
          { id: 4, ok: true, duplicate: true, cursor: 1 }
        ])
        // one of them alone, with whatever args: the id is what counts; and the remembered failure stays
        const alone = yield* engine.push({ client_id: c, mutations: [create(3, "other", s), create(5, "five", s)] }, anon)
        assert.deepStrictEqual(alone.results, [
          { id: 3, ok: false, duplicate: true, cursor: 1, error: first.results[2].error },
          { id: 5, ok: true, cursor: 2 }
        ])
        assert.deepStrictEqual((yield* pullAll(s)).changes.map((ch) => ch.id), ["ok", "five"])
        // an id repeated within one request: the repeat is a duplicate of what it did just before
        const twice = yield* engine.push({ client_id: c, mutations: [{ id: 6, name: "todo/nope", scope: s }, { id: 6, name: "todo/nope", scope: s }] }, anon)
        assert.deepStrictEqual(twice.results.map((r) => [r.ok, r.duplicate, r.error?.code]), [[false, undefined, "unknown_mutation"], [false, true, "unknown_mutation"]])
      }))

    it.effect("a mutation that failed after writing (the savepoint rerun) is remembered too, and nothing of it applies on retry", () =>
      Effect.gen(function*() {
        const engine = yield* SyncEngine.SyncEngine
        const store = yield* Store.Store
        const s = freshScope()
        const c = freshClient()
        const request = {
          client_id: c,
          mutations: [create(1, "before", s), { id: 2, name: "test/half-reject", scope: s, args: { id: "half" } }, create(3, "after", s)]
        }
        const first = yield* engine.push(request, anon)
        assert.deepStrictEqual(first.results[1], { id: 2, ok: false, cursor: 1, error: { code: "rejected", message: "changed my mind" } })
        const again = yield* engine.push(request, anon)
        assert.deepStrictEqual(again.results, [
          { id: 1, ok: true, duplicate: true, cursor: 2 },
          { id: 2, ok: false, duplicate: true, cursor: 2, error: { code: "rejected", message: "changed my mind" } },
          { id: 3, ok: true, duplicate: true, cursor: 2 }
        ])
        assert.isTrue(Option.isNone(yield* store.get(s, "todo", "half")))
        assert.deepStrictEqual((yield* pullAll(s)).changes.map((ch) => ch.id), ["before", "after"])
      }))

    it.effect(`each client's last ${Clients.DEFAULT_REMEMBERED_FAILURES} failures are remembered: after more later failures the oldest answers ok duplicate`, () =>
      Effect.gen(function*() {
        const engine = yield* SyncEngine.SyncEngine
        const n = Clients.DEFAULT_REMEMBERED_FAILURES
        const s = freshScope()
        const c = freshClient()
        const nope = (id: number): Protocol.Mutation => ({ id, name: "todo/nope", scope: s })
        const rejectedOne = yield* engine.push({ client_id: c, mutations: [{ id: 1, name: "todo/toggle", scope: s, args: { id: "missing" } }] }, anon)
        assert.strictEqual(rejectedOne.results[0].error?.code, "rejected")
        // n - 1 later failures (and successes between them, which do not count): id 1 is still remembered
        const later: Array<Protocol.Mutation> = []
        let id = 2
        for (let k = 0; k < n - 1; k++) {
          later.push(nope(id++))
          later.push(create(id++, `t${id}`, s))
        }
        yield* engine.push({ client_id: c, mutations: later }, anon)
        const stillThere = yield* engine.push({ client_id: c, mutations: [nope(1)] }, anon)
        assert.deepStrictEqual(stillThere.results[0].error, rejectedOne.results[0].error)
        assert.isTrue(stillThere.results[0].duplicate)
        // five more failures, in two pushes: the oldest five (ids 1, 2, 4, 6, 8) are forgotten, the rest remembered
        yield* engine.push({ client_id: c, mutations: [nope(id), nope(id + 1)] }, anon)
        yield* engine.push({ client_id: c, mutations: [nope(id + 2), nope(id + 3), nope(id + 4)] }, anon)
        const retry = yield* engine.push({ client_id: c, mutations: [nope(1), nope(2), nope(4), nope(8), nope(10), nope(14), create(3, "t3", s)] }, anon)
        assert.deepStrictEqual(retry.results.map((r) => [r.id, r.ok, r.duplicate, r.error?.code]), [
          [1, true, true, undefined],
          [2, true, true, undefined],
          [4, true, true, undefined],
          [8, true, true, undefined],
          [10, false, true, "unknown_mutation"],
          [14, false, true, "unknown_mutation"],
          [3, true, true, undefined]
        ])
        const newest = yield* engine.push({ client_id: c, mutations: [nope(id + 4)] }, anon)
        assert.deepStrictEqual(newest.results[0].error?.code, "unknown_mutation")
      }))

    it.effect("exactly once with failures: 30 concurrent retries of a mixed request apply it once, and every duplicate answer carries the failures", () =>
      Effect.gen(function*() {
        const engine = yield* SyncEngine.SyncEngine
        const s = freshScope()
        const c = freshClient()
        const request = {
          client_id: c,
          mutations: [create(1, "a", s), { id: 2, name: "test/half-reject", scope: s, args: { id: "h" } }, { id: 3, name: "todo/nope", scope: s }, create(4, "b", s)]
        }
        const all = yield* Effect.forEach(range(30), () => engine.push(request, anon), { concurrency: "unbounded" })
        const fresh = all.filter((r) => r.results.every((m) => m.duplicate === undefined))
        const dupes = all.filter((r) => r.results.every((m) => m.duplicate === true))
        assert.strictEqual(fresh.length, 1)
        assert.strictEqual(dupes.length, 29)
        const errors = fresh[0].results.map((m) => m.error)
        for (const r of dupes) {
          assert.deepStrictEqual(r.results.map((m) => [m.ok, m.cursor]), [[true, 2], [false, 2], [false, 2], [true, 2]])
          assert.deepStrictEqual(r.results.map((m) => m.error), errors)
        }
        assert.deepStrictEqual((yield* pullAll(s)).changes.map((ch) => ch.id), ["a", "b"])
      }))

    it.effect("without client_id: no dedupe, each mutation its own step, a retry applies again", () =>
      Effect.gen(function*() {
        const engine = yield* SyncEngine.SyncEngine
        const s = freshScope()
        const body = { mutations: [{ id: 7, name: "test/create-many", scope: s, args: { ids: ["x", "y"] } }] }
        const first = yield* engine.push(body, anon)
        const second = yield* engine.push(body, anon)
        assert.deepStrictEqual(first.results, [{ id: 7, ok: true, cursor: 2 }])
        assert.deepStrictEqual(second.results, [{ id: 7, ok: true, cursor: 4 }])
        const { changes } = yield* pullAll(s)
        assert.deepStrictEqual(changes.map((ch) => ch.op), ["create", "create", "update", "update"])
        // mutation ids are not required and not checked for order
        const seed = yield* engine.push({
          mutations: [{ name: "todo/create", scope: s, args: { id: "z", title: "t" } }, { name: "todo/nope", scope: s }]
        }, anon)
        assert.deepStrictEqual(seed.results[0], { ok: true, cursor: 5 })
        assert.strictEqual(seed.results[1].error?.code, "unknown_mutation")
      }))

    it.effect("client_id requires an id on every mutation", () =>
      Effect.gen(function*() {
        const engine = yield* SyncEngine.SyncEngine
        const s = freshScope()
        const e = yield* engine.push({ client_id: freshClient(), mutations: [{ name: "todo/create", scope: s, args: { id: "a", title: "a" } }] }, anon).pipe(Effect.flip)
        assert.strictEqual(e.code, "invalid_request")
        assert.include(e.message, "mutations[0].id")
      }))

    it.effect("pull pages with has_more over 1,000 changes; snapshot equals the fold of all changes", () =>
      Effect.gen(function*() {
        const engine = yield* SyncEngine.SyncEngine
        const s = freshScope()
        const c = freshClient()
        const mutations: Array<Protocol.Mutation> = []
        for (let i = 1; i <= 1000; i++) mutations.push(create(i, `t${i}`, s))
        yield* engine.push({ client_id: c, mutations }, anon)
        const more: Array<Protocol.Mutation> = []
        let id = 1001
        for (let i = 1; i <= 100; i++) more.push({ id: id++, name: "todo/toggle", scope: s, args: { id: `t${i}` } })
        for (let i = 101; i <= 150; i++) more.push({ id: id++, name: "todo/delete", scope: s, args: { id: `t${i}` } })
        for (let i = 151; i <= 160; i++) more.push({ id: id++, name: "todo/rename", scope: s, args: { id: `t${i}`, title: "renamed" } })
        yield* engine.push({ client_id: c, mutations: more }, anon)

        let cursor = 0
        let pages = 0
        const seen: Array<number> = []
        for (;;) {
          const page = yield* engine.pull({ scope: s, cursor }, anon)
          pages++
          assert.isAtMost(page.changes.length, 100)
          seen.push(...page.changes.map((ch) => ch.cursor))
          cursor = page.cursor
          if (!page.has_more) break
          assert.strictEqual(page.changes.length, 100)
        }
        assert.strictEqual(pages, 12)
        assert.deepStrictEqual(seen, range(1160))
        const big = yield* engine.pull({ scope: s, cursor: 0, limit: 1000 }, anon)
        assert.strictEqual(big.changes.length, 1000)
        assert.isTrue(big.has_more)
        const snap = yield* engine.snapshot({ scope: s }, anon)
        assert.strictEqual(snap.cursor, 1160)
        const { changes } = yield* pullAll(s)
        assert.deepStrictEqual(snap.data, foldChanges(changes))
        assert.strictEqual(Object.keys(snap.data.todo).length, 950)
      }))

    it.effect("last_mutation_id is per client and per scope, in pull and snapshot", () =>
      Effect.gen(function*() {
        const engine = yield* SyncEngine.SyncEngine
        const a = freshScope()
        const b = freshScope()
        const c = freshClient()
        yield* engine.push({ client_id: c, mutations: [create(1, "x", a), create(2, "y", b), create(3, "z", a), { id: 4, name: "todo/nope", scope: b }] }, anon)
        assert.strictEqual((yield* engine.pull({ scope: a, cursor: 0, client_id: c }, anon)).last_mutation_id, 3)
        assert.strictEqual((yield* engine.pull({ scope: b, cursor: 0, client_id: c }, anon)).last_mutation_id, 4)
        assert.strictEqual((yield* engine.pull({ scope: freshScope(), cursor: 0, client_id: c }, anon)).last_mutation_id, 0)
        assert.strictEqual((yield* engine.pull({ scope: a, cursor: 0, client_id: freshClient() }, anon)).last_mutation_id, 0)
        assert.strictEqual((yield* engine.pull({ scope: a, cursor: 0 }, anon)).last_mutation_id, undefined)
        assert.strictEqual((yield* engine.snapshot({ scope: a, client_id: c }, anon)).last_mutation_id, 3)
      }))

    it.effect("cursor_ahead beyond the head; cursor_too_old below the floor after trim; snapshot still whole", () =>
      Effect.gen(function*() {
        const engine = yield* SyncEngine.SyncEngine
        const log = yield* ChangeLog.ChangeLog
        const s = freshScope()
        const c = freshClient()
        yield* engine.push({ client_id: c, mutations: range(10).map((i) => create(i, `t${i}`, s)) }, anon)
        const ahead = yield* engine.pull({ scope: s, cursor: 11 }, anon).pipe(Effect.flip)
        assert.strictEqual(ahead.code, "cursor_ahead")
        assert.strictEqual(ahead.status, 409)
        const emptyAhead = yield* engine.pull({ scope: freshScope(), cursor: 1 }, anon).pipe(Effect.flip)
        assert.strictEqual(emptyAhead.code, "cursor_ahead")
        assert.strictEqual((yield* engine.pull({ scope: s, cursor: 10 }, anon)).changes.length, 0)

        yield* log.trim(s, 6)
        const old = yield* engine.pull({ scope: s, cursor: 5 }, anon).pipe(Effect.flip)
        assert.strictEqual(old.code, "cursor_too_old")
        assert.strictEqual(old.status, 410)
        assert.strictEqual((yield* engine.pull({ scope: s, cursor: 0 }, anon).pipe(Effect.flip)).code, "cursor_too_old")
        const fromFloor = yield* engine.pull({ scope: s, cursor: 6 }, anon)
        assert.deepStrictEqual(fromFloor.changes.map((ch) => ch.cursor), [7, 8, 9, 10])
        const snap = yield* engine.snapshot({ scope: s }, anon)
        assert.strictEqual(snap.cursor, 10)
        assert.strictEqual(Object.keys(snap.data.todo).length, 10)
      }))
  })
