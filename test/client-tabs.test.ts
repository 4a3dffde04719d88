/**
 * Sync clients in several tabs of one browser profile, simulated in one
 * process: each "tab" is a `SyncClient` over its own `TabGroup.layerMemory`
 * of one hub, all over one shared memory store (`ClientStorage.layerMemoryRef`),
 * against a real server on a free port. (test/client-tabs-browser.test.ts is
 * the same in Chromium, with IndexedDB, Web Locks and BroadcastChannel.)
 *
 * Shown: one client id and unique mutation ids for the store; a follower's
 * mutation in the leader's view (and the other way) while offline; only the
 * leader talks to the server (the followers' transports see no request);
 * closing the leader mid-push hands its queue to the next tab, and every
 * mutation reaches the server exactly once.
 *
 * Bad input tried: messages on the tabs' channel that are not the protocol
 * (a string, null, an unknown tag, a Request with a bad op, a Committed with
 * a string revision, a Reply for nobody): ignored, the tabs keep working.
 */
import { assert, describe, layer } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import * as Ref from "effect/Ref"
import * as Scope from "effect/Scope"
import { ClientStorage, SyncClient, SyncTransport, TabGroup } from "mizu-sync-live/client"
import { createTodo, registry, TodoEntity } from "../examples/todo/mutations.js"
import { freshScope } from "./suites/util.js"
import { eventuallyTrue, unplugged } from "./support/clientHarness.js"
import { BaseUrl, layerMemoryDeps, layerServer } from "./support/TestServer.js"

type Transport = SyncTransport.SyncTransport["Type"]

const fast: SyncClient.Options = { registry, retryInitial: "5 millis", retryMax: "50 millis" }

/** What went through one tab's transport, and what the server said of each pushed mutation. */
interface Seen {
  requests: number
  /** `id` → how many times the server processed it (a result that is not a duplicate). */
  readonly processed: Map<number, number>
}

const counting = (inner: Transport, seen: Seen): Transport =>
  SyncTransport.SyncTransport.of({
    push: (r) =>
      Effect.tap(Effect.suspend(() => (seen.requests++, inner.push(r))), (response) =>
        Effect.sync(() =>
          response.results.forEach((result, i) => {
            const id = r.mutations[i]?.id
            if (id !== undefined && result.ok && result.duplicate !== true) seen.processed.set(id, (seen.processed.get(id) ?? 0) + 1)
          })
        )),
    pull: (r) => Effect.suspend(() => (seen.requests++, inner.pull(r))),
    snapshot: (r) => Effect.suspend(() => (seen.requests++, inner.snapshot(r)))
  })

/** Pushes reach the server, and the answer never comes back (the tab dies before it). */
const answerLost = (inner: Transport): Transport => SyncTransport.SyncTransport.of({ ...inner, push: (r) => Effect.zipRight(inner.push(r), Effect.never) })

const newSeen = (): Seen => ({ requests: 0, processed: new Map() })

/** One tab: a sync client over the shared store and the hub, in its own scope (closing it is closing the tab). */
const openTab = (
  hub: TabGroup.Hub,
  store: Ref.Ref<ClientStorage.StoredState>,
  transport: Transport,
  options: SyncClient.Options = fast
) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const tabs = TabGroup.layerMemory(hub)
    const context = yield* Layer.buildWithScope(
      Layer.merge(
        SyncClient.layer(options).pipe(
          Layer.provide(Layer.mergeAll(Layer.succeed(SyncTransport.SyncTransport, transport), ClientStorage.layerMemoryRef(store), tabs))
        ),
        tabs
      ),
      scope
    )
    return { client: Context.get(context, SyncClient.SyncClient), group: Context.get(context, TabGroup.TabGroup), close: Scope.close(scope, Exit.void) }
  })

const newStore = Ref.make(ClientStorage.emptyState)

const todo = (id: string, title: string) => ({ id, title, completed: false })

describe("SyncClient in several tabs (memory TabGroup)", () => {
  layer(layerServer({ registry, live: { drainPeriod: "10 millis" } }, layerMemoryDeps), { timeout: 60_000, excludeTestServices: true })("over HTTP", (it) => {
    it.scoped("one client id, unique mutation ids, each tab's offline mutations in the other's view; only the leader talks to the server", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const scope = freshScope("todos")
        const hub = yield* TabGroup.makeHub
        const store = yield* newStore
        const down = { value: true }
        const seenA = newSeen()
        const seenB = newSeen()
        const a = yield* openTab(hub, store, counting(unplugged(SyncTransport.makeFetch({ baseUrl: base }), down), seenA))
        const b = yield* openTab(hub, store, counting(unplugged(SyncTransport.makeFetch({ baseUrl: base }), down), seenB))
        yield* a.group.whenLeader
        assert.isTrue(yield* a.group.isLeader)
        assert.isFalse(yield* b.group.isLeader)
        assert.strictEqual(b.client.clientId, a.client.clientId)

        // offline: a mutation in the follower shows in the leader's view, and the other way
        const m1 = yield* b.client.mutate(createTodo, { id: "b1", title: "from b" }, { scope })
        yield* eventuallyTrue("b's todo in a's view", Effect.map(a.client.get(scope, TodoEntity, "b1"), Option.isSome))
        const m2 = yield* a.client.mutate(createTodo, { id: "a1", title: "from a" }, { scope })
        yield* eventuallyTrue("a's todo in b's view", Effect.map(b.client.get(scope, TodoEntity, "a1"), Option.isSome))
        const m3 = yield* b.client.mutate(createTodo, { id: "b2", title: "again b" }, { scope })
        assert.deepStrictEqual([m1.id, m2.id, m3.id], [1, 2, 3])
        yield* eventuallyTrue("three pending in a", Effect.map(a.client.pending, (p) => p.length === 3))
        assert.strictEqual(seenB.requests, 0)

        // online: the leader pushes all three once; the follower's sync goes through the leader
        down.value = false
        yield* b.client.sync
        yield* eventuallyTrue("nothing pending in b", Effect.map(b.client.pending, (p) => p.length === 0))
        const server = yield* Effect.orDie(SyncTransport.makeFetch({ baseUrl: base }).snapshot({ scope }))
        assert.deepStrictEqual(server.data, { todo: { a1: todo("a1", "from a"), b1: todo("b1", "from b"), b2: todo("b2", "again b") } })
        assert.deepStrictEqual(yield* b.client.view(scope), server.data)
        assert.deepStrictEqual([...seenA.processed].sort(), [[1, 1], [2, 1], [3, 1]])
        assert.strictEqual(seenB.requests, 0)
        yield* b.close
        yield* a.close
      }))

    it.scoped("closing the leader mid-push hands its queue to the next tab: every mutation reaches the server exactly once", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const scope = freshScope("todos")
        const hub = yield* TabGroup.makeHub
        const store = yield* newStore
        const seenA = newSeen()
        const seenB = newSeen()
        const down = { value: true }
        // A's pushes reach the server but A never hears back: it dies with its push in flight
        const a = yield* openTab(hub, store, counting(answerLost(unplugged(SyncTransport.makeFetch({ baseUrl: base }), down)), seenA))
        yield* a.group.whenLeader
        const b = yield* openTab(hub, store, counting(unplugged(SyncTransport.makeFetch({ baseUrl: base }), down), seenB))
        yield* a.client.mutate(createTodo, { id: "x1", title: "one" }, { scope })
        yield* b.client.mutate(createTodo, { id: "x2", title: "two" }, { scope })
        yield* eventuallyTrue("two pending in a", Effect.map(a.client.pending, (p) => p.length === 2))
        down.value = false
        yield* eventuallyTrue("a's push reached the server", Effect.sync(() => seenA.requests > 0))
        const snapshot = Effect.orDie(SyncTransport.makeFetch({ baseUrl: base }).snapshot({ scope }))
        yield* eventuallyTrue("the server applied a's push", Effect.map(snapshot, (s) => Object.keys(s.data["todo"] ?? {}).length > 0))
        const appliedByA = Object.keys((yield* snapshot).data["todo"] ?? {}).map((id) => Number(id.slice(1)))
        yield* b.client.mutate(createTodo, { id: "x3", title: "three" }, { scope })
        yield* a.close // the leader tab closes: the answer to its push never came
        yield* b.group.whenLeader
        yield* eventuallyTrue("nothing pending in b", Effect.map(b.client.pending, (p) => p.length === 0))
        const server = yield* snapshot
        assert.deepStrictEqual(server.data, { todo: { x1: todo("x1", "one"), x2: todo("x2", "two"), x3: todo("x3", "three") } })
        // what A's push applied (its answer lost) was a duplicate when B sent it again: B applied the rest, once each
        assert.deepStrictEqual([...seenB.processed].sort(), [1, 2, 3].filter((id) => !appliedByA.includes(id)).map((id) => [id, 1]))
        assert.strictEqual(seenA.processed.size, 0) // A never saw an answer
        // and the log holds one change per mutation: nothing was applied twice
        const log = yield* Effect.orDie(SyncTransport.makeFetch({ baseUrl: base }).pull({ scope, cursor: 0 }))
        assert.deepStrictEqual(log.changes.map((c) => c.id).sort(), ["x1", "x2", "x3"])
        assert.deepStrictEqual(yield* b.client.view(scope), server.data)
        yield* b.close
      }))

    it.scoped("messages on the channel that are not the tabs' protocol are ignored", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const scope = freshScope("todos")
        const hub = yield* TabGroup.makeHub
        const store = yield* newStore
        const a = yield* openTab(hub, store, SyncTransport.makeFetch({ baseUrl: base }))
        const b = yield* openTab(hub, store, SyncTransport.makeFetch({ baseUrl: base }))
        yield* a.group.whenLeader
        const garbage: ReadonlyArray<unknown> = [
          "hello",
          null,
          { _tag: "Nope" },
          { _tag: "Request", id: "r", from: "t-x", op: { _tag: "DropTables" } },
          { _tag: "Committed", revision: "many" },
          { _tag: "Reply", id: "nobody", to: "t-x" },
          { _tag: "Status", status: { online: "yes" } }
        ]
        for (const message of garbage) yield* PubSub.publish(hub.channel, { from: "t-intruder", message })
        yield* b.client.mutate(createTodo, { id: "g1", title: "still works" }, { scope })
        yield* eventuallyTrue("b's todo in a's view", Effect.map(a.client.get(scope, TodoEntity, "g1"), Option.isSome))
        yield* b.client.sync
        const server = yield* Effect.orDie(SyncTransport.makeFetch({ baseUrl: base }).snapshot({ scope }))
        assert.deepStrictEqual(server.data, { todo: { g1: todo("g1", "still works") } })
        yield* b.close
        yield* a.close
      }))
  })
})
