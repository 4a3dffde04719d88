/**
 * `Transaction.make` over a backend with and without its synchronous view
 * (`Backend.sync`): the same script of reads and writes gives the same
 * values, changes and errors both ways; a view that throws fails the
 * operation (a `StorageError`) or is a defect (anything else); an entity
 * whose Schema decodes asynchronously goes through the Effects. And the SQL store's
 * view (`Store.syncIn`): there only inside a transaction on SqlStorage's
 * SQLite connection, its writes rolled back with it.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Entity from "../src/sync/Entity.js"
import * as Mutation from "../src/sync/Mutation.js"
import * as SqlStorage from "../src/sync/sql/SqlStorage.js"
import { StorageError } from "../src/sync/StorageError.js"
import { Store } from "../src/sync/Store.js"
import { SyncStorage } from "../src/sync/SyncStorage.js"
import * as Transaction from "../src/sync/Transaction.js"

const Todo = Schema.Struct({ title: Schema.String, done: Schema.Boolean })
const TodoEntity = Entity.make("todo", Todo)
const Other = Entity.make("other", Schema.String)
/** A Schema that only decodes and encodes asynchronously (its check sleeps). */
const Slow = Schema.String.pipe(Schema.filterEffect((s) => Effect.as(Effect.sleep(1), s.length > 0)))
const SlowEntity = Entity.make("slow", Slow)
const registry = Mutation.registry({ entities: [TodoEntity, SlowEntity], mutations: [] })

/** Rows in a map, served as Effects and, with `sync`, as plain calls too; counting the plain calls. */
const backendOver = (rows: Map<string, unknown>, options: { readonly sync: boolean; readonly failPut?: unknown }) => {
  const calls = { sync: 0 }
  const view: Transaction.SyncBackend = {
    get: (entity, id) => {
      calls.sync++
      const key = `${entity}/${id}`
      return rows.has(key) ? Option.some(rows.get(key)) : Option.none()
    },
    put: (entity, id, data) => {
      calls.sync++
      if (options.failPut !== undefined) throw options.failPut
      rows.set(`${entity}/${id}`, data)
    },
    delete: (entity, id) => {
      calls.sync++
      return rows.delete(`${entity}/${id}`)
    }
  }
  const backend: Transaction.Backend = {
    get: (entity, id) => Effect.sync(() => {
      const key = `${entity}/${id}`
      return rows.has(key) ? Option.some(rows.get(key)) : Option.none()
    }),
    list: (entity) => Effect.sync(() => [...rows].filter(([k]) => k.startsWith(`${entity}/`)).map(([k, v]) => [k.slice(entity.length + 1), v] as const)),
    put: (entity, id, data) =>
      options.failPut !== undefined
        ? Effect.fail(options.failPut as StorageError)
        : Effect.sync(() => void rows.set(`${entity}/${id}`, data)),
    delete: (entity, id) => Effect.sync(() => rows.delete(`${entity}/${id}`)),
    sync: options.sync ? () => view : undefined
  }
  return { backend, calls }
}

/** Reads and writes of every kind, and the errors of a refused entity and id, as plain data. */
const script = (tx: Transaction.Transaction) =>
  Effect.gen(function*() {
    const missing = yield* tx.get(TodoEntity, "a")
    yield* tx.put(TodoEntity, "a", { title: "one", done: false })
    yield* tx.put(TodoEntity, "a", { title: "two", done: true })
    const found = yield* tx.get(TodoEntity, "a")
    yield* tx.put(TodoEntity, "b", { title: "bee", done: false })
    yield* tx.delete(TodoEntity, "b")
    yield* tx.delete(TodoEntity, "never")
    const stored = yield* tx.get(TodoEntity, "old")
    const unknown = yield* Effect.flip(tx.put(Other, "x", "v"))
    const badId = yield* Effect.flip(tx.get(TodoEntity, "nul\u0000id"))
    const badValue = yield* Effect.flip(tx.put(TodoEntity, "c", { title: 1 } as never))
    return {
      missing,
      found,
      stored,
      unknown: [unknown._tag, unknown._tag === "EntityError" ? unknown.reason : ""],
      badId: [badId._tag, badId._tag === "EntityError" ? badId.reason : ""],
      badValue: [badValue._tag, badValue._tag === "EntityError" ? badValue.reason : "", badValue.message]
    }
  })

const run = (sync: boolean) =>
  Effect.gen(function*() {
    const rows = new Map<string, unknown>([["todo/old", { title: "stored", done: true }]])
    const { backend, calls } = backendOver(rows, { sync })
    const { changes, tx } = Transaction.make(registry, "s", backend)
    const result = yield* script(tx)
    return { result, changes: [...changes], rows: [...rows], calls: calls.sync }
  })

describe("Transaction over a synchronous backend view", () => {
  it.effect("the same values, changes, rows and errors as through the Effects; the view is what is used", () =>
    Effect.gen(function*() {
      const viaEffects = yield* run(false)
      const viaView = yield* run(true)
      assert.deepStrictEqual(viaView.result, viaEffects.result)
      assert.deepStrictEqual(viaView.changes, viaEffects.changes)
      assert.deepStrictEqual(viaView.rows, viaEffects.rows)
      assert.deepStrictEqual(viaView.changes.map((c) => [c.id, c.op]), [["a", "create"], ["a", "update"], ["b", "create"], ["b", "delete"]])
      assert.isTrue(Option.isSome(viaView.result.stored))
      assert.deepStrictEqual(viaView.result.unknown, ["EntityError", "unknown_entity"])
      assert.deepStrictEqual(viaView.result.badId, ["EntityError", "invalid_id"])
      assert.strictEqual(viaView.result.badValue[1], "encode")
      assert.strictEqual(viaEffects.calls, 0)
      // get a, put a (its row known from the get: no read), put a, get a, put b (a read), delete b, delete never (a read), get old
      assert.strictEqual(viaView.calls, 10)
    }))

  it.effect("a StorageError thrown by the view fails the write and records no change; anything else is a defect", () =>
    Effect.gen(function*() {
      const outage = new StorageError({ reason: "unavailable", message: "disk gone" })
      const failing = backendOver(new Map(), { sync: true, failPut: outage })
      const made = Transaction.make(registry, "s", failing.backend)
      const failed = yield* Effect.exit(made.tx.put(TodoEntity, "a", { title: "t", done: false }))
      assert.deepStrictEqual(failed, Exit.fail(outage))
      assert.strictEqual(made.changes.length, 0)

      const bug = new Error("driver bug")
      const broken = backendOver(new Map(), { sync: true, failPut: bug })
      const exit = yield* Effect.exit(Transaction.make(registry, "s", broken.backend).tx.put(TodoEntity, "a", { title: "t", done: false }))
      assert.isTrue(Exit.isFailure(exit) && exit.cause._tag === "Die" && exit.cause.defect === bug)
    }))

  it.live("an entity whose Schema decodes asynchronously is read through the Effects", () =>
    Effect.gen(function*() {
      const rows = new Map<string, unknown>()
      const { backend } = backendOver(rows, { sync: true })
      const { changes, tx } = Transaction.make(registry, "s", backend)
      yield* tx.put(SlowEntity, "k", "value")
      assert.deepStrictEqual(yield* tx.get(SlowEntity, "k"), Option.some("value"))
      // the check runs when decoding only: "" is written, and refused when read
      yield* tx.put(SlowEntity, "e", "")
      const refused = yield* Effect.flip(tx.get(SlowEntity, "e"))
      assert.strictEqual(refused._tag === "EntityError" ? refused.reason : refused._tag, "decode")
      assert.deepStrictEqual(changes.map((c) => [c.id, c.op, c.data]), [["k", "create", "value"], ["e", "create", ""]])
      assert.deepStrictEqual([...rows], [["slow/k", "value"], ["slow/e", ""]])
    }))
})

describe("the SQL store's synchronous view (SQLite)", () => {
  it.effect("there only inside a transaction; its writes are the transaction's and roll back with it", () =>
    Effect.gen(function*() {
      const store = yield* Store
      const storage = yield* SyncStorage
      const viewHere = Effect.contextWith((context: Context.Context<never>) => store.syncIn?.(context))
      const view = Effect.flatMap(viewHere, (found) => found === undefined ? Effect.dieMessage("no view in a transaction") : Effect.succeed(found))
      assert.isUndefined(yield* viewHere)
      const inside = yield* storage.transaction(Effect.gen(function*() {
        const here = yield* view
        here.put("s", "todo", "a", { title: "kept" })
        here.put("s", "todo", "b", { title: "gone" })
        assert.isTrue(here.delete("s", "todo", "b"))
        return here.get("s", "todo", "a")
      }))
      assert.deepStrictEqual(inside, Option.some({ title: "kept" }))
      assert.deepStrictEqual(yield* store.get("s", "todo", "a"), Option.some({ title: "kept" }))
      const rolledBack = yield* Effect.exit(storage.transaction(Effect.gen(function*() {
        ;(yield* view).put("s", "todo", "c", { title: "rolled back" })
        return yield* Effect.fail("abort")
      })))
      assert.isTrue(Exit.isFailure(rolledBack))
      assert.deepStrictEqual(yield* store.get("s", "todo", "c"), Option.none())
    }).pipe(Effect.provide(SqlStorage.layerSqlite({ filename: ":memory:" }))))
})
