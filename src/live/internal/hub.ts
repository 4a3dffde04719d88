/**
 * The hub's implementation: a topic registry over an `RcMap`, one dispatch
 * fiber per topic, presence replication (`hubPresence.ts`).
 *
 * Invariants:
 * - One `RcMap` entry per topic per process: the transport subscription (a
 *   subscription to the transport's per-topic Effect `PubSub`) and the fiber
 *   that takes from it and delivers each message to the topic's sinks. The
 *   hub holds one reference (`Topic.lease`) while the topic has sinks: taken
 *   by the first `add`, released by the last `remove`; the `RcMap` makes
 *   concurrent first adds share one opening, and an add that races the last
 *   remove either keeps the entry or opens a new one.
 * - `add` on an open topic is one synchronous step; on a topic being opened
 *   it waits for that topic only, interruptibly, and returns once the
 *   transport subscription is open (so what is published afterwards
 *   reaches the sink).
 * - Open topics are also in `open` for the synchronous reads (dispatch,
 *   presence); an entry leaves it when its `RcMap` entry closes.
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Queue from "effect/Queue"
import * as RcMap from "effect/RcMap"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import type { LiveHub, Options, Sink } from "../LiveHub.js"
import { LivePubSub } from "../LivePubSub.js"
import * as Envelope from "./hubEnvelope.js"
import { Presence } from "./hubPresence.js"
import * as Topic from "./hubTopic.js"

/** What a hub needs from its `make` to handle one message. */
interface Hub {
  readonly presence: Presence
  readonly publish: (topic: string, envelope: Envelope.Envelope) => Effect.Effect<void>
  /** Topics open in this process, by name. */
  readonly open: Map<string, Topic.Topic>
}

/** This process's entries on `topic`, re-announced. */
const announce = (hub: Hub, topic: string): Effect.Effect<void> => {
  const renewal = hub.presence.renewal(topic)
  return renewal === undefined ? Effect.void : hub.publish(topic, renewal)
}

/** One message from the transport, delivered to the topic's sinks (malformed: dropped and logged). */
const dispatch = (hub: Hub, topic: Topic.Topic, raw: string): Effect.Effect<void> => {
  const decoded = Envelope.decode(raw)
  if (Either.isLeft(decoded)) return Effect.logWarning("dropped a malformed live message", { topic: topic.name })
  const e = decoded.right
  switch (e._tag) {
    case "poke":
      Topic.poke(topic, e.scope, e.cursor)
      return Effect.void
    case "broadcast":
      Topic.broadcast(topic, e.event, e.payload, e.from, e.origin ?? e.from)
      return Effect.void
    case "join":
    case "leave":
    case "renew":
      hub.presence.receive(topic, e)
      return Effect.void
    case "sync":
      return e.node === hub.presence.node ? Effect.void : announce(hub, topic.name)
  }
}

/**
 * The `RcMap` lookup of a topic: subscribe to the transport, fork the
 * dispatch fiber, ask the other processes for their presence, join `open`.
 * All of it is undone when the entry's scope closes.
 */
const openTopic = (hub: Hub, transport: LivePubSub["Type"]) => (name: string): Effect.Effect<Topic.Topic, never, Scope.Scope> =>
  Effect.gen(function*() {
    const topic = Topic.make(name)
    const queue = yield* transport.subscribe(name)
    yield* Queue.take(queue).pipe(
      Effect.flatMap((raw) => dispatch(hub, topic, raw)),
      Effect.forever,
      // the opener may be uninterruptible: the loop itself must stay interruptible
      Effect.interruptible,
      Effect.forkScoped
    )
    yield* hub.publish(name, { _tag: "sync", topic: name, node: hub.presence.node })
    yield* Effect.acquireRelease(
      Effect.sync(() => hub.open.set(name, topic)),
      () => Effect.sync(() => hub.open.get(name) === topic && hub.open.delete(name))
    )
    return topic
  })

/**
 * Take a reference to the topic's entry in a new scope and attach the sink;
 * the scope becomes the topic's lease, or is closed if the topic has one.
 * Waiting for the opening is interruptible; an interrupted add holds nothing.
 */
const lease = (topics: RcMap.RcMap<string, Topic.Topic>, name: string, sink: Sink): Effect.Effect<void> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.flatMap(Scope.make(), (scope) =>
      restore(RcMap.get(topics, name)).pipe(
        Scope.extend(scope),
        Effect.onError((cause) => Scope.close(scope, Exit.failCause(cause))),
        Effect.flatMap((topic) => {
          Topic.attach(topic, sink)
          if (topic.lease !== undefined) return Scope.close(scope, Exit.void)
          topic.lease = scope
          return Effect.void
        })
      )
    )
  )

/** `add` / `remove`: an open topic takes a sink in one synchronous step; the first sink leases the topic, the last releases it. */
const registry = (hub: Hub, topics: RcMap.RcMap<string, Topic.Topic>): Pick<LiveHub["Type"], "add" | "remove"> => ({
  add: (name, sink) =>
    Effect.suspend(() => {
      const topic = hub.open.get(name)
      if (topic === undefined || topic.lease === undefined) return lease(topics, name, sink)
      Topic.attach(topic, sink)
      return Effect.void
    }),
  remove: (name, sink) =>
    Effect.suspend(() => {
      const topic = hub.open.get(name)
      if (topic === undefined || !topic.sinks.delete(sink) || topic.sinks.size > 0 || topic.lease === undefined) {
        return Effect.void
      }
      const held = topic.lease
      topic.lease = undefined
      return Scope.close(held, Exit.void)
    })
})

/** What the hub sends to every process: pokes, broadcasts, this process's presence. */
const outgoing = (hub: Hub): Pick<LiveHub["Type"], "poke" | "broadcast" | "trackUnscoped" | "untrack"> => ({
  poke: (scope, cursor) => hub.publish(scope, { _tag: "poke", scope, cursor }),
  broadcast: (topic, event, payload, from, origin) =>
    hub.publish(topic, {
      _tag: "broadcast",
      topic,
      event,
      ...(payload === undefined ? {} : { payload }),
      from,
      ...(origin === undefined || origin === from ? {} : { origin })
    }),
  trackUnscoped: (topic, key, meta) =>
    Effect.suspend(() => {
      const join = hub.presence.track(topic, hub.open.get(topic), key, meta)
      return join === undefined ? Effect.succeed(false) : Effect.as(hub.publish(topic, join), true)
    }),
  untrack: (topic, key) =>
    Effect.suspend(() => {
      const leave = hub.presence.untrack(topic, hub.open.get(topic), key)
      return leave === undefined ? Effect.void : hub.publish(topic, leave)
    })
})

/** Expire other processes' stale entries, then re-announce this process's own. */
const renewRound = (hub: Hub) =>
  Effect.suspend(() => {
    const now = Date.now()
    for (const topic of hub.open.values()) hub.presence.expire(topic, now)
    // the entries of this round, not those of when the loop was built
    return Effect.forEach(hub.presence.topics(), (topic) => announce(hub, topic), { discard: true })
  })

/** @internal */
export const make = (options: Options = {}): Effect.Effect<LiveHub["Type"], never, LivePubSub | Scope.Scope> =>
  Effect.gen(function*() {
    const transport = yield* LivePubSub
    const hub: Hub = {
      presence: new Presence(
        crypto.randomUUID(),
        Duration.toMillis(options.presenceTtl ?? "15 seconds"),
        options.maxEntriesPerTopic ?? 1000
      ),
      publish: (topic, envelope) => transport.publish(topic, Envelope.encode(envelope)),
      open: new Map()
    }
    const topics = yield* RcMap.make({ lookup: openTopic(hub, transport) })

    yield* renewRound(hub).pipe(
      Effect.repeat(Schedule.spaced(options.renewInterval ?? "5 seconds")),
      Effect.interruptible,
      Effect.forkScoped
    )

    const service: LiveHub["Type"] = {
      node: hub.presence.node,
      ...registry(hub, topics),
      ...outgoing(hub),
      presenceState: (name) => {
        const topic = hub.open.get(name)
        return topic === undefined || topic.presence.size === 0 ? undefined : Topic.stateFrame(topic)
      },
      sinkCount: Effect.sync(() => {
        let total = 0
        for (const topic of hub.open.values()) total += topic.sinks.size
        return total
      }),
      topicCount: Effect.sync(() => hub.open.size)
    }
    return service
  })
