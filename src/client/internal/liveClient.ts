/**
 * `LiveClient.make`: the client's state, the session it runs on every
 * connection of `liveConnection.keepConnected`, and the service over both.
 *
 * Invariants (see `LiveClient` for the ones a user sees):
 * - On every connection: JOIN (`liveScopes.join`), then the link becomes
 *   current, then `Online`, then the presence values are re-sent, then the
 *   background retry of missing scopes runs until the connection ends.
 * - Events are published to one unbounded `PubSub` in the order the frames
 *   came in.
 *
 * @since 0.1.0
 * @internal
 */
import type * as Socket from "@effect/platform/Socket"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import * as Live from "../../protocol/Live.js"
import { LiveClient, LiveError, type LiveEvent, type LiveStatus, type Options } from "../LiveClient.js"
import * as Connection from "./liveConnection.js"
import * as Scopes from "./liveScopes.js"

const applyPresence = (state: Scopes.State, p: Live.PresencePayload): Record<string, unknown> => {
  const current: Record<string, unknown> = p.state !== undefined ? { ...p.state } : { ...state.presence.get(p.topic) }
  for (const key of Object.keys(p.leaves ?? {})) delete current[key]
  Object.assign(current, p.joins ?? {})
  state.presence.set(p.topic, current)
  return current
}

/** The event of a frame (REPLY and HEARTBEAT never reach here: the connection answers them). */
const eventOf = (state: Scopes.State, frame: typeof Live.ServerFrame.Type): LiveEvent | undefined => {
  switch (frame.type) {
    case Live.FrameType.POKE:
      return { _tag: "Poke", scope: frame.payload.scope, cursor: frame.payload.cursor }
    case Live.FrameType.BROADCAST: {
      const { event, from, payload, topic } = frame.payload
      return { _tag: "Broadcast", topic, event, payload, from }
    }
    case Live.FrameType.PRESENCE: {
      const current = applyPresence(state, frame.payload)
      return { _tag: "Presence", topic: frame.payload.topic, current, joins: frame.payload.joins, leaves: frame.payload.leaves }
    }
    case Live.FrameType.ERROR:
      return { _tag: "Error", code: frame.payload.code, message: frame.payload.message, recoverable: frame.payload.recoverable }
    case Live.FrameType.CLOSE:
      return { _tag: "Closed", reason: frame.payload.reason, message: frame.payload.message }
    case Live.FrameType.REPLY:
    case Live.FrameType.HEARTBEAT:
      return undefined
    default:
      return { _tag: "Page", frame }
  }
}

const presenceFrame = (topic: string, values: Readonly<Record<string, unknown>>): typeof Live.ClientFrame.Encoded => ({
  type: Live.FrameType.EVENT,
  topic,
  payload: { name: "presence", topic, values }
})

/** What the client does on each connection of `keepConnected`. */
const session = (state: Scopes.State): Connection.Session<Scopes.Joined> => ({
  join: (conn) =>
    Effect.tap(Scopes.join(state)(conn), (joined) =>
      Effect.zipRight(
        Effect.sync(() => {
          state.sessionId = joined.sessionId ?? state.sessionId
        }),
        SubscriptionRef.set(state.current, Option.some(joined.link))
      )),
  online: (conn, joined) =>
    Effect.gen(function*() {
      const reconnect = state.joinedOnce
      state.joinedOnce = true
      yield* Scopes.publish(state, { _tag: "Online", sessionId: joined.sessionId, cursors: joined.cursors, reconnect })
      for (const [topic, values] of state.presenceValues) yield* conn.write(presenceFrame(topic, values))
      yield* Scopes.retryWanted(state, joined.link)
    }),
  offline: Effect.zipRight(
    SubscriptionRef.set(state.current, Option.none()),
    Scopes.publish(state, { _tag: "Offline", reason: "the connection closed" })
  ),
  onFrame: (frame) => {
    const event = eventOf(state, frame)
    return event === undefined ? Effect.void : Effect.asVoid(Scopes.publish(state, event))
  },
  onInvalid: (message) => Effect.asVoid(Scopes.publish(state, { _tag: "Error", code: "invalid_frame", message, recoverable: true })),
  onDefect: (defect) =>
    Effect.asVoid(Scopes.publish(state, { _tag: "Error", code: "connect_failed", message: String(defect), recoverable: true }))
})

const makeState = (options: Options): Effect.Effect<Scopes.State, never, Scope.Scope> =>
  Effect.gen(function*() {
    return {
      options,
      backoff: { initial: options.reconnectInitial ?? Duration.millis(500), max: options.reconnectMax ?? Duration.seconds(20) },
      pubsub: yield* Effect.acquireRelease(PubSub.unbounded<LiveEvent>(), PubSub.shutdown),
      status: yield* SubscriptionRef.make<LiveStatus>("connecting"),
      current: yield* SubscriptionRef.make<Option.Option<Scopes.Link>>(Option.none()),
      desired: new Set(options.scopes ?? []),
      inflight: new Map(),
      retryWake: yield* Queue.sliding<void>(1),
      presenceValues: new Map(),
      presence: new Map(),
      sessionId: undefined,
      joinedOnce: false
    }
  })

const whenConnected = <A, E>(
  state: Scopes.State,
  onNone: () => Effect.Effect<A, E>,
  onSome: (link: Scopes.Link) => Effect.Effect<A, E>
): Effect.Effect<A, E> => Effect.flatMap(SubscriptionRef.get(state.current), Option.match({ onNone, onSome }))

/** See `LiveClient.make`. */
export const make = (options: Options): Effect.Effect<LiveClient["Type"], never, Socket.WebSocketConstructor | Scope.Scope> =>
  Effect.gen(function*() {
    const state = yield* makeState(options)
    const settings: Connection.Settings = {
      url: () => typeof options.url === "function" ? options.url() : options.url,
      heartbeat: Duration.decode(options.heartbeatInterval ?? Duration.seconds(30)),
      idle: Duration.decode(options.idleTimeout ?? Duration.seconds(60)),
      requestTimeout: Duration.decode(options.requestTimeout ?? Duration.seconds(10)),
      backoff: state.backoff
    }
    yield* Effect.forkScoped(Connection.keepConnected(settings, session(state), state.status))
    yield* Effect.addFinalizer(() => SubscriptionRef.set(state.status, "closed"))

    return LiveClient.of({
      status: SubscriptionRef.get(state.status),
      statusChanges: state.status.changes,
      subscribeEvents: PubSub.subscribe(state.pubsub),
      events: Stream.fromPubSub(state.pubsub),
      subscribe: Scopes.subscribe(state),
      unsubscribe: Scopes.unsubscribe(state),
      scopes: Effect.sync(() => [...state.desired]),
      broadcast: (topic, event, values) =>
        whenConnected(
          state,
          () => Effect.fail(new LiveError({ reason: "disconnected", message: "not connected; ephemeral events are not queued" })),
          (link) => link.conn.write({ type: Live.FrameType.EVENT, topic, payload: { name: event, topic, ...(values === undefined ? {} : { values }) } })
        ),
      presence: (topic, values) =>
        Effect.zipRight(
          Effect.sync(() => state.presenceValues.set(topic, values)),
          whenConnected(state, () => Effect.void, (link) => link.conn.write(presenceFrame(topic, values)))
        ),
      presenceState: (topic) => Effect.sync(() => ({ ...state.presence.get(topic) })),
      reconnect: whenConnected(state, () => Effect.void, (link) => link.conn.drop)
    })
  })
