/**
 * One conformance suite for every `LivePubSub` layer (memory, Redis,
 * Postgres NOTIFY): what `subscribe` returns sees what is published after,
 * in publish order; a topic's subscriptions in one process share it and
 * each gets every message; closing one leaves the others receiving; the
 * last one closing and a new one opening the topic again works; another
 * process (another layer instance on the same transport) hears it all.
 *
 * Bad input tried: a topic nobody subscribes to (dropped, not held for a
 * later subscriber), a subscription closed while others stay.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Scope from "effect/Scope"
import { LivePubSub, PgPubSub, RedisPubSub } from "mizu-sync-live"
import { freshScope, realSleep } from "./suites/util.js"
import * as Pg from "./support/Postgres.js"
import * as Redis from "./support/Redis.js"

type Transport = LivePubSub.LivePubSub["Type"]

/** Take `n` messages, failing after `ms`. */
const takeN = (queue: Queue.Dequeue<string>, n: number, ms = 10_000) =>
  Queue.takeBetween(queue, n, n).pipe(
    Effect.map(Chunk.toReadonlyArray),
    Effect.timeoutFail({ duration: ms, onTimeout: () => new Error(`fewer than ${n} messages in ${ms} ms`) })
  )

/**
 * Publish probes until `queue` hears one: a distributed layer's LISTEN / SUBSCRIBE may
 * be confirmed a little after `subscribe` returns on a busy machine. Probes are drained;
 * the other messages drained with them are returned.
 */
const listening = (sender: Transport, topic: string, queue: Queue.Dequeue<string>) =>
  Effect.gen(function*() {
    const others: Array<string> = []
    const drain = Effect.map(Queue.takeAll(queue), (got) => {
      others.push(...Chunk.filter(got, (m) => m !== "probe"))
      return Chunk.some(got, (m) => m === "probe")
    })
    for (let i = 0; i < 100; i++) {
      yield* sender.publish(topic, "probe")
      yield* realSleep(100)
      if (yield* drain) {
        yield* realSleep(200)
        yield* drain
        return others
      }
    }
    return yield* Effect.dieMessage(`${topic}: never heard a probe`)
  })

/**
 * The suite for one layer: `process` builds the pub/sub of one server process (for the
 * memory layer, the same bus each time: it only spans one process).
 */
const suite = (name: string, process: Effect.Effect<Transport, unknown, Scope.Scope>) =>
  describe(`LivePubSub conformance: ${name}`, () => {
    it.live("a subscription sees what is published after it, in order", () =>
      Effect.gen(function*() {
        const pubsub = yield* process
        const topic = freshScope("order")
        const queue = yield* pubsub.subscribe(topic)
        yield* listening(pubsub, topic, queue)
        const messages = Array.from({ length: 50 }, (_, i) => `m${i}`)
        for (const m of messages) yield* pubsub.publish(topic, m)
        assert.deepStrictEqual(yield* takeN(queue, messages.length), messages)
      }).pipe(Effect.scoped), 30_000)

    it.live("subscriptions of one topic in one process each get every message; closing one leaves the others", () =>
      Effect.gen(function*() {
        const pubsub = yield* process
        const topic = freshScope("shared")
        const first = yield* pubsub.subscribe(topic)
        const secondScope = yield* Scope.make()
        const second = yield* pubsub.subscribe(topic).pipe(Scope.extend(secondScope))
        yield* listening(pubsub, topic, first)
        yield* Queue.takeAll(second)
        yield* pubsub.publish(topic, "both")
        assert.deepStrictEqual(yield* takeN(first, 1), ["both"])
        assert.deepStrictEqual(yield* takeN(second, 1), ["both"])
        yield* Scope.close(secondScope, Exit.void)
        yield* pubsub.publish(topic, "one")
        assert.deepStrictEqual(yield* takeN(first, 1), ["one"])
        assert.isTrue(yield* Queue.isShutdown(second))
      }).pipe(Effect.scoped), 30_000)

    it.live("a topic whose last subscription closed opens again; nothing published meanwhile is kept for it", () =>
      Effect.gen(function*() {
        const pubsub = yield* process
        const topic = freshScope("again")
        yield* Effect.scoped(Effect.gen(function*() {
          const queue = yield* pubsub.subscribe(topic)
          yield* listening(pubsub, topic, queue)
        }))
        yield* pubsub.publish(topic, "nobody listens")
        yield* realSleep(300)
        const queue = yield* pubsub.subscribe(topic)
        assert.deepStrictEqual(yield* listening(pubsub, topic, queue), [])
        yield* pubsub.publish(topic, "back")
        assert.deepStrictEqual(yield* takeN(queue, 1), ["back"])
      }).pipe(Effect.scoped), 30_000)

    it.live("another process hears what this one publishes, and only on the topics it subscribed to", () =>
      Effect.gen(function*() {
        const a = yield* process
        const b = yield* process
        const topic = freshScope("cross")
        const other = freshScope("cross-other")
        const onB = yield* b.subscribe(topic)
        yield* listening(a, topic, onB)
        yield* a.publish(other, "elsewhere")
        yield* a.publish(topic, "from a")
        assert.deepStrictEqual(yield* takeN(onB, 1), ["from a"])
        yield* realSleep(200)
        assert.isTrue(Option.isNone(yield* Queue.poll(onB)))
      }).pipe(Effect.scoped), 30_000)
  })

const memory = Effect.runSync(Effect.map(Scope.make(), (scope) => scope))
const memoryBus = Effect.runSync(Layer.buildWithScope(LivePubSub.layerMemory, memory))
suite("memory", Effect.succeed(Context.get(memoryBus, LivePubSub.LivePubSub)))

describe("LivePubSub topics", () => {
  it.live("a subscriber that falls 4,096 messages behind loses the oldest, never the newest (sliding)", () =>
    Effect.gen(function*() {
      const pubsub = yield* LivePubSub.makeMemory
      const topic = freshScope("slide")
      const queue = yield* pubsub.subscribe(topic)
      for (let i = 0; i < 4096 + 10; i++) yield* pubsub.publish(topic, `m${i}`)
      const got = Chunk.toReadonlyArray(yield* Queue.takeAll(queue))
      assert.strictEqual(got.length, 4096)
      assert.strictEqual(got[0], "m10")
      assert.strictEqual(got[got.length - 1], `m${4096 + 9}`)
    }).pipe(Effect.scoped))
})

const built = (layer: Layer.Layer<LivePubSub.LivePubSub, unknown>) =>
  Effect.map(Layer.build(layer), (context) => Context.get(context, LivePubSub.LivePubSub))

if (Redis.unavailable === undefined) suite("redis", built(RedisPubSub.layer({ url: Redis.url })))

Pg.describePostgres("LivePubSub conformance on Postgres", ({ database }) => {
  const pg = Effect.flatMap(Layer.build(database), (context) => built(PgPubSub.layerUrl(Context.get(context, Pg.PgDatabase).url)))
  suite("postgres", pg)
})
