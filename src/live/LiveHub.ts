/**
 * The process-local hub between live sessions and the `LivePubSub` transport.
 *
 * Design decisions:
 * - Sessions register a `Sink` per topic; the hub holds ONE transport
 *   subscription per topic for the whole process (acquired with the first
 *   sink, released with the last), so 10,000 sessions on one scope cost one
 *   Redis channel and one dispatch fiber, not 10,000.
 * - A message is decoded once per process and a frame is encoded once per
 *   message; the per-session step is "hand these bytes to the session's
 *   inbox" (pokes: "note this cursor"), which never blocks.
 * - Messages between processes are `Envelope`s, decoded with a Schema: a
 *   malformed message from the transport is dropped and logged, never trusted.
 * - Presence is replicated: every process keeps the presence of every topic
 *   it has subscribers for. A process re-announces its own entries every
 *   `renewInterval`; entries of other processes that are not renewed within
 *   `presenceTtl` expire (their process died), producing `leaves`. A process
 *   that starts listening to a topic asks the others to re-announce at once.
 *   A process applies its own joins and leaves at once (and ignores their
 *   echo), so its count of a topic's entries includes those in flight.
 * - Bounded presence: at most `maxEntriesPerTopic` entries per topic. When a
 *   topic is full a new entry is refused (`track` yields false; a join from
 *   another process is not applied until there is room, its renewals retry)
 *   and the existing entries keep their place.
 * - Presence keys and broadcast `from` are whatever the caller gives (the
 *   session gives opaque per-topic handles, never its session id); a
 *   broadcast also carries its sender's sink id (`origin`, between processes
 *   only) so it is not echoed to the sender.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Live from "../protocol/Live.js"
import { LivePubSub } from "./LivePubSub.js"

// ---------------------------------------------------------------------------
// Envelopes between processes
// ---------------------------------------------------------------------------

const Meta = Schema.Record({ key: Schema.String, value: Schema.Unknown })

/** What one process tells the others. */
export const Envelope = Schema.Union(
  Schema.TaggedStruct("poke", { scope: Schema.String, cursor: Schema.Number }),
  Schema.TaggedStruct("broadcast", {
    topic: Schema.String,
    event: Schema.String,
    payload: Schema.optional(Schema.Unknown),
    /** what subscribers see as `from` */
    from: Schema.String,
    /** the sender's sink id: not echoed to it (absent: `from` is the sink id, as older processes send) */
    origin: Schema.optional(Schema.String)
  }),
  Schema.TaggedStruct("join", { topic: Schema.String, key: Schema.String, meta: Meta, node: Schema.String }),
  Schema.TaggedStruct("leave", { topic: Schema.String, key: Schema.String, node: Schema.String }),
  Schema.TaggedStruct("renew", { topic: Schema.String, node: Schema.String, entries: Schema.Record({ key: Schema.String, value: Meta }) }),
  Schema.TaggedStruct("sync", { topic: Schema.String, node: Schema.String })
)
export type Envelope = typeof Envelope.Type

const decodeEnvelope = Schema.decodeUnknownEither(Schema.parseJson(Envelope))
const encodeEnvelope = (e: Envelope): string => JSON.stringify(e)

// ---------------------------------------------------------------------------
// The hub
// ---------------------------------------------------------------------------

/** What a session gives the hub to be reached. Every method is synchronous and never blocks. */
export interface Sink {
  /** The session id: broadcasts are not echoed to their sender. */
  readonly id: string
  /** A commit in `scope` reached `cursor`. */
  readonly poke: (scope: string, cursor: number) => void
  /** A ready-encoded frame. */
  readonly send: (frame: string) => void
  /**
   * The topic's full presence (a PRESENCE `state` frame), on registration.
   * A sink may drop `frame` and write `presenceState(topic)` later instead
   * (fresh then); without this method the frame goes to `send`.
   */
  readonly sendState?: (topic: string, frame: string) => void
  /** If present, broadcasts come here decoded instead of as frames (live pages' `info`). */
  readonly broadcast?: (topic: string, event: string, payload: unknown, from: string) => void
}

export interface Options {
  /** How often a process re-announces its presence entries (default 5 s). */
  readonly renewInterval?: Duration.DurationInput
  /** How long another process's entry lives without renewal (default 15 s). */
  readonly presenceTtl?: Duration.DurationInput
  /** Most presence entries per topic (default 1,000); when full, new entries are refused. */
  readonly maxEntriesPerTopic?: number
}

interface PresenceEntry {
  readonly meta: Readonly<Record<string, unknown>>
  readonly node: string
  expiresAt: number
}

interface TopicState {
  readonly sinks: Set<Sink>
  /** key -> entry, for every process */
  readonly presence: Map<string, PresenceEntry>
  /** Closes the transport subscription when the last sink leaves. */
  readonly scope: Scope.CloseableScope
  /** The transport subscription is open: messages published from now on reach the sinks. */
  ready: boolean
}

export class LiveHub extends Context.Tag("@mizu/live/LiveHub")<LiveHub, {
  /** This process's id (presence entries carry it). */
  readonly node: string
  /**
   * Register a sink on a topic until the scope closes. Messages published
   * after this returns reach it. The current presence of the topic, if any,
   * is sent to the sink as a full `state` PRESENCE frame before it returns.
   */
  readonly subscribe: (topic: string, sink: Sink) => Effect.Effect<void, never, Scope.Scope>
  /**
   * `subscribe` without a Scope: the sink stays registered until `remove`
   * (for a session that releases all it holds in one finalizer).
   */
  readonly add: (topic: string, sink: Sink) => Effect.Effect<void>
  /** Unregister a sink added with `add`; nothing if it is not registered. */
  readonly remove: (topic: string, sink: Sink) => Effect.Effect<void>
  /** Poke every subscriber of a scope, on every process. */
  readonly poke: (scope: string, cursor: number) => Effect.Effect<void>
  /**
   * Relay an ephemeral event to every subscriber of the topic, on every
   * process, but the sinks whose id is `origin` (default: `from`).
   * Subscribers see `from`.
   */
  readonly broadcast: (topic: string, event: string, payload: unknown, from: string, origin?: string) => Effect.Effect<void>
  /**
   * Track `key` (a session) as present on the topic with `meta`, until
   * `untrack` or the scope closes. False (nothing tracked) when the topic
   * holds `maxEntriesPerTopic` entries and `key` is not one of them.
   */
  readonly track: (topic: string, key: string, meta: Readonly<Record<string, unknown>>) => Effect.Effect<boolean, never, Scope.Scope>
  /** `track` without a Scope: `key` is present on the topic until `untrack`. */
  readonly trackUnscoped: (topic: string, key: string, meta: Readonly<Record<string, unknown>>) => Effect.Effect<boolean>
  /** The topic's current presence as a PRESENCE `state` frame; undefined when nobody is present (or no sink is on it here). */
  readonly presenceState: (topic: string) => string | undefined
  /** End a presence entry of this process; nothing if there is none. */
  readonly untrack: (topic: string, key: string) => Effect.Effect<void>
  /** The number of sinks registered on this process (all topics). */
  readonly sinkCount: Effect.Effect<number>
  /** The number of topics this process holds a transport subscription for. */
  readonly topicCount: Effect.Effect<number>
}>() {}

const presenceFrame = (topic: string, field: "state" | "joins" | "leaves", entries: Record<string, unknown>) =>
  Live.encodeServerFrame({ type: Live.FrameType.PRESENCE, payload: { topic, [field]: entries } })

const stateFrame = (topic: string, state: TopicState) =>
  presenceFrame(topic, "state", Object.fromEntries([...state.presence].map(([k, v]) => [k, v.meta])))

export const make = (options: Options = {}): Effect.Effect<LiveHub["Type"], never, LivePubSub | Scope.Scope> =>
  Effect.gen(function*() {
    const transport = yield* LivePubSub
    const hubScope = yield* Effect.scope
    const node = crypto.randomUUID()
    const renewMillis = Duration.toMillis(options.renewInterval ?? "5 seconds")
    const ttlMillis = Duration.toMillis(options.presenceTtl ?? "15 seconds")
    const maxEntries = options.maxEntriesPerTopic ?? 1000
    const topics = new Map<string, TopicState>()
    /** This process's own presence: topic -> key -> meta. */
    const local = new Map<string, Map<string, Readonly<Record<string, unknown>>>>()
    let sinkTotal = 0
    /**
     * Topics whose transport subscription is being opened, done when it is open or the opening
     * failed. No lock is held across the transport: only the fiber opening a topic waits on it,
     * the others adding to that topic wait for that topic, and no other topic waits at all.
     */
    const opening = new Map<string, Deferred.Deferred<void>>()

    const toSinks = (state: TopicState, frame: string, except?: string) => {
      for (const sink of state.sinks) if (sink.id !== except) sink.send(frame)
    }

    const publish = (topic: string, envelope: Envelope) => transport.publish(topic, encodeEnvelope(envelope))

    const applyJoin = (topic: string, state: TopicState, key: string, meta: Readonly<Record<string, unknown>>, from: string) => {
      const existing = state.presence.get(key)
      // full: a new entry waits for room (its process renews it), the existing ones keep their place
      if (existing === undefined && state.presence.size >= maxEntries) return
      state.presence.set(key, { meta, node: from, expiresAt: Date.now() + ttlMillis })
      if (existing === undefined || JSON.stringify(existing.meta) !== JSON.stringify(meta)) {
        toSinks(state, presenceFrame(topic, "joins", { [key]: meta }))
      }
    }

    const applyLeave = (topic: string, state: TopicState, key: string) => {
      const existing = state.presence.get(key)
      if (existing === undefined) return
      state.presence.delete(key)
      toSinks(state, presenceFrame(topic, "leaves", { [key]: existing.meta }))
    }

    const dispatch = (topic: string, state: TopicState, raw: string): Effect.Effect<void> => {
      const decoded = decodeEnvelope(raw)
      if (Either.isLeft(decoded)) return Effect.logWarning("dropped a malformed live message", { topic })
      const e = decoded.right
      switch (e._tag) {
        case "poke":
          for (const sink of state.sinks) sink.poke(e.scope, e.cursor)
          return Effect.void
        case "broadcast": {
          let frame: string | undefined
          const origin = e.origin ?? e.from
          for (const sink of state.sinks) {
            if (sink.id === origin) continue
            if (sink.broadcast !== undefined) {
              sink.broadcast(topic, e.event, e.payload, e.from)
              continue
            }
            // encoded once per message, whatever the number of sessions
            frame ??= Live.encodeServerFrame({
              type: Live.FrameType.BROADCAST,
              payload: { topic, event: e.event, ...(e.payload === undefined ? {} : { payload: e.payload }), from: e.from }
            })
            sink.send(frame)
          }
          return Effect.void
        }
        // this process's own joins and leaves were applied when made
        case "join":
          if (e.node !== node) applyJoin(topic, state, e.key, e.meta, e.node)
          return Effect.void
        case "leave":
          if (e.node !== node) applyLeave(topic, state, e.key)
          return Effect.void
        case "renew": {
          if (e.node !== node) {
            for (const [key, meta] of Object.entries(e.entries)) applyJoin(topic, state, key, meta, e.node)
            return Effect.void
          }
          // its own renewal: entries still tracked here that found no room yet (or came before the topic opened)
          const mine = local.get(topic)
          if (mine !== undefined) {
            for (const key of Object.keys(e.entries)) {
              const meta = mine.get(key)
              if (meta !== undefined && !state.presence.has(key)) applyJoin(topic, state, key, meta, node)
            }
          }
          return Effect.void
        }
        case "sync":
          return e.node === node ? Effect.void : announce(topic)
      }
    }

    const announce = (topic: string) => {
      const mine = local.get(topic)
      return mine === undefined || mine.size === 0
        ? Effect.void
        : publish(topic, { _tag: "renew", topic, node, entries: Object.fromEntries(mine) })
    }

    /**
     * Open the process's transport subscription for a topic (first sink). The state joins
     * `topics` once open; a failed or interrupted opening closes what it opened.
     */
    const openTopic = (topic: string) =>
      Effect.gen(function*() {
        const scope = yield* Scope.fork(hubScope, ExecutionStrategy.sequential)
        const state: TopicState = { sinks: new Set(), presence: new Map(), scope, ready: false }
        yield* Effect.gen(function*() {
          const queue = yield* transport.subscribe(topic).pipe(Scope.extend(scope))
          yield* Queue.take(queue).pipe(
            Effect.flatMap((raw) => dispatch(topic, state, raw)),
            Effect.forever,
            // the caller may be uninterruptible: the loop itself must stay interruptible
            Effect.interruptible,
            Effect.forkIn(scope)
          )
          yield* publish(topic, { _tag: "sync", topic, node })
        }).pipe(Effect.onError((cause) => Scope.close(scope, Exit.failCause(cause))))
        state.ready = true
        return state
      })

    const addTo = (state: TopicState, topic: string, sink: Sink) => {
      if (state.sinks.has(sink)) return
      state.sinks.add(sink)
      sinkTotal++
      if (state.presence.size > 0) {
        const frame = stateFrame(topic, state)
        if (sink.sendState !== undefined) sink.sendState(topic, frame)
        else sink.send(frame)
      }
    }

    const add = (topic: string, sink: Sink): Effect.Effect<void> =>
      Effect.suspend(() => {
        // An open topic takes a sink at once; a topic being opened, once it is (or, if that
        // failed, once this fiber has opened it). The map is only read and written in
        // synchronous steps, so no lock is needed.
        const open = topics.get(topic)
        if (open !== undefined) {
          addTo(open, topic, sink)
          return Effect.void
        }
        const pending = opening.get(topic)
        if (pending !== undefined) return Effect.zipRight(Deferred.await(pending), add(topic, sink))
        const done = Deferred.unsafeMake<void>(FiberId.none)
        opening.set(topic, done)
        return openTopic(topic).pipe(
          Effect.map((state) => {
            topics.set(topic, state)
            addTo(state, topic, sink)
          }),
          Effect.ensuring(Effect.sync(() => {
            opening.delete(topic)
            Deferred.unsafeDone(done, Exit.void)
          }))
        )
      })

    const remove = (topic: string, sink: Sink) =>
      Effect.suspend(() => {
        const state = topics.get(topic)
        if (state === undefined || !state.sinks.delete(sink)) return Effect.void
        sinkTotal--
        if (state.sinks.size > 0) return Effect.void
        // Closing releases the transport subscription; a new sink meanwhile opens a new one
        // (the transports count subscriptions, so the two never undo each other).
        topics.delete(topic)
        return Scope.close(state.scope, Exit.void)
      })

    // The finalizer first and `add` interruptible: a subscription waiting on the transport can be
    // given up (remove is a no-op for a sink that was never added).
    const subscribe = (topic: string, sink: Sink) =>
      Effect.zipRight(Effect.addFinalizer(() => remove(topic, sink)), add(topic, sink))

    const trackUnscoped = (topic: string, key: string, meta: Readonly<Record<string, unknown>>) =>
      Effect.suspend(() => {
        const state = topics.get(topic)
        if (state !== undefined && !state.presence.has(key) && state.presence.size >= maxEntries) return Effect.succeed(false)
        let mine = local.get(topic)
        if (mine === undefined) {
          mine = new Map()
          local.set(topic, mine)
        }
        mine.set(key, meta)
        if (state !== undefined) applyJoin(topic, state, key, meta, node)
        return Effect.as(publish(topic, { _tag: "join", topic, key, meta, node }), true)
      })

    const untrack = (topic: string, key: string) =>
      Effect.suspend(() => {
        const mine = local.get(topic)
        if (mine === undefined || !mine.delete(key)) return Effect.void
        if (mine.size === 0) local.delete(topic)
        const state = topics.get(topic)
        if (state !== undefined && state.presence.get(key)?.node === node) applyLeave(topic, state, key)
        return publish(topic, { _tag: "leave", topic, key, node })
      })

    const track = (topic: string, key: string, meta: Readonly<Record<string, unknown>>) =>
      Effect.acquireRelease(trackUnscoped(topic, key, meta), () => untrack(topic, key))

    // Renew this process's entries; expire other processes' stale ones.
    yield* Effect.sync(() => {
      const now = Date.now()
      for (const [topic, state] of topics) {
        for (const [key, entry] of state.presence) {
          if (entry.node !== node && entry.expiresAt < now) applyLeave(topic, state, key)
        }
      }
    }).pipe(
      // suspended: the entries of this round, not those of when the loop was built
      Effect.zipRight(Effect.suspend(() => Effect.forEach([...local.keys()], announce, { discard: true }))),
      Effect.repeat(Schedule.spaced(Duration.millis(renewMillis))),
      Effect.interruptible,
      Effect.forkScoped
    )

    return LiveHub.of({
      node,
      subscribe,
      add,
      remove,
      poke: (scope, cursor) => publish(scope, { _tag: "poke", scope, cursor }),
      broadcast: (topic, event, payload, from, origin) =>
        publish(topic, {
          _tag: "broadcast",
          topic,
          event,
          ...(payload === undefined ? {} : { payload }),
          from,
          ...(origin === undefined || origin === from ? {} : { origin })
        }),
      track,
      trackUnscoped,
      untrack,
      presenceState: (topic) => {
        const state = topics.get(topic)
        return state === undefined || state.presence.size === 0 ? undefined : stateFrame(topic, state)
      },
      sinkCount: Effect.sync(() => sinkTotal),
      topicCount: Effect.sync(() => topics.size)
    })
  })

/** The hub over the `LivePubSub` in context. */
export const layer = (options: Options = {}): Layer.Layer<LiveHub, never, LivePubSub> => Layer.scoped(LiveHub, make(options))
