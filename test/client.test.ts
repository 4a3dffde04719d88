/**
 * SyncClient against a real sync server on a free port: optimistic apply,
 * persistence across restarts, rejection and rollback, duplicated answers,
 * the server losing the client's state, and resets after a trim.
 */
import { assert, describe, it, layer } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Stream from "effect/Stream"
import { ChangeLog } from "mizu-sync-live"
import { type SyncClient, SyncTransport } from "mizu-sync-live/client"
import { FileStorage } from "mizu-sync-live/client/node"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { createTodo, deleteTodo, registry, renameTodo, TodoEntity, toggleTodo } from "../examples/todo/mutations.js"
import { freshScope } from "./suites/util.js"
import { eventually, eventuallyTrue, gated, startClient, startStoppable, switchable, takeUntil, unplugged } from "./support/clientHarness.js"
import { BaseUrl, layerMemoryDeps, layerServer } from "./support/TestServer.js"

const fetchTo = (baseUrl: string) => SyncTransport.makeFetch({ baseUrl })

/** The server's snapshot of a scope, through the client transport. */
const serverView = (baseUrl: string, scope: string) => Effect.map(Effect.orDie(fetchTo(baseUrl).snapshot({ scope })), (s) => s.data)

const fast: SyncClient.Options = { registry, retryInitial: "5 millis", retryMax: "50 millis" }

const tempDir = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "mizu-client-"))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

describe("SyncClient", () => {
  layer(layerServer({ registry, live: { drainPeriod: "10 millis" } }, layerMemoryDeps), { timeout: 60_000, excludeTestServices: true })("over HTTP", (it) => {
    it.scoped("applies a mutation to the local view before the push returns", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const scope = freshScope("todos")
        const release = yield* Deferred.make<void>()
        const client = yield* startClient({ ...fast, scopes: [scope] }, gated(fetchTo(base), release))
        const events = yield* client.subscribeEvents
        const m = yield* client.mutate(createTodo, { id: "a", title: "milk" }, { scope })
        assert.strictEqual(m.id, 1)
        // visible now, while the push is held back
        assert.deepStrictEqual(Option.getOrThrow(yield* client.get(scope, TodoEntity, "a")), { id: "a", title: "milk", completed: false })
        assert.strictEqual((yield* client.status).pending, 1)
        const changes = yield* takeUntil(events, (e) => e._tag === "Changes")
        assert.deepStrictEqual(changes, {
          _tag: "Changes",
          source: "mutate",
          changes: [{ scope, entity: "todo", id: "a", op: "create", data: { id: "a", title: "milk", completed: false } }]
        })
        assert.deepStrictEqual(yield* serverView(base, scope), {})
        yield* Deferred.succeed(release, undefined)
        yield* client.sync
        assert.strictEqual((yield* client.pending).length, 0)
        assert.deepStrictEqual(yield* client.view(scope), yield* serverView(base, scope))
        assert.deepStrictEqual(yield* serverView(base, scope), { todo: { a: { id: "a", title: "milk", completed: false } } })
      }))

    it.scoped("validates args with the mutation's Schema and refuses local rejections without queuing", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const scope = freshScope("todos")
        const client = yield* startClient(fast, fetchTo(base))
        const bad = yield* Effect.flip(client.mutate("todo/create", { id: "", title: 3 }, { scope }))
        assert.strictEqual(bad.reason, "invalid_args")
        const unknown = yield* Effect.flip(client.mutate("todo/nope", {}, { scope }))
        assert.strictEqual(unknown.reason, "unknown_mutation")
        const missing = yield* Effect.flip(client.mutate(toggleTodo, { id: "ghost" }, { scope }))
        assert.strictEqual(missing.reason, "rejected")
        const badScope = yield* Effect.flip(client.mutate(createTodo, { id: "a", title: "a" }, { scope: "has space" }))
        assert.strictEqual(badScope.reason, "invalid_scope")
        assert.strictEqual((yield* client.pending).length, 0)
        // ids are not consumed by refused calls
        assert.strictEqual((yield* client.mutate("todo/create", { id: "a", title: "a" }, { scope })).id, 1)
      }))

    it.scoped("pending mutations survive a restart (file storage) and are pushed after it", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const dir = yield* tempDir
        const scope = freshScope("todos")
        const down = { value: true }
        const transport = unplugged(fetchTo(base), down)
        const storage = FileStorage.layer({ directory: dir })

        const first = yield* startStoppable({ ...fast, scopes: [scope] }, transport, storage)
        const clientId = first.client.clientId
        yield* first.client.mutate(createTodo, { id: "a", title: "one" }, { scope })
        yield* first.client.mutate(createTodo, { id: "b", title: "two" }, { scope })
        yield* first.client.mutate(toggleTodo, { id: "a" }, { scope })
        const before = yield* first.client.view(scope)
        yield* first.stop
        assert.deepStrictEqual(yield* serverView(base, scope), {})

        // back, online: same id, same queue, same view before anything is pushed
        down.value = false
        const second = yield* startStoppable({ ...fast }, transport, storage)
        assert.strictEqual(second.client.clientId, clientId)
        assert.deepStrictEqual((yield* second.client.pending).map((m) => m.id), [1, 2, 3])
        assert.deepStrictEqual(yield* second.client.view(scope), before)
        yield* second.client.sync
        assert.deepStrictEqual(yield* serverView(base, scope), {
          todo: { a: { id: "a", title: "one", completed: true }, b: { id: "b", title: "two", completed: false } }
        })
        assert.deepStrictEqual(yield* second.client.view(scope), yield* serverView(base, scope))
        const m = yield* second.client.mutate(deleteTodo, { id: "b" }, { scope })
        assert.strictEqual(m.id, 4)
        yield* second.client.sync
        yield* second.stop

        // a third start finds the confirmed state and cursor on disk, nothing pending
        const third = yield* startStoppable({ ...fast }, unplugged(fetchTo(base), { value: true }), storage)
        assert.deepStrictEqual(yield* third.client.pending, [])
        assert.deepStrictEqual(yield* third.client.view(scope), yield* serverView(base, scope))
        assert.isAbove(yield* third.client.cursor(scope), 0)
        yield* third.stop
      }))

    it.scoped("a rejected mutation is dropped, rolled back and reported", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const scope = freshScope("todos")
        const alice = yield* startClient({ ...fast, scopes: [scope] }, fetchTo(base))
        const bob = yield* startClient({ ...fast, scopes: [scope] }, fetchTo(base))
        yield* alice.mutate(createTodo, { id: "a", title: "shared" }, { scope })
        yield* alice.sync
        yield* bob.sync
        assert.isTrue(Option.isSome(yield* bob.get(scope, TodoEntity, "a")))
        yield* alice.mutate(deleteTodo, { id: "a" }, { scope })
        yield* alice.sync
        // bob has not pulled: he renames the todo alice deleted
        const events = yield* bob.subscribeEvents
        const m = yield* bob.mutate(renameTodo, { id: "a", title: "renamed" }, { scope })
        assert.strictEqual(Option.getOrThrow(yield* bob.get(scope, TodoEntity, "a")).title, "renamed")
        yield* bob.sync
        const rejected = yield* takeUntil(events, (e) => e._tag === "Rejected")
        assert.deepStrictEqual(rejected, { _tag: "Rejected", mutation: m, code: "rejected", message: "todo a not found" })
        assert.isTrue(Option.isNone(yield* bob.get(scope, TodoEntity, "a")))
        assert.deepStrictEqual(yield* bob.pending, [])
        assert.deepStrictEqual(yield* bob.view(scope), yield* serverView(base, scope))
      }))

    it.scoped("the optimistic effect of a rejected mutation is rolled back even when the server state never changed", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const scope = freshScope("todos")
        const alice = yield* startClient({ ...fast, scopes: [scope] }, fetchTo(base))
        const bob = yield* startClient({ ...fast, scopes: [scope] }, fetchTo(base))
        // both create the same id offline-ish: bob's create comes second and is rejected
        const bobEvents = yield* bob.subscribeEvents
        yield* alice.mutate(createTodo, { id: "x", title: "alice's" }, { scope })
        yield* bob.mutate(createTodo, { id: "x", title: "bob's" }, { scope })
        yield* alice.sync
        yield* bob.sync
        const rejected = yield* takeUntil(bobEvents, (e) => e._tag === "Rejected")
        assert.strictEqual(rejected._tag === "Rejected" ? rejected.code : "", "rejected")
        const rollback = yield* takeUntil(bobEvents, (e) => e._tag === "Changes" && e.source !== "mutate")
        assert.isTrue(rollback._tag === "Changes")
        assert.strictEqual(Option.getOrThrow(yield* bob.get(scope, TodoEntity, "x")).title, "alice's")
        assert.deepStrictEqual(yield* bob.view(scope), yield* serverView(base, scope))
      }))

    it.scoped("duplicated requests and lost responses apply each mutation exactly once", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const scope = freshScope("todos")
        const real = fetchTo(base)
        let pushes = 0
        // every push reaches the server twice; every other response is lost after the server handled it
        const doubled = SyncTransport.SyncTransport.of({
          ...real,
          push: (r) =>
            Effect.gen(function*() {
              pushes++
              yield* real.push(r)
              const second = yield* real.push(r)
              if (pushes % 2 === 1) return yield* new SyncTransport.TransportError({ reason: "network", message: "lost" })
              return second
            })
        })
        const client = yield* startClient({ ...fast, scopes: [scope], pushBatchSize: 2 }, doubled)
        yield* client.mutate(createTodo, { id: "t", title: "t" }, { scope })
        yield* client.mutate(toggleTodo, { id: "t" }, { scope })
        yield* client.mutate(toggleTodo, { id: "t" }, { scope })
        yield* client.mutate(toggleTodo, { id: "t" }, { scope })
        yield* client.mutate(createTodo, { id: "u", title: "u" }, { scope })
        yield* eventuallyTrue("settled", Effect.map(client.pending, (p) => p.length === 0))
        // a mutation confirmed by a pull before its (lost) answer came is asked about again: that push may be lost too
        yield* eventually(client.sync)
        // three toggles: completed once flipped three times
        assert.deepStrictEqual(yield* serverView(base, scope), {
          todo: { t: { id: "t", title: "t", completed: true }, u: { id: "u", title: "u", completed: false } }
        })
        assert.deepStrictEqual(yield* client.view(scope), yield* serverView(base, scope))
        // the log holds each effect once: 1 create + 3 updates + 1 create
        assert.strictEqual(yield* client.cursor(scope), 5)
      }))

    it.scoped("cursor_too_old after a trim resets the scope from a snapshot and keeps pending mutations", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const log = yield* ChangeLog.ChangeLog
        const scope = freshScope("todos")
        const other = yield* startClient({ ...fast, scopes: [scope] }, fetchTo(base))
        const down = { value: false }
        const release = yield* Deferred.make<void>()
        const client = yield* startClient({ ...fast, scopes: [scope] }, gated(unplugged(fetchTo(base), down), release))
        yield* other.mutate(createTodo, { id: "a", title: "a" }, { scope })
        yield* other.sync
        yield* client.pull(scope)
        assert.strictEqual(yield* client.cursor(scope), 1)
        // offline (and its pushes held back), the client edits; meanwhile the log moves on and is trimmed past its cursor
        down.value = true
        yield* client.mutate(renameTodo, { id: "a", title: "mine" }, { scope })
        yield* client.mutate(createTodo, { id: "c", title: "c" }, { scope })
        for (const id of ["b", "d", "e"]) yield* other.mutate(createTodo, { id, title: id }, { scope })
        yield* other.mutate(toggleTodo, { id: "a" }, { scope })
        yield* other.sync
        const head = yield* log.head(scope)
        yield* log.trim(scope, head)
        const events = yield* client.subscribeEvents
        down.value = false
        yield* client.pull(scope)
        const reset = yield* takeUntil(events, (e) => e._tag === "Reset")
        assert.deepStrictEqual(reset, { _tag: "Reset", scope, reason: "cursor_too_old" })
        assert.strictEqual(yield* client.cursor(scope), head)
        // the snapshot plus the two pending mutations replayed on top
        assert.deepStrictEqual((yield* client.pending).map((m) => m.name), ["todo/rename", "todo/create"])
        assert.deepStrictEqual(Option.getOrThrow(yield* client.get(scope, TodoEntity, "a")), { id: "a", title: "mine", completed: true })
        assert.isTrue(Option.isSome(yield* client.get(scope, TodoEntity, "c")))
        // (pushes were held back so far)
        yield* Deferred.succeed(release, undefined)
        yield* client.sync
        assert.deepStrictEqual(yield* client.view(scope), yield* serverView(base, scope))
        assert.deepStrictEqual(Object.keys((yield* serverView(base, scope)).todo ?? {}).sort(), ["a", "b", "c", "d", "e"])
      }))

    it.scoped("watch fires once per committed batch, with the entity's rows", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const scope = freshScope("todos")
        const other = yield* startClient({ ...fast, scopes: [scope] }, fetchTo(base))
        const client = yield* startClient({ ...fast, scopes: [scope] }, fetchTo(base))
        yield* client.sync
        const seen = yield* Queue.unbounded<ReadonlyArray<string>>()
        yield* Effect.forkScoped(Stream.runForEach(client.watch(scope, TodoEntity), (rows) => Queue.offer(seen, rows.map(([id]) => id))))
        assert.deepStrictEqual(yield* Queue.take(seen), [])
        yield* client.mutate(createTodo, { id: "a", title: "a" }, { scope })
        assert.deepStrictEqual(yield* Queue.take(seen), ["a"])
        // three changes by someone else arrive in one pull: one notification
        for (const id of ["b", "c", "d"]) yield* other.mutate(createTodo, { id, title: id }, { scope })
        yield* other.sync
        yield* client.sync
        assert.deepStrictEqual(yield* Queue.take(seen), ["a", "b", "c", "d"])
        // confirming our own mutation changes nothing visible: no notification
        assert.strictEqual(yield* Queue.size(seen), 0)
        const status = yield* client.status
        assert.strictEqual(status.pending, 0)
        assert.isTrue(status.online)
        assert.isDefined(status.lastPullAt)
      }))
  })

  describe("when the server loses the client's state", () => {
    it.scopedLive("cursor_ahead (the server lost data) resets the scope from a snapshot, keeping pending mutations", () =>
      Effect.gen(function*() {
        const serverA = yield* Layer.build(layerServer({ registry, live: { drainPeriod: "10 millis" } }, Layer.fresh(layerMemoryDeps)))
        const serverB = yield* Layer.build(layerServer({ registry, live: { drainPeriod: "10 millis" } }, Layer.fresh(layerMemoryDeps)))
        const baseA = Context.get(serverA, BaseUrl)
        const baseB = Context.get(serverB, BaseUrl)
        const scope = freshScope("todos")
        for (const id of ["a", "b", "c"]) yield* Effect.orDie(fetchTo(baseA).push({ mutations: [{ name: "todo/create", scope, args: { id, title: id } }] }))
        yield* Effect.orDie(fetchTo(baseB).push({ mutations: [{ name: "todo/create", scope, args: { id: "z", title: "z" } }] }))
        const route = switchable(fetchTo(baseA))
        const release = yield* Deferred.make<void>()
        const client = yield* startClient({ ...fast, scopes: [scope] }, gated(route.transport, release))
        yield* client.pull(scope)
        assert.strictEqual(yield* client.cursor(scope), 3)
        // an edit whose push is held back; meanwhile the server comes back without the data
        yield* client.mutate(renameTodo, { id: "a", title: "offline edit" }, { scope })
        route.set(fetchTo(baseB))
        const events = yield* client.subscribeEvents
        yield* client.pull(scope)
        assert.deepStrictEqual(yield* takeUntil(events, (e) => e._tag === "Reset"), { _tag: "Reset", scope, reason: "cursor_ahead" })
        assert.strictEqual(yield* client.cursor(scope), 1)
        assert.deepStrictEqual((yield* client.pending).map((m) => m.name), ["todo/rename"])
        // the pending rename no longer applies (no todo a here): the view is the snapshot
        assert.deepStrictEqual(yield* client.view(scope), { todo: { z: { id: "z", title: "z", completed: false } } })
        // and the server has the last word: rejected, dropped, reported
        yield* Deferred.succeed(release, undefined)
        yield* client.sync
        const rejected = yield* takeUntil(events, (e) => e._tag === "Rejected")
        assert.strictEqual(rejected._tag === "Rejected" ? rejected.mutation.name : "", "todo/rename")
        assert.deepStrictEqual(yield* client.view(scope), yield* serverView(baseB, scope))
      }))

    it.scopedLive("out_of_order at an acknowledged id: the server is behind what it said, so the queue is sent again from there", () =>
      Effect.gen(function*() {
        const serverA = yield* Layer.build(layerServer({ registry, live: { drainPeriod: "10 millis" } }, Layer.fresh(layerMemoryDeps)))
        const serverB = yield* Layer.build(layerServer({ registry, live: { drainPeriod: "10 millis" } }, Layer.fresh(layerMemoryDeps)))
        const baseA = Context.get(serverA, BaseUrl)
        const baseB = Context.get(serverB, BaseUrl)
        const scope = freshScope("todos")
        const route = switchable(fetchTo(baseA))
        // pulls are held off, so the acknowledged mutation stays pending (not yet confirmed)
        const noPulls = { value: true }
        const transport = SyncTransport.SyncTransport.of({
          ...route.transport,
          pull: (r) => noPulls.value ? Effect.fail(new SyncTransport.TransportError({ reason: "network", message: "held" })) : route.transport.pull(r),
          snapshot: (r) => noPulls.value ? Effect.fail(new SyncTransport.TransportError({ reason: "network", message: "held" })) : route.transport.snapshot(r)
        })
        const client = yield* startClient({ ...fast, scopes: [scope] }, transport)
        yield* client.mutate(createTodo, { id: "a", title: "a" }, { scope })
        yield* client.push
        assert.deepStrictEqual((yield* client.pending).map((m) => m.id), [1])
        // the server is restored to just before mutation 1; the client queues mutation 2
        route.set(fetchTo(baseB))
        yield* client.mutate(toggleTodo, { id: "a" }, { scope })
        const events = yield* client.subscribeEvents
        yield* client.push
        noPulls.value = false
        yield* client.sync
        assert.deepStrictEqual(yield* serverView(baseB, scope), { todo: { a: { id: "a", title: "a", completed: true } } })
        assert.deepStrictEqual(yield* client.view(scope), yield* serverView(baseB, scope))
        // no renumbering was needed: ids go on
        assert.strictEqual((yield* client.mutate(toggleTodo, { id: "a" }, { scope })).id, 3)
        assert.isFalse([...(yield* Queue.takeAll(events))].some((e) => e._tag === "Renumbered"))
      }))


    it.scopedLive("out_of_order below the first pending id renumbers the queue and resets every scope", () =>
        Effect.gen(function*() {
          const serverA = yield* Layer.build(layerServer({ registry, live: { drainPeriod: "10 millis" } }, Layer.fresh(layerMemoryDeps)))
          const serverB = yield* Layer.build(layerServer({ registry, live: { drainPeriod: "10 millis" } }, Layer.fresh(layerMemoryDeps)))
          const baseA = Context.get(serverA, BaseUrl)
          const baseB = Context.get(serverB, BaseUrl)
          const scope = freshScope("todos")
          const route = switchable(fetchTo(baseA))
          const down = { value: false }
          const client = yield* startClient({ ...fast, scopes: [scope] }, unplugged(route.transport, down))
          yield* client.mutate(createTodo, { id: "a", title: "a" }, { scope })
          yield* client.mutate(createTodo, { id: "b", title: "b" }, { scope })
          yield* client.mutate(toggleTodo, { id: "a" }, { scope })
          yield* client.sync
          assert.strictEqual(yield* client.cursor(scope), 3)
          // offline, two more; then the server comes back from an empty backup
          down.value = true
          yield* client.mutate(createTodo, { id: "c", title: "c" }, { scope })
          yield* client.mutate(renameTodo, { id: "b", title: "bee" }, { scope })
          assert.deepStrictEqual((yield* client.pending).map((m) => m.id), [4, 5])
          // someone else already wrote to the restored server
          const other = yield* startClient({ ...fast, scopes: [scope] }, fetchTo(baseB))
          yield* other.mutate(createTodo, { id: "b", title: "theirs" }, { scope })
          yield* other.sync
          const events = yield* client.subscribeEvents
          route.set(fetchTo(baseB))
          down.value = false
          yield* client.sync
          const renumbered = yield* takeUntil(events, (e) => e._tag === "Renumbered")
          assert.deepStrictEqual(renumbered, { _tag: "Renumbered", from: 1, count: 2 })
          const reset = yield* takeUntil(events, (e) => e._tag === "Reset")
          assert.deepStrictEqual(reset, { _tag: "Reset", scope, reason: "server_lost_state" })
          assert.deepStrictEqual(yield* client.pending, [])
          // the restored server now has: theirs b, our c (our rename of b applies to theirs)
          assert.deepStrictEqual(yield* serverView(baseB, scope), {
            todo: { b: { id: "b", title: "bee", completed: false }, c: { id: "c", title: "c", completed: false } }
          })
          assert.deepStrictEqual(yield* client.view(scope), yield* serverView(baseB, scope))
          // and the ids go on from the renumbered queue
          assert.strictEqual((yield* client.mutate(deleteTodo, { id: "c" }, { scope })).id, 3)
          yield* client.sync
          assert.deepStrictEqual(yield* client.view(scope), yield* serverView(baseB, scope))
        }))
  })
})
