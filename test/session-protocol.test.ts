/**
 * The session protocol over plain Streams, no socket: the input is
 * `Stream.merge(clientMessages, hubDeliveries)` of two queues, the output the
 * frames written to an in-memory `Connection`. Services are real memory
 * layers (a memory engine and ChangeLog, an allow-all Authorizer, a LiveHub
 * over the memory LivePubSub).
 */
import { assert, describe, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import * as Protocol from "../src/live/internal/sessionProtocol.js"
import * as LiveHub from "../src/live/LiveHub.js"
import * as LivePubSub from "../src/live/LivePubSub.js"
import * as Page from "../src/live/Page.js"
import * as Live from "../src/protocol/Live.js"
import { SyncEngine } from "../src/sync/SyncEngine.js"
import * as Testing from "../src/testing/index.js"
import { registry } from "./suites/EngineSuite.js"
import { freshScope } from "./suites/util.js"

const T = Live.FrameType

/** A `Connection` that keeps what is written, in order; `blocked` plays a socket that pushes back. */
class MemoryConnection implements Protocol.Connection {
  closed = false
  lastIncoming = Date.now()
  blocked = false
  readonly backlog: Array<string> = []
  constructor(readonly out: Queue.Queue<string>, readonly feed: Protocol.Feed) {}
  joined() {}
  taken() {}
  write(frame: string) {
    if (!this.closed) Queue.unsafeOffer(this.out, frame)
  }
  reserve() {}
  send(frame: string) {
    if (this.blocked || this.backlog.length > 0) this.backlog.push(frame)
    else this.write(frame)
  }
  writeState(frame: string) {
    this.write(frame)
  }
  flushBacklog() {
    while (!this.blocked && this.backlog.length > 0) this.write(this.backlog.shift() as string)
    return this.backlog.length === 0
  }
  hasBacklog() {
    return this.backlog.length > 0
  }
  congested() {
    return this.blocked
  }
  pokesBlocked() {
    return this.blocked
  }
  overLimit() {
    return false
  }
  slowConsumer() {
    this.close("slow_consumer")
  }
  close(reason: Live.CloseReason, message?: string) {
    if (this.closed) return
    this.write(Live.encodeServerFrame({ type: T.CLOSE, payload: { reason, ...(message === undefined ? {} : { message }) } }))
    this.closed = true
    this.feed.offer(Protocol.END)
  }
  /** The socket drained: what was held back goes out on the next `Flush`. */
  drain() {
    this.blocked = false
    this.feed.offer(Protocol.FLUSH)
  }
}

interface Frame {
  readonly type: number
  readonly ref?: number
  readonly payload: Record<string, any>
}

/** A session over two plain queues: what the client sends, what the hub delivers. */
const open = Effect.gen(function*() {
  const client = yield* Queue.unbounded<Protocol.ClientInput>()
  const deliveries = yield* Queue.unbounded<Protocol.HubDelivery | Protocol.Signal>()
  const out = yield* Queue.unbounded<string>()
  const feed: Protocol.Feed = { offer: (input) => Queue.unsafeOffer(deliveries, input) }
  const connection = new MemoryConnection(out, feed)
  const session = yield* Protocol.make({}, connection, feed)
  const input = Stream.merge(Stream.fromQueue(client), Stream.fromQueue(deliveries))
  const fiber = yield* Effect.forkScoped(Protocol.run(input, session))
  yield* Effect.addFinalizer(() => session.release())
  return {
    client,
    deliveries,
    connection,
    session,
    fiber,
    /** Send a client frame as the socket adapter would: encoded, then decoded at the edge. */
    send: (frame: typeof Live.ClientFrame.Encoded) => Queue.offer(client, Protocol.decode(Live.encodeClientFrame(frame))),
    next: Effect.map(Queue.take(out), (text) => JSON.parse(text) as Frame),
    pending: Queue.size(out)
  }
})

type Session = Effect.Effect.Success<typeof open>

const joined = (s: Session, scopes: ReadonlyArray<string> = []) =>
  Effect.gen(function*() {
    yield* s.send({ type: T.JOIN, ref: 1, payload: { scopes } })
    const reply = yield* s.next
    assert.strictEqual(reply.type, T.REPLY)
    assert.strictEqual(reply.payload.status, "ok")
    return reply
  })

const pushTodo = (scope: string, id: string) =>
  Effect.flatMap(SyncEngine, (engine) =>
    engine.push({ mutations: [{ name: "todo/create", scope, args: { id, title: id } }] }, { token: undefined, headers: {} }))

const services = Layer.mergeAll(
  LiveHub.layer().pipe(Layer.provide(LivePubSub.layerMemory)),
  Page.layerEmpty,
  Testing.layerMemoryEngine(registry)
)

describe("session protocol over plain Streams", () => {
  layer(services, { excludeTestServices: true })((it) => {
    it.scoped("JOIN first: anything else is ERROR not_joined; JOIN is answered REPLY ok with the session id", () =>
      Effect.gen(function*() {
        const s = yield* open
        yield* s.send({ type: T.SUBSCRIBE, ref: 7, payload: { scopes: ["a"] } })
        const refused = yield* s.next
        assert.deepStrictEqual(refused, { type: T.ERROR, payload: { code: "not_joined", message: "the first frame must be JOIN", recoverable: true } })
        const reply = yield* joined(s)
        assert.deepStrictEqual(reply, { type: T.REPLY, ref: 1, payload: { status: "ok", session_id: s.session.id, cursors: {} } })
      }))

    it.scoped("a decode failure is a value of the stream, answered with ERROR invalid_message; the session goes on", () =>
      Effect.gen(function*() {
        const s = yield* open
        yield* joined(s)
        yield* Queue.offer(s.client, Protocol.decode("{not json"))
        const bad = yield* s.next
        assert.strictEqual(bad.type, T.ERROR)
        assert.strictEqual(bad.payload.code, "invalid_message")
        assert.strictEqual(bad.payload.recoverable, true)
        yield* Queue.offer(s.client, Protocol.decode(JSON.stringify({ type: T.SUBSCRIBE, payload: { scopes: 5 } })))
        assert.strictEqual((yield* s.next).payload.code, "invalid_message")
        yield* Queue.offer(s.client, Protocol.BINARY)
        assert.deepStrictEqual((yield* s.next).payload, { code: "invalid_message", message: "frames must be JSON text", recoverable: true })
        yield* s.send({ type: T.HEARTBEAT, ref: 3, payload: { ping: 1 } })
        assert.deepStrictEqual(yield* s.next, { type: T.HEARTBEAT, ref: 3, payload: { pong: 1 } })
      }))

    it.scoped("SUBSCRIBE is answered with the heads; then a hub poke (through the hub, or as a delivery) is a POKE", () =>
      Effect.gen(function*() {
        const hub = yield* LiveHub.LiveHub
        const s = yield* open
        yield* joined(s)
        const scope = freshScope()
        yield* pushTodo(scope, "x")
        yield* s.send({ type: T.SUBSCRIBE, ref: 2, payload: { scopes: [scope] } })
        assert.deepStrictEqual(yield* s.next, { type: T.REPLY, ref: 2, payload: { status: "ok", cursors: { [scope]: 1 } } })
        yield* hub.poke(scope, 2)
        assert.deepStrictEqual(yield* s.next, { type: T.POKE, payload: { scope, cursor: 2 } })
        yield* Queue.offer(s.deliveries, { _tag: "Poke", scope, cursor: 3 })
        assert.deepStrictEqual(yield* s.next, { type: T.POKE, payload: { scope, cursor: 3 } })
        // a second SUBSCRIBE of a held scope is not read again: its cursor is the newest the session knows
        yield* s.send({ type: T.SUBSCRIBE, ref: 4, payload: { scopes: [scope] } })
        assert.deepStrictEqual(yield* s.next, { type: T.REPLY, ref: 4, payload: { status: "ok", cursors: { [scope]: 3 } } })
      }))

    it.scoped("pokes are conflated per scope while the connection pushes back, and written when it drains", () =>
      Effect.gen(function*() {
        const hub = yield* LiveHub.LiveHub
        const s = yield* open
        const a = freshScope()
        const b = freshScope()
        yield* joined(s, [a, b])
        s.connection.blocked = true
        for (const cursor of [1, 2, 3]) yield* hub.poke(a, cursor)
        yield* hub.poke(b, 1)
        yield* hub.poke(a, 4)
        // wait until the hub has dispatched all five: held back, one cursor per scope, the newest
        yield* Effect.sync(() => [s.session.pendingPokes.get(a), s.session.pendingPokes.get(b)]).pipe(
          Effect.repeat({ until: ([ca, cb]) => ca === 4 && cb === 1, schedule: Schedule.spaced("5 millis") }),
          Effect.timeout("5 seconds")
        )
        assert.strictEqual(yield* s.pending, 0)
        s.connection.drain()
        assert.deepStrictEqual(yield* s.next, { type: T.POKE, payload: { scope: a, cursor: 4 } })
        assert.deepStrictEqual(yield* s.next, { type: T.POKE, payload: { scope: b, cursor: 1 } })
        yield* s.send({ type: T.HEARTBEAT, ref: 9, payload: {} })
        assert.deepStrictEqual(yield* s.next, { type: T.HEARTBEAT, ref: 9, payload: {} })
      }))

    it.scoped("an EVENT on a topic is relayed to the other subscribers as BROADCAST from an opaque handle, not echoed", () =>
      Effect.gen(function*() {
        const topic = freshScope()
        const sender = yield* open
        const receiver = yield* open
        yield* joined(sender, [topic])
        yield* joined(receiver, [topic])
        yield* sender.send({ type: T.EVENT, ref: 5, topic, payload: { name: "cursor", values: { x: 1 } } })
        const ack = yield* sender.next
        assert.strictEqual(ack.payload.status, "ok")
        const key = ack.payload.result.key as string
        assert.notStrictEqual(key, sender.session.id)
        assert.deepStrictEqual(yield* receiver.next, { type: T.BROADCAST, payload: { topic, event: "cursor", payload: { x: 1 }, from: key } })
        yield* sender.send({ type: T.HEARTBEAT, ref: 6, payload: {} })
        assert.deepStrictEqual(yield* sender.next, { type: T.HEARTBEAT, ref: 6, payload: {} })
      }))

    it.scoped("presence: a subscriber that comes later gets the topic's whole presence (a State delivery) after its REPLY", () =>
      Effect.gen(function*() {
        const topic = freshScope()
        const present = yield* open
        yield* joined(present, [topic])
        yield* present.send({ type: T.EVENT, ref: 5, topic, payload: { name: "presence", values: { name: "ann" } } })
        let ack = yield* present.next
        while (ack.type !== T.REPLY) ack = yield* present.next
        assert.strictEqual(ack.payload.status, "ok")
        const key = ack.payload.result.key as string
        const later = yield* open
        const reply = yield* joined(later, [topic])
        assert.deepStrictEqual(reply.payload.cursors, { [topic]: 0 })
        assert.deepStrictEqual(yield* later.next, { type: T.PRESENCE, payload: { topic, state: { [key]: { name: "ann" } } } })
      }))

    it.scoped("after UNSUBSCRIBE no poke of the scope is written; LEAVE writes CLOSE normal and ends the run", () =>
      Effect.gen(function*() {
        const hub = yield* LiveHub.LiveHub
        const s = yield* open
        const scope = freshScope()
        yield* joined(s, [scope])
        yield* s.send({ type: T.UNSUBSCRIBE, ref: 2, payload: { scopes: [scope] } })
        assert.deepStrictEqual(yield* s.next, { type: T.REPLY, ref: 2, payload: { status: "ok" } })
        yield* hub.poke(scope, 5)
        yield* Queue.offer(s.deliveries, { _tag: "Poke", scope, cursor: 6 })
        yield* s.send({ type: T.HEARTBEAT, ref: 3, payload: {} })
        assert.deepStrictEqual(yield* s.next, { type: T.HEARTBEAT, ref: 3, payload: {} })
        yield* s.send({ type: T.LEAVE, payload: {} })
        assert.deepStrictEqual(yield* s.next, { type: T.CLOSE, payload: { reason: "normal" } })
        assert.isTrue(Exit.isSuccess(yield* Fiber.await(s.fiber)))
      }))
  })
})
