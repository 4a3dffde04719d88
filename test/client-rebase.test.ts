/**
 * The client's rebase alone (src/client/internal/syncRebase.ts): pure steps
 * `state, input → state, write, events`, run here on plain values with no
 * storage, transport or clock.
 *
 * Bad input tried: a pull that does not start at the local cursor (stale),
 * a handler that rejects, answers cut by `out_of_order`, a server that lost
 * every id (renumbering over placeholders).
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import type { PendingMutation } from "../src/client/LocalView.js"
import * as PushPolicy from "../src/client/PushPolicy.js"
import * as Rebase from "../src/client/internal/syncRebase.js"
import * as Entity from "../src/sync/Entity.js"
import * as Mutation from "../src/sync/Mutation.js"

const Todo = Entity.make("todo", Schema.Struct({ title: Schema.String }))
const create = Mutation.make("todo/create", {
  args: Schema.Struct({ id: Schema.String, title: Schema.String }),
  handler: (args, tx) => args.title === "" ? Mutation.reject("empty title") : tx.put(Todo, args.id, { title: args.title })
})
const registry = Mutation.registry({ entities: [Todo], mutations: [create] })

const m = (id: number, todo: string, title = todo, scope = "s"): PendingMutation => ({ id, name: "todo/create", scope, args: { id: todo, title } })

/** A client with `pending` queued over an empty scope `s`. */
const start = (pending: ReadonlyArray<PendingMutation>) =>
  Rebase.fromStored(registry, { clientId: "c1", nextId: 1, scopes: { s: { cursor: 0, rows: {} } }, pending }, "c1")

const viewOf = (state: Rebase.State, scope = "s") => [...(state.scopes.get(scope)?.view.get("todo") ?? new Map())]

describe("client rebase", () => {
  it.effect("load: views are the confirmed rows with the pending mutations replayed, nextId after the last", () =>
    Effect.gen(function*() {
      const state = yield* start([m(1, "a"), m(2, "b", "")])
      assert.deepStrictEqual(viewOf(state), [["a", { title: "a" }]]) // the rejected one has no local effect
      assert.strictEqual(state.nextId, 3)
    }))

  it.effect("a pull confirms up to last_mutation_id: the accepted leave the queue, the unanswered become probes", () =>
    Effect.gen(function*() {
      const s0 = yield* start([m(1, "a"), m(2, "b"), m(3, "c")])
      const s1 = { ...s0, accepted: new Set([1]) }
      const step = yield* Rebase.applyPull(registry, s1, {
        scope: "s",
        from: 0,
        changes: [
          { scope: "s", cursor: 1, entity: "todo", id: "a", op: "create", data: { title: "a" }, ts: "2026-01-01T00:00:00.000Z" },
          { scope: "s", cursor: 2, entity: "todo", id: "z", op: "create", data: { title: "z" }, ts: "2026-01-01T00:00:00.000Z" }
        ],
        cursor: 2,
        lastMutationId: 2
      })
      assert(step !== undefined)
      assert.deepStrictEqual(step.state.pending.map((p) => [p.id, p.name]), [[2, PushPolicy.PROBE], [3, "todo/create"]])
      assert.deepStrictEqual(step.write?.pendingDelete, [1])
      assert.deepStrictEqual(step.write?.pendingPut?.map((p) => p.id), [2])
      assert.isFalse(step.state.accepted.has(1))
      // the view: confirmed rows (a, z) and mutation 3 on top; 2 is a probe now (its effect awaits the server's rows)
      assert.deepStrictEqual(viewOf(step.state).map(([id]) => id).sort(), ["a", "c", "z"])
      assert.deepStrictEqual(step.events.map((e) => e._tag), ["Changes"])
      const changes = step.events[0]._tag === "Changes" ? step.events[0].changes.map((c) => [c.id, c.op]) : []
      assert.deepStrictEqual(changes.sort(), [["b", "delete"], ["z", "create"]])
      assert.strictEqual(step.state.scopes.get("s")?.cursor, 2)
    }))

  it.effect("a pull that does not start at the local cursor is stale; an empty one writes nothing", () =>
    Effect.gen(function*() {
      const s0 = yield* start([])
      assert.isUndefined(yield* Rebase.applyPull(registry, s0, { scope: "s", from: 5, changes: [], cursor: 5, lastMutationId: undefined }))
      const same = yield* Rebase.applyPull(registry, s0, { scope: "s", from: 0, changes: [], cursor: 0, lastMutationId: undefined })
      assert.isUndefined(same?.write)
      assert.deepStrictEqual(same?.events, [])
    }))

  it.effect("a snapshot replaces the scope and keeps pending mutations on top: Reset, then the changes", () =>
    Effect.gen(function*() {
      const s0 = yield* start([m(4, "d")])
      const step = yield* Rebase.applySnapshot(registry, s0, "s", { cursor: 9, data: { todo: { x: { title: "x" } } }, last_mutation_id: 3 }, "cursor_too_old")
      assert.deepStrictEqual(viewOf(step.state).map(([id]) => id).sort(), ["d", "x"])
      assert.deepStrictEqual(step.events.map((e) => e._tag), ["Reset", "Changes"])
      assert.isTrue(step.write?.scopes?.[0].reset)
      assert.strictEqual(step.state.pending.length, 1)
    }))

  it.effect("a new mutation runs over the view; a rejection queues nothing", () =>
    Effect.gen(function*() {
      const s0 = yield* start([])
      const ok = yield* Rebase.applyMutate(registry, s0, m(1, "a"), { definition: create, args: { id: "a", title: "a" } })
      assert(Either.isRight(ok))
      assert.strictEqual(ok.right.state.nextId, 2)
      assert.deepStrictEqual(ok.right.write?.meta, { clientId: "c1", nextId: 2 })
      assert.deepStrictEqual(ok.right.events.map((e) => e._tag), ["Changes"])
      const no = yield* Rebase.applyMutate(registry, s0, m(1, "a", ""), { definition: create, args: { id: "a", title: "" } })
      assert(Either.isLeft(no))
      assert.strictEqual(no.left.reason, "rejected")
    }))

  it.effect("answers up to out_of_order: accepted, refused, expected; a refusal rolls back and is reported", () =>
    Effect.gen(function*() {
      const s0 = yield* start([m(1, "a"), m(2, "b"), m(3, "c")])
      const sent = s0.pending.map((p) => ({ mutation: p, wire: PushPolicy.wireOf(p) }))
      const answered = Rebase.classifyResults(s0, sent, [
        { id: 1, cursor: 1, ok: true },
        { id: 2, cursor: 1, ok: false, error: { code: "rejected", message: "no" } },
        { id: 3, cursor: 1, ok: false, error: { code: "out_of_order", message: "gap", expected: 3 } }
      ])
      assert.deepStrictEqual(answered.accepted, [1])
      assert.deepStrictEqual(answered.refused.map(([p]) => p.id), [2])
      assert.strictEqual(answered.expected, 3)
      const dropped = yield* Rebase.dropRejected(registry, Rebase.accept(s0, answered.accepted), answered.refused)
      assert.deepStrictEqual(dropped.state.pending.map((p) => p.id), [1, 3])
      assert.deepStrictEqual(viewOf(dropped.state).map(([id]) => id).sort(), ["a", "c"])
      assert.deepStrictEqual(dropped.events.map((e) => e._tag), ["Changes", "Rejected"])
      assert.isTrue(dropped.state.accepted.has(1))
    }))

  it.effect("renumbering after the server lost every id: app mutations from expected, placeholders gone, nothing accepted", () =>
    Effect.gen(function*() {
      const s0 = yield* start([m(5, "a"), PushPolicy.placeholder(m(6, "b")), m(7, "c")])
      const step = Rebase.renumber({ ...s0, accepted: new Set([5]) }, 1)
      assert.deepStrictEqual(step.state.pending.map((p) => p.id), [1, 2])
      assert.strictEqual(step.state.nextId, 3)
      assert.strictEqual(step.state.accepted.size, 0)
      assert.deepStrictEqual(step.events, [{ _tag: "Renumbered", from: 1, count: 2 }])
    }))
})
