/**
 * Reactive queries (issue #15 item 6): `watch(query)` on the Effect API (a
 * Stream) and the Promise API (a callback), against a real server. A query
 * reads across scopes and entities; it runs again only when a row it read
 * changes (counted), an equal result is not reported again, and it sees
 * optimistic changes before the server has them.
 */
import { assert, describe, layer } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { Entity } from "mizu-sync-live"
import { MizuSync, type Query, QueryError, SyncTransport } from "mizu-sync-live/client"
import { createTodo, registry, renameTodo, TodoEntity, toggleTodo } from "../examples/todo/mutations.js"
import { freshScope } from "./suites/util.js"
import { eventuallyTrue, gated, startClient } from "./support/clientHarness.js"
import { BaseUrl, layerMemoryDeps, layerServer } from "./support/TestServer.js"

const fetchTo = (baseUrl: string) => SyncTransport.makeFetch({ baseUrl })
const fast = { registry, retryInitial: "5 millis", retryMax: "50 millis" } as const

describe("watch(query)", () => {
  layer(layerServer({ registry, live: { drainPeriod: "10 millis" } }, layerMemoryDeps), { timeout: 60_000, excludeTestServices: true })("over HTTP", (it) => {
    it.scoped("runs again only when a row it read changes, does not report an equal result, and sees optimistic changes", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const one = freshScope("one")
        const two = freshScope("two")
        const release = yield* Deferred.make<void>()
        const client = yield* startClient({ ...fast, scopes: [one, two] }, gated(fetchTo(base), release))
        let runs = 0
        const results = yield* Queue.unbounded<{ readonly a: string | null; readonly open: number }>()
        // one row of `one`, the list of `two`
        const query = (tx: Query.ReadTransaction) =>
          Effect.gen(function*() {
            runs++
            const a = yield* tx.get(one, TodoEntity, "a")
            const todos = yield* tx.list(two, TodoEntity)
            return { a: Option.match(a, { onNone: () => null, onSome: (t) => t.title }), open: todos.filter(([, t]) => !t.completed).length }
          })
        yield* Effect.forkScoped(Stream.runForEach(client.watch(query), (r) => Queue.offer(results, r)))
        assert.deepStrictEqual(yield* Queue.take(results), { a: null, open: 0 })
        assert.strictEqual(runs, 1)

        // a row it did not read (another id of `one`), then one it read: one run, for the second
        yield* client.mutate(createTodo, { id: "b", title: "not read" }, { scope: one })
        yield* client.mutate(createTodo, { id: "a", title: "read" }, { scope: one })
        assert.deepStrictEqual(yield* Queue.take(results), { a: "read", open: 0 })
        assert.strictEqual(runs, 2)

        // the list it read
        yield* client.mutate(createTodo, { id: "x", title: "x" }, { scope: two })
        assert.deepStrictEqual(yield* Queue.take(results), { a: "read", open: 1 })
        assert.strictEqual(runs, 3)

        // a read row changes but the result does not: it runs, nothing is reported; the next real change is
        yield* client.mutate(toggleTodo, { id: "a" }, { scope: one })
        yield* client.mutate(createTodo, { id: "y", title: "y" }, { scope: two })
        assert.deepStrictEqual(yield* Queue.take(results), { a: "read", open: 2 })
        assert.strictEqual(runs, 5)

        // all of it optimistic: the server has none of it yet
        const serverSide = yield* Effect.orDie(fetchTo(base).snapshot({ scope: one }))
        assert.deepStrictEqual(serverSide.data, {})
        yield* Deferred.succeed(release, undefined)
        yield* client.sync

        // someone else's change arrives by a pull
        const other = yield* startClient({ ...fast, scopes: [two] }, fetchTo(base))
        yield* other.pull(two)
        yield* other.mutate(toggleTodo, { id: "x" }, { scope: two })
        yield* other.mutate(renameTodo, { id: "y", title: "renamed" }, { scope: two })
        yield* other.sync
        yield* client.pull(two)
        assert.deepStrictEqual(yield* Queue.take(results), { a: "read", open: 1 })
        // one run for the pulled batch; confirming our own mutations changed nothing it read, so no run for them
        assert.strictEqual(runs, 6)
      }))

    it.scoped("scan reads across scopes under a prefix: changes outside it do not run the query", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const team = freshScope("team")
        const [inA, inB, outside] = [`${team}:a`, `${team}:b`, freshScope("elsewhere")]
        const client = yield* startClient({ ...fast, scopes: [inA, inB, outside] }, fetchTo(base))
        let runs = 0
        const results = yield* Queue.unbounded<ReadonlyArray<string>>()
        yield* Effect.forkScoped(Stream.runForEach(
          client.watch((tx) =>
            Effect.map(Effect.sync(() => runs++), () => undefined).pipe(
              Effect.zipRight(tx.scan(TodoEntity, { scopePrefix: `${team}:` })),
              Effect.map((rows) => rows.map((r) => `${r.scope.slice(team.length + 1)}/${r.id}`))
            )
          ),
          (r) => Queue.offer(results, r)
        ))
        assert.deepStrictEqual(yield* Queue.take(results), [])
        yield* client.mutate(createTodo, { id: "z", title: "z" }, { scope: outside })
        yield* client.mutate(createTodo, { id: "2", title: "2" }, { scope: inB })
        assert.deepStrictEqual(yield* Queue.take(results), ["b/2"])
        assert.strictEqual(runs, 2)
        yield* client.mutate(createTodo, { id: "1", title: "1" }, { scope: inA })
        assert.deepStrictEqual(yield* Queue.take(results), ["a/1", "b/2"])
        yield* client.sync
        yield* client.mutate(createTodo, { id: "3", title: "3" }, { scope: inB })
        assert.deepStrictEqual(yield* Queue.take(results), ["a/1", "b/2", "b/3"])
        // the confirmations in between changed nothing it read
        assert.strictEqual(runs, 4)
      }))

    it.scoped("an entity outside the registry fails the query with EntityError (unknown_entity)", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const scope = freshScope("todos")
        const client = yield* startClient({ ...fast, scopes: [scope] }, fetchTo(base))
        const Ghost = Entity.make("ghost", Schema.Struct({ id: Schema.String }))
        const error = yield* Effect.flip(Stream.runHead(client.watch((tx) => tx.list(scope, Ghost))))
        assert.strictEqual(error._tag, "EntityError")
        assert.strictEqual(error.reason, "unknown_entity")
      }))

    it.scoped("the Promise API: watch(fn, cb) with an async query, onError, and the function that stops it", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const scope = freshScope("todos")
        const sync = yield* Effect.acquireRelease(
          Effect.promise(() => MizuSync.open({ baseUrl: base, registry, storage: "memory", scopes: [scope], retryInitial: "5 millis" })),
          (c) => Effect.promise(() => c.close())
        )
        let runs = 0
        const seen: Array<ReadonlyArray<string>> = []
        const stop = sync.watch(async (tx) => {
          runs++
          await Promise.resolve()
          return tx.list(scope, TodoEntity).filter(([, t]) => !t.completed).map(([id]) => id)
        }, (ids) => seen.push(ids))
        yield* eventuallyTrue("the first result", Effect.sync(() => seen.length === 1))
        assert.deepStrictEqual(seen, [[]])
        yield* Effect.promise(() => sync.mutate(createTodo, { id: "a", title: "a" }, { scope }))
        yield* Effect.promise(() => sync.mutate(createTodo, { id: "b", title: "b" }, { scope }))
        yield* eventuallyTrue("both open", Effect.sync(() => seen.at(-1)?.length === 2))
        const reported = seen.length
        const ran = runs
        yield* Effect.promise(() => sync.mutate(renameTodo, { id: "a", title: "same openness" }, { scope }))
        yield* Effect.promise(() => sync.mutate(toggleTodo, { id: "b" }, { scope }))
        yield* eventuallyTrue("b done", Effect.sync(() => JSON.stringify(seen.at(-1)) === JSON.stringify(["a"])))
        // the rename ran the query, but its result was the same: not reported
        assert.strictEqual(runs, ran + 2)
        assert.strictEqual(seen.length, reported + 1)
        const before = runs
        stop()
        yield* Effect.promise(() => sync.mutate(toggleTodo, { id: "a" }, { scope }))
        yield* Effect.promise(() => sync.sync())
        assert.strictEqual(runs, before)

        const errors: Array<unknown> = []
        const Ghost = Entity.make("ghost", Schema.Struct({ id: Schema.String }))
        const stopGhost = sync.watch((tx) => tx.list(scope, Ghost).length, () => undefined, { onError: (e) => errors.push(e) })
        yield* eventuallyTrue("the error reported", Effect.sync(() => errors.length === 1))
        assert.instanceOf(errors[0], QueryError)
        assert.strictEqual(errors[0] instanceof QueryError ? errors[0].reason : "", "unknown_entity")
        stopGhost()
      }))
  })
})
