/**
 * LiveClient against real live servers that refuse subscriptions for a
 * while: a scope is forgotten only when the server says `forbidden`; after
 * `unavailable` (a storage failure while reading the heads) or
 * `too_many_scopes` it stays wanted, is asked for again with backoff, and
 * the client ends up subscribed and poked.
 */
import { assert, describe, layer } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import { Authorizer, ChangeLog, LivePubSub, StorageError, SyncStorage } from "mizu-sync-live"
import { LiveClient } from "mizu-sync-live/client"
import { layerLiveClient } from "mizu-sync-live/client/node"
import { registry } from "../examples/todo/mutations.js"
import { freshScope } from "./suites/util.js"
import { eventuallyTrue, pushOne, takeUntil } from "./support/clientHarness.js"
import { BaseUrl, layerServer } from "./support/TestServer.js"

const startLive = (options: LiveClient.Options) => Effect.map(Layer.build(layerLiveClient(options)), Context.get(LiveClient.LiveClient))

const fastLive = { reconnectInitial: "10 millis", reconnectMax: "100 millis" } as const

const is = <T extends LiveClient.LiveEvent["_tag"]>(tag: T) => (e: LiveClient.LiveEvent): e is Extract<LiveClient.LiveEvent, { _tag: T }> =>
  e._tag === tag

/** Head reads of `scope` fail while `failures` > 0 (each failure counts down): SUBSCRIBE and JOIN answer `unavailable`. */
const flaky = { scope: "", failures: 0 }
const flakyHeads = Layer.effect(
  ChangeLog.ChangeLog,
  Effect.map(ChangeLog.ChangeLog, (log) =>
    ChangeLog.ChangeLog.of({
      ...log,
      head: (scope) =>
        Effect.suspend(() => {
          if (scope !== flaky.scope || flaky.failures <= 0) return log.head(scope)
          flaky.failures--
          return Effect.fail(new StorageError({ reason: "unavailable", message: "injected head failure" }))
        })
    }))
).pipe(Layer.provide(SyncStorage.layerMemory))
const flakyStorage = Layer.merge(SyncStorage.layerMemory, flakyHeads)

describe("LiveClient keeps wanted scopes through transient refusals", () => {
  layer(
    layerServer({ registry, live: { drainPeriod: "10 millis" } }, Layer.mergeAll(flakyStorage, LivePubSub.layerMemory, Authorizer.layerAllowAll)),
    { timeout: 60_000, excludeTestServices: true }
  )("storage fails while the heads are read", (it) => {
    it.scoped("after a reconnect, JOIN and SUBSCRIBE answer `unavailable`: the scope stays, is asked for again, and is poked", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const scope = freshScope("todos")
        const live = yield* startLive({ ...fastLive, url: LiveClient.websocketUrl(base), scopes: [scope] })
        const events = yield* live.subscribeEvents
        yield* takeUntil(events, is("Online"))
        // the next JOIN, the fallback SUBSCRIBE and the first retry all fail
        flaky.scope = scope
        flaky.failures = 3
        yield* live.reconnect
        const back = yield* takeUntil(events, is("Online"), (e) => e.reconnect)
        assert.deepStrictEqual(back.cursors, {}) // joined without it
        assert.deepStrictEqual(yield* live.scopes, [scope]) // but still wanted
        const subscribed = yield* takeUntil(events, is("Subscribed"))
        assert.deepStrictEqual(subscribed.cursors, { [scope]: 0 })
        assert.strictEqual(flaky.failures, 0)
        yield* pushOne(base, scope, "a")
        assert.deepStrictEqual(yield* takeUntil(events, is("Poke")), { _tag: "Poke", scope, cursor: 1 })
        assert.deepStrictEqual(yield* live.scopes, [scope])
      }))
  })

  layer(
    layerServer({ registry, live: { drainPeriod: "10 millis", maxScopes: 2 } }, Layer.mergeAll(SyncStorage.layerMemory, LivePubSub.layerMemory, Authorizer.layerAllowAll)),
    { timeout: 60_000, excludeTestServices: true }
  )("a server that takes two scopes per session", (it) => {
    it.scoped("`too_many_scopes` keeps the third scope wanted; once there is room it is subscribed and poked", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const [a, b, c] = [freshScope("a"), freshScope("b"), freshScope("c")]
        const live = yield* startLive({ ...fastLive, url: LiveClient.websocketUrl(base), scopes: [a, b, c] })
        const events = yield* live.subscribeEvents
        const online = yield* takeUntil(events, is("Online"))
        assert.deepStrictEqual(online.cursors, { [a]: 0, [b]: 0 })
        assert.deepStrictEqual([...(yield* live.scopes)].sort(), [a, b, c].sort())
        yield* live.unsubscribe([a])
        const subscribed = yield* takeUntil(events, is("Subscribed"))
        assert.deepStrictEqual(subscribed.cursors, { [c]: 0 })
        yield* pushOne(base, c, "x")
        assert.deepStrictEqual(yield* takeUntil(events, is("Poke")), { _tag: "Poke", scope: c, cursor: 1 })
        assert.deepStrictEqual([...(yield* live.scopes)].sort(), [b, c].sort())
      }))

    it.scoped("`subscribe` retries `too_many_scopes` with backoff and resolves once there is room", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const [a, b, c] = [freshScope("a"), freshScope("b"), freshScope("c")]
        const live = yield* startLive({ ...fastLive, url: LiveClient.websocketUrl(base), scopes: [a, b] })
        const events = yield* live.subscribeEvents
        yield* takeUntil(events, is("Online"))
        const asking = yield* Effect.fork(live.subscribe([c]))
        yield* takeUntil(events, is("Error"), (e) => e.code === "subscribe_failed")
        assert.isTrue((yield* live.scopes).includes(c))
        assert.isUndefined(asking.unsafePoll() ?? undefined)
        yield* pushOne(base, c, "early")
        yield* live.unsubscribe([a])
        assert.deepStrictEqual(yield* Fiber.join(asking), { [c]: 1 })
        yield* pushOne(base, c, "y")
        assert.deepStrictEqual(yield* takeUntil(events, is("Poke"), (p) => p.scope === c), { _tag: "Poke", scope: c, cursor: 2 })
      }))
  })

  layer(
    layerServer(
      { registry, live: { drainPeriod: "10 millis" } },
      Layer.mergeAll(
        SyncStorage.layerMemory,
        LivePubSub.layerMemory,
        Authorizer.layerFunction((req) => req.scope.startsWith("secret:") ? Authorizer.forbidden(`no ${req.scope}`) : Effect.void)
      )
    ),
    { timeout: 60_000, excludeTestServices: true }
  )("a server that forbids some scopes", (it) => {
    it.scoped("only `forbidden` forgets a scope, with a Forbidden event naming it", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const ok = freshScope("ok")
        const secret = freshScope("secret:")
        const live = yield* startLive({ ...fastLive, url: LiveClient.websocketUrl(base), scopes: [ok, secret] })
        const events = yield* live.subscribeEvents
        const forbidden = yield* takeUntil(events, is("Forbidden"))
        assert.deepStrictEqual(forbidden.scopes, [secret])
        const online = yield* takeUntil(events, is("Online"))
        assert.deepStrictEqual(online.cursors, { [ok]: 0 })
        yield* eventuallyTrue("only the forbidden scope is gone", Effect.map(live.scopes, (s) => s.length === 1 && s[0] === ok))
      }))
  })
})
