/**
 * The hub alone, over the memory `LivePubSub` (wrapped to count and to hold
 * up transport subscriptions): one transport subscription per topic per
 * process whatever the number of sinks, acquired with the first sink and
 * released with the last; concurrent first adds share one opening; an add
 * interrupted while the topic opens holds nothing; a topic reopens after its
 * last sink left; broadcasts skip their origin; presence is given to a new
 * sink and bounded per topic.
 *
 * Bad input tried: a malformed envelope on the transport (dropped; the topic
 * keeps delivering), the same sink added twice, removing a sink never added.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Ref from "effect/Ref"
import { LivePubSub } from "mizu-sync-live"
import * as LiveHub from "../src/live/LiveHub.js"
import { freshScope, range, realSleep } from "./suites/util.js"

/** A sink that records what reaches it. */
const recorder = (id: string) => {
  const pokes: Array<readonly [string, number]> = []
  const frames: Array<string> = []
  const sink: LiveHub.Sink = {
    id,
    poke: (scope, cursor) => pokes.push([scope, cursor]),
    send: (frame) => frames.push(frame)
  }
  return { sink, pokes, frames }
}

/** Wait (wall clock) until `check` holds, at most `ms`. */
const until = (what: string, check: () => boolean, ms = 3000) =>
  Effect.gen(function*() {
    for (let waited = 0; !check(); waited += 10) {
      if (waited > ms) return yield* Effect.dieMessage(`not in ${ms} ms: ${what}`)
      yield* realSleep(10)
    }
  })

/**
 * The memory pub/sub, counting the transport subscriptions open per topic; subscribing
 * to a topic waits for `gate` when one is given.
 */
const counting = (gate?: Deferred.Deferred<void>) =>
  Effect.gen(function*() {
    const memory = yield* LivePubSub.makeMemory
    const open = yield* Ref.make(new Map<string, number>())
    const opened = yield* Ref.make(0)
    const bump = (topic: string, by: number) =>
      Ref.update(open, (m) => new Map(m).set(topic, (m.get(topic) ?? 0) + by))
    const transport = LivePubSub.LivePubSub.of({
      publish: memory.publish,
      subscribe: (topic) =>
        Effect.gen(function*() {
          if (gate !== undefined) yield* Deferred.await(gate)
          yield* Effect.acquireRelease(Effect.zipRight(bump(topic, 1), Ref.update(opened, (n) => n + 1)), () => bump(topic, -1))
          return yield* memory.subscribe(topic)
        })
    })
    const openOn = (topic: string) => Effect.map(Ref.get(open), (m) => m.get(topic) ?? 0)
    return { transport, openOn, opened: Ref.get(opened) }
  })

const hubOver = (transport: LivePubSub.LivePubSub["Type"], options: LiveHub.Options = {}) =>
  LiveHub.make(options).pipe(Effect.provideService(LivePubSub.LivePubSub, transport))

describe("LiveHub", () => {
  it.live("1,000 sinks on one topic: one transport subscription, every poke reaches each, released with the last", () =>
    Effect.gen(function*() {
      const { openOn, transport } = yield* counting()
      const hub = yield* hubOver(transport)
      const topic = freshScope("many")
      const sinks = range(1000).map((i) => recorder(`s${i}`))
      yield* Effect.forEach(sinks, ({ sink }) => hub.add(topic, sink), { concurrency: 50, discard: true })
      // the same sink twice is one registration
      yield* hub.add(topic, sinks[0]!.sink)
      assert.strictEqual(yield* openOn(topic), 1)
      assert.strictEqual(yield* hub.sinkCount, 1000)
      assert.strictEqual(yield* hub.topicCount, 1)

      yield* hub.poke(topic, 7)
      yield* until("every sink poked", () => sinks.every((s) => s.pokes.length === 1))
      assert.deepStrictEqual(sinks[999]!.pokes, [[topic, 7]])

      // a sink never added, and one removed twice, change nothing
      yield* hub.remove(topic, recorder("stranger").sink)
      for (const { sink } of sinks.slice(0, 999)) yield* hub.remove(topic, sink)
      yield* hub.remove(topic, sinks[0]!.sink)
      assert.strictEqual(yield* openOn(topic), 1)
      yield* hub.remove(topic, sinks[999]!.sink)
      assert.strictEqual(yield* openOn(topic), 0)
      assert.strictEqual(yield* hub.sinkCount, 0)
      assert.strictEqual(yield* hub.topicCount, 0)
    }).pipe(Effect.scoped))

  it.live("concurrent first adds share one opening; an add interrupted while the topic opens holds nothing", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const { opened, openOn, transport } = yield* counting(gate)
      const hub = yield* hubOver(transport)
      const topic = freshScope("opening")
      const a = recorder("a")
      const b = recorder("b")
      const adds = yield* Effect.forkScoped(Effect.all([hub.add(topic, a.sink), hub.add(topic, b.sink)], { concurrency: 2 }))
      const gaveUp = yield* Effect.forkScoped(hub.add(topic, recorder("c").sink))
      yield* realSleep(50)
      yield* Fiber.interrupt(gaveUp)
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(adds)
      assert.strictEqual(yield* opened, 1)
      assert.strictEqual(yield* hub.sinkCount, 2)
      yield* hub.poke(topic, 1)
      yield* until("both poked", () => a.pokes.length === 1 && b.pokes.length === 1)

      // the only sink of another topic gives up while it opens: the opening is undone
      const lone = freshScope("lone")
      const held = yield* Deferred.make<void>()
      const slow = yield* counting(held)
      const hub2 = yield* hubOver(slow.transport)
      const waiting = yield* Effect.forkScoped(hub2.add(lone, recorder("d").sink))
      yield* realSleep(50)
      yield* Fiber.interrupt(waiting)
      yield* Deferred.succeed(held, undefined)
      yield* realSleep(50)
      assert.strictEqual(yield* slow.openOn(lone), 0)
      assert.strictEqual(yield* hub2.topicCount, 0)
      assert.strictEqual(yield* openOn(topic), 1)
    }).pipe(Effect.scoped))

  it.live("a topic whose last sink left reopens for the next sink, even one added right after the removal", () =>
    Effect.gen(function*() {
      const { openOn, transport } = yield* counting()
      const hub = yield* hubOver(transport)
      const topic = freshScope("reopen")
      for (const i of range(20)) {
        const first = recorder(`first${i}`)
        const next = recorder(`next${i}`)
        yield* hub.add(topic, first.sink)
        // the removal and the next add race
        yield* Effect.all([hub.remove(topic, first.sink), hub.add(topic, next.sink)], { concurrency: 2 })
        yield* hub.poke(topic, i)
        yield* until(`round ${i}: the next sink is poked`, () => next.pokes.length === 1)
        assert.strictEqual(yield* openOn(topic), 1)
        yield* hub.remove(topic, next.sink)
        assert.strictEqual(yield* openOn(topic), 0)
      }
    }).pipe(Effect.scoped))

  it.live("a broadcast skips its origin; a malformed envelope is dropped and the topic keeps delivering", () =>
    Effect.gen(function*() {
      const memory = yield* LivePubSub.makeMemory
      const hub = yield* hubOver(memory)
      const topic = freshScope("room")
      const sender = recorder("sender")
      const other = recorder("other")
      yield* hub.add(topic, sender.sink)
      yield* hub.add(topic, other.sink)
      yield* memory.publish(topic, "{not an envelope")
      yield* hub.broadcast(topic, "hello", { n: 1 }, "handle-of-sender", "sender")
      yield* until("the other sink got the broadcast", () => other.frames.length === 1)
      assert.include(other.frames[0]!, "handle-of-sender")
      yield* realSleep(50)
      assert.deepStrictEqual(sender.frames, [])
    }).pipe(Effect.scoped))

  it.live("presence: a new sink gets the state; a full topic refuses new keys and keeps the others", () =>
    Effect.gen(function*() {
      const memory = yield* LivePubSub.makeMemory
      const hub = yield* hubOver(memory, { maxEntriesPerTopic: 2 })
      const topic = freshScope("presence")
      const watcher = recorder("watcher")
      yield* hub.add(topic, watcher.sink)
      assert.isTrue(yield* hub.trackUnscoped(topic, "k1", { who: 1 }))
      assert.isTrue(yield* hub.trackUnscoped(topic, "k2", { who: 2 }))
      assert.isFalse(yield* hub.trackUnscoped(topic, "k3", { who: 3 }))
      // an existing key may update its meta when full
      assert.isTrue(yield* hub.trackUnscoped(topic, "k2", { who: 22 }))
      const late = recorder("late")
      yield* hub.add(topic, late.sink)
      assert.strictEqual(late.frames.length, 1)
      assert.deepStrictEqual(JSON.parse(hub.presenceState(topic)!).payload.state, { k1: { who: 1 }, k2: { who: 22 } })
      yield* hub.untrack(topic, "k1")
      assert.deepStrictEqual(JSON.parse(hub.presenceState(topic)!).payload.state, { k2: { who: 22 } })
      assert.isTrue(yield* hub.trackUnscoped(topic, "k3", { who: 3 }))
    }).pipe(Effect.scoped))
})

// the layer is what Server composes
it.effect("LiveHub.layer builds over the memory pub/sub", () =>
  Effect.map(Effect.provide(LiveHub.LiveHub, LiveHub.layer().pipe(Layer.provide(LivePubSub.layerMemory))), (hub) =>
    assert.isString(hub.node)))
