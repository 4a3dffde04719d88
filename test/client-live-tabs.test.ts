/**
 * `LiveClient.makeTabs`: the tabs of one browser profile share one live
 * socket. Each "tab" is a `LiveClient.layerTabs` over its own
 * `TabGroup.layerMemory` of one hub (one hub: one browser profile), with a
 * WebSocket constructor that counts the sockets the tab opens, against a
 * real server on a free port; the server's sessions are read from its
 * `mizu_live_sessions` gauge.
 *
 * Shown: two tabs with different scopes are one live session and each is
 * poked for its own scopes only; a follower's broadcast reaches another
 * browser (and its own browser's other tab), another browser's reaches every
 * tab, presence is per browser; closing the leader hands the socket to the
 * next tab, which subscribes every tab's scopes again (and a call made
 * during the takeover resolves); garbage on the channel (raw values,
 * unknown tags, `Live*` messages with bad payloads) is ignored.
 */
import * as Socket from "@effect/platform/Socket"
import * as NodeSocket from "@effect/platform-node/NodeSocket"
import { assert, describe, layer } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as PubSub from "effect/PubSub"
import * as Queue from "effect/Queue"
import * as Scope from "effect/Scope"
import { LiveClient, TabGroup } from "mizu-sync-live/client"
import { registry } from "../examples/todo/mutations.js"
import { freshScope } from "./suites/util.js"
import { eventuallyTrue, pushOne } from "./support/clientHarness.js"
import { BaseUrl, layerMemoryDeps, layerServer, liveSessions } from "./support/TestServer.js"

type Live = LiveClient.LiveClient["Type"]
type LiveEvent = LiveClient.LiveEvent

const fastLive = { reconnectInitial: "10 millis", reconnectMax: "100 millis" } as const

/** One tab: a live client over the hub, in its own scope (closing it is closing the tab); `sockets` counts the WebSockets it opened. */
const openTab = (hub: TabGroup.Hub, options: LiveClient.Options) =>
  Effect.gen(function*() {
    const counter = { sockets: 0 }
    const countingSockets = Layer.effect(
      Socket.WebSocketConstructor,
      Effect.map(Socket.WebSocketConstructor, (make) => (url: string, protocols?: string | Array<string>) => {
        counter.sockets++
        return make(url, protocols)
      })
    ).pipe(Layer.provide(NodeSocket.layerWebSocketConstructor))
    const scope = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
    const context = yield* Layer.buildWithScope(
      LiveClient.layerTabs({ ...fastLive, ...options }).pipe(Layer.provide(Layer.merge(TabGroup.layerMemory(hub), countingSockets))),
      scope
    )
    const live: Live = Context.get(context, LiveClient.LiveClient)
    return { live, counter, close: Scope.close(scope, Exit.void) }
  })

/** Take events until one matches; every event taken, the match last. */
const until = (queue: Queue.Dequeue<LiveEvent>, pred: (e: LiveEvent) => boolean) =>
  Effect.gen(function*() {
    const seen: Array<LiveEvent> = []
    while (true) {
      const e = yield* Queue.take(queue)
      seen.push(e)
      if (pred(e)) return seen
    }
  })

const pokeOf = (scope: string) => (e: LiveEvent) => e._tag === "Poke" && e.scope === scope
const broadcastOf = (event: string) => (e: LiveEvent) => e._tag === "Broadcast" && e.event === event

const sessionsAre = (base: string, n: number) =>
  eventuallyTrue(`${n} live session(s) on the server`, Effect.map(Effect.promise(() => liveSessions(base)), (s) => s === n))

const connected = (...tabs: ReadonlyArray<Live>) =>
  eventuallyTrue("connected", Effect.map(Effect.all(tabs.map((t) => t.status)), (s) => s.every((x) => x === "connected")))

describe("LiveClient.makeTabs", () => {
  layer(layerServer({ registry, live: { drainPeriod: "10 millis" } }, layerMemoryDeps), { timeout: 60_000, excludeTestServices: true })(
    "tabs of one browser against the live server",
    (it) => {
      it.scoped("two tabs with different scopes: one socket, one live session, each poked for its own scopes", () =>
        Effect.gen(function*() {
          const base = yield* BaseUrl
          const url = LiveClient.websocketUrl(base)
          yield* sessionsAre(base, 0)
          const sa = freshScope("a")
          const sb = freshScope("b")
          const hub = yield* TabGroup.makeHub
          const a = yield* openTab(hub, { url, scopes: [sa] })
          const b = yield* openTab(hub, { url })
          const eventsA = yield* a.live.subscribeEvents
          const eventsB = yield* b.live.subscribeEvents
          yield* pushOne(base, sb, "x")
          // the follower's subscribe goes through the leader and answers with the head
          assert.deepStrictEqual(yield* b.live.subscribe([sb]), { [sb]: 1 })
          assert.deepStrictEqual(yield* b.live.scopes, [sb])
          assert.deepStrictEqual(yield* a.live.scopes, [sa])
          yield* connected(a.live, b.live)
          yield* sessionsAre(base, 1)
          assert.strictEqual(a.counter.sockets, 1)
          assert.strictEqual(b.counter.sockets, 0)

          yield* pushOne(base, sa, "y")
          yield* pushOne(base, sb, "z")
          const seenA = yield* until(eventsA, pokeOf(sa))
          const seenB = yield* until(eventsB, pokeOf(sb))
          assert.deepStrictEqual(seenA.at(-1), { _tag: "Poke", scope: sa, cursor: 1 })
          assert.deepStrictEqual(seenB.at(-1), { _tag: "Poke", scope: sb, cursor: 2 })
          // each tab sees its own scopes only: b was not poked for a's scope
          assert.isFalse(seenB.some(pokeOf(sa)))
          yield* pushOne(base, sa, "w")
          yield* pushOne(base, sb, "v")
          const moreA = yield* until(eventsA, pokeOf(sa))
          assert.isFalse(moreA.some(pokeOf(sb)))

          // b no longer wants sb: unsubscribed on the socket (no tab wants it), not poked for it
          yield* b.live.unsubscribe([sb])
          yield* b.live.subscribe([sa])
          yield* pushOne(base, sb, "u")
          yield* pushOne(base, sa, "t")
          const afterB = yield* until(eventsB, pokeOf(sa))
          assert.isFalse(afterB.some(pokeOf(sb)))
          assert.strictEqual(yield* Effect.promise(() => liveSessions(base)), 1)
        }))

      it.scoped("a follower's broadcast reaches another browser and its own browser's other tab; another browser's reaches every tab; presence is per browser", () =>
        Effect.gen(function*() {
          const base = yield* BaseUrl
          const url = LiveClient.websocketUrl(base)
          const topic = freshScope("room")
          const hub = yield* TabGroup.makeHub
          const a = yield* openTab(hub, { url, scopes: [topic] })
          const b = yield* openTab(hub, { url })
          const other = yield* openTab(yield* TabGroup.makeHub, { url })
          yield* b.live.subscribe([topic])
          yield* other.live.subscribe([topic])
          const eventsA = yield* a.live.subscribeEvents
          const eventsB = yield* b.live.subscribeEvents
          const eventsOther = yield* other.live.subscribeEvents

          yield* b.live.broadcast(topic, "typing", { on: true })
          const there = (yield* until(eventsOther, broadcastOf("typing"))).at(-1)
          assert.deepInclude(there, { _tag: "Broadcast", topic, event: "typing", payload: { on: true } })
          const here = (yield* until(eventsA, broadcastOf("typing"))).at(-1)
          assert.deepStrictEqual(here, { _tag: "Broadcast", topic, event: "typing", payload: { on: true }, from: undefined })

          yield* other.live.broadcast(topic, "hello", { n: 1 })
          for (const events of [eventsA, eventsB]) {
            assert.deepInclude((yield* until(events, broadcastOf("hello"))).at(-1), { _tag: "Broadcast", topic, event: "hello", payload: { n: 1 } })
          }
          // b's own broadcast did not come back to b
          yield* other.live.broadcast(topic, "marker")
          assert.isFalse((yield* until(eventsB, broadcastOf("marker"))).some(broadcastOf("typing")))

          // one session for the browser: one presence entry, the last tab to announce sets its values
          yield* b.live.presence(topic, { name: "bob" })
          yield* eventuallyTrue("the other browser sees b", Effect.map(other.live.presenceState(topic), (s) => {
            const values = Object.values(s)
            return values.length === 1 && (values[0] as { name?: string }).name === "bob"
          }))
          yield* a.live.presence(topic, { name: "alice" })
          yield* eventuallyTrue("the other browser sees one entry, alice's", Effect.map(other.live.presenceState(topic), (s) => {
            const values = Object.values(s)
            return values.length === 1 && (values[0] as { name?: string }).name === "alice"
          }))
          // the follower's presenceState is the leader's, relayed
          yield* eventuallyTrue("b knows the topic's presence", Effect.map(b.live.presenceState(topic), (s) => Object.keys(s).length >= 1))
        }))

      it.scoped("takeover: closing the leader hands the socket to the next tab, which subscribes every tab's scopes again", () =>
        Effect.gen(function*() {
          const base = yield* BaseUrl
          const url = LiveClient.websocketUrl(base)
          yield* sessionsAre(base, 0)
          const [sa, sb, sc, sd] = [freshScope("a"), freshScope("b"), freshScope("c"), freshScope("d")]
          const hub = yield* TabGroup.makeHub
          const a = yield* openTab(hub, { url, scopes: [sa] })
          const b = yield* openTab(hub, { url, scopes: [sb] })
          const c = yield* openTab(hub, { url })
          yield* c.live.subscribe([sc])
          yield* connected(a.live, b.live, c.live)
          yield* sessionsAre(base, 1)
          const eventsB = yield* b.live.subscribeEvents
          const eventsC = yield* c.live.subscribeEvents

          yield* a.close
          // a call made while nobody leads resolves once the next leader runs it
          const pending = yield* Effect.fork(c.live.subscribe([sd]))
          const online = (yield* until(eventsB, (e) => e._tag === "Online")).at(-1)
          assert.deepInclude(online, { _tag: "Online", cursors: { [sb]: 0 } })
          assert.deepStrictEqual(yield* Fiber.join(pending), { [sd]: 0 })
          assert.strictEqual(b.counter.sockets, 1)
          assert.strictEqual(c.counter.sockets, 0)
          yield* until(eventsC, (e) => e._tag === "Subscribed" && sc in e.cursors)
          yield* connected(b.live, c.live)
          yield* sessionsAre(base, 1)

          yield* pushOne(base, sb, "x")
          yield* pushOne(base, sc, "y")
          yield* pushOne(base, sd, "z")
          assert.deepStrictEqual((yield* until(eventsB, pokeOf(sb))).at(-1), { _tag: "Poke", scope: sb, cursor: 1 })
          const seenC = yield* until(eventsC, (e) => e._tag === "Poke" && e.scope === sd)
          assert.isTrue(seenC.some(pokeOf(sc)))
          assert.deepStrictEqual([...(yield* c.live.scopes)].sort(), [sc, sd].sort())

          // and once more: b closes, c leads with its own socket and scopes
          yield* b.close
          yield* eventuallyTrue("c opened its socket", Effect.sync(() => c.counter.sockets === 1))
          yield* until(eventsC, (e) => e._tag === "Online")
          yield* sessionsAre(base, 1)
          yield* pushOne(base, sd, "w")
          assert.deepStrictEqual((yield* until(eventsC, pokeOf(sd))).at(-1), { _tag: "Poke", scope: sd, cursor: 2 })
        }))

      it.scoped("garbage on the channel is ignored and the tabs keep working", () =>
        Effect.gen(function*() {
          const base = yield* BaseUrl
          const url = LiveClient.websocketUrl(base)
          const sa = freshScope("a")
          const sb = freshScope("b")
          const hub = yield* TabGroup.makeHub
          const a = yield* openTab(hub, { url, scopes: [sa] })
          const b = yield* openTab(hub, { url })
          yield* b.live.subscribe([sb])
          yield* connected(a.live, b.live)
          const eventsB = yield* b.live.subscribeEvents
          const garbage: ReadonlyArray<unknown> = [
            "LiveRequest",
            42,
            null,
            undefined,
            [1, 2],
            { _tag: "Nope" },
            { _tag: "LiveNope", from: "x" },
            { _tag: "LiveRequest", id: "g1", from: "x", op: { _tag: "Subscribe", scopes: ["has space"] } },
            { _tag: "LiveRequest", id: "g2", from: "x", op: { _tag: "Subscribe", scopes: "not-an-array" } },
            { _tag: "LiveRequest", id: "g3", from: "x", op: { _tag: "Drop" } },
            { _tag: "LiveRequest", id: 4, from: "x", op: { _tag: "Reconnect" } },
            { _tag: "LiveBye" },
            { _tag: "LiveEvent", event: { _tag: "Poke", scope: sb, cursor: "1" } },
            { _tag: "LiveEvent", event: { _tag: "Page", frame: {} } },
            { _tag: "LiveStatus", status: "exploded" },
            { _tag: "LiveReply", id: "g1", to: "x", result: { _tag: "Maybe" } },
            { _tag: "LiveLeader" }
          ]
          for (const message of garbage) yield* PubSub.publish(hub.channel, { from: "garbage", message })
          yield* pushOne(base, sb, "x")
          const seen = yield* until(eventsB, pokeOf(sb))
          assert.deepStrictEqual(seen.at(-1), { _tag: "Poke", scope: sb, cursor: 1 })
          assert.isFalse(seen.some((e) => e._tag === "Page"))
          assert.strictEqual(yield* b.live.status, "connected")
          assert.strictEqual(yield* a.live.status, "connected")
          // the bad requests did nothing: the socket was not dropped, nothing was subscribed for "x"
          assert.strictEqual(a.counter.sockets, 1)
          assert.strictEqual(b.counter.sockets, 0)
          assert.deepStrictEqual(yield* b.live.subscribe([sa]), { [sa]: 0 })
        }))
    }
  )

  layer(layerServer({ registry, live: { drainPeriod: "10 millis" } }, layerMemoryDeps), { timeout: 60_000, excludeTestServices: true })(
    "without a shared group",
    (it) => {
      it.scoped("TabGroup.layerSolo: makeTabs is make (its own socket, connected)", () =>
        Effect.gen(function*() {
          const base = yield* BaseUrl
          const scope = freshScope("solo")
          const context = yield* Layer.build(
            LiveClient.layerTabs({ ...fastLive, url: LiveClient.websocketUrl(base), scopes: [scope] }).pipe(
              Layer.provide(Layer.merge(TabGroup.layerSolo, NodeSocket.layerWebSocketConstructor))
            )
          )
          const live = Context.get(context, LiveClient.LiveClient)
          const events = yield* live.subscribeEvents
          const online = (yield* until(events, (e) => e._tag === "Online")).at(-1)
          assert.deepInclude(online, { _tag: "Online", cursors: { [scope]: 0 } })
          yield* pushOne(base, scope, "x")
          assert.deepStrictEqual((yield* until(events, pokeOf(scope))).at(-1), { _tag: "Poke", scope, cursor: 1 })
        }))
    }
  )
})
