/**
 * `LiveClient.makeTabs`: one live connection for the tabs of a `TabGroup`.
 * The tab that leads runs the real client (`liveClient.make`, one WebSocket);
 * the others reach the server through it over the group's channel.
 *
 * Invariants:
 * - Only a tab that leads opens a socket, once it leads, for as long as its
 *   scope is open: at most one socket per group at a time.
 * - Every tab keeps its own wanted scopes (`mine`) and presence values; the
 *   leader subscribes the union of its own and every follower's that told it
 *   (`owners`: scope → tabs). A scope is unsubscribed on the socket only
 *   when no tab wants it any more (its last owner unsubscribed or said
 *   `LiveBye`). A `forbidden` refusal forgets the scope in every tab.
 * - A follower's call is a `LiveRequest` answered by the `LiveReply` with its
 *   id. Idempotent calls (subscribe, unsubscribe, presence, attach) are sent
 *   again when a new leader announces itself (`LiveLeader`), when this tab
 *   becomes the leader (it then runs the call itself) or after
 *   `REQUEST_TIMEOUT`; the leader runs one request id at a time (a resend
 *   while the first runs is dropped). Broadcast and reconnect are sent once.
 * - After each `LiveLeader` (and when a follower starts), the follower sends
 *   all it wants (`Attach`: its scopes and presence values), so after a
 *   takeover the new socket carries every tab's subscriptions and presence,
 *   and a `LiveHello`, answered with the leader's `LiveStatus`.
 * - The leader relays every event of the socket but `Page` (`LiveEvent`),
 *   its status (`LiveStatus`, with the presence state per topic; never
 *   `closed`: another tab takes over) and echoes a follower's broadcast to
 *   the browser's other tabs (the server does not send a session its own).
 * - Each tab sees the events of its own scopes only: a `Poke`, `Broadcast`
 *   or `Presence` of a scope it does not want is not published to it, and
 *   `Online`/`Subscribed`/`Forbidden` carry its own scopes only.
 * - Every message is decoded with `LiveTabMessage`; one that does not decode
 *   (the sync client's messages, another version of the app, garbage) is
 *   ignored. All tags are prefixed `Live`.
 *
 * @since 0.1.0
 * @internal
 */
import type * as Socket from "@effect/platform/Socket"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberMap from "effect/FiberMap"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import * as Queue from "effect/Queue"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { Scope as ScopeName } from "../../protocol/Sync.js"
import { type LiveClient, LiveError, type LiveEvent, type LiveStatus, type Options } from "../LiveClient.js"
import { TabGroup } from "../TabGroup.js"
import * as Client from "./liveClient.js"
import { checkScopes } from "./liveScopes.js"

/** How long a follower waits for the leader's reply to an idempotent call before it asks again. */
export const REQUEST_TIMEOUT = Duration.seconds(15)

const Values = Schema.Record({ key: Schema.String, value: Schema.Unknown })
const Cursors = Schema.Record({ key: Schema.String, value: Schema.Number })
const Scopes = Schema.Array(ScopeName)

const Op = Schema.Union(
  Schema.TaggedStruct("Subscribe", { scopes: Scopes }),
  Schema.TaggedStruct("Unsubscribe", { scopes: Scopes }),
  Schema.TaggedStruct("Broadcast", { topic: ScopeName, event: Schema.String, values: Schema.optional(Values) }),
  Schema.TaggedStruct("Presence", { topic: ScopeName, values: Values }),
  Schema.TaggedStruct("Reconnect", {}),
  Schema.TaggedStruct("Attach", { scopes: Scopes, presence: Schema.Array(Schema.Struct({ topic: ScopeName, values: Values })) })
)
type Op = typeof Op.Type

const Result = Schema.Union(
  Schema.TaggedStruct("Ok", { cursors: Cursors }),
  Schema.TaggedStruct("Failed", {
    reason: Schema.Literal("disconnected", "timeout", "refused", "invalid", "closed"),
    message: Schema.String,
    /** Asked-for scopes the leader's client no longer wants (refused as forbidden). */
    forgotten: Schema.Array(Schema.String)
  })
)
type Result = typeof Result.Type

const Status = Schema.Literal("connecting", "connected", "disconnected", "closed")

/** A `LiveEvent` as it crosses the channel (every one but `Page`). */
const WireEvent = Schema.Union(
  Schema.TaggedStruct("Online", { sessionId: Schema.UndefinedOr(Schema.String), cursors: Cursors, reconnect: Schema.Boolean }),
  Schema.TaggedStruct("Subscribed", { cursors: Cursors }),
  Schema.TaggedStruct("Forbidden", { scopes: Schema.Array(Schema.String), message: Schema.UndefinedOr(Schema.String) }),
  Schema.TaggedStruct("Offline", { reason: Schema.String }),
  Schema.TaggedStruct("Poke", { scope: Schema.String, cursor: Schema.Number }),
  Schema.TaggedStruct("Broadcast", {
    topic: Schema.String,
    event: Schema.String,
    payload: Schema.Unknown,
    from: Schema.UndefinedOr(Schema.String)
  }),
  Schema.TaggedStruct("Presence", {
    topic: Schema.String,
    current: Values,
    joins: Schema.UndefinedOr(Values),
    leaves: Schema.UndefinedOr(Values)
  }),
  Schema.TaggedStruct("Error", {
    code: Schema.String,
    message: Schema.UndefinedOr(Schema.String),
    recoverable: Schema.UndefinedOr(Schema.Boolean)
  }),
  Schema.TaggedStruct("Closed", { reason: Schema.String, message: Schema.UndefinedOr(Schema.String) })
)
type WireEvent = Exclude<LiveEvent, { readonly _tag: "Page" }>

// the wire form is exactly the events' (a compile-time check both ways)
const _toWire = (e: WireEvent): typeof WireEvent.Encoded => e
const _fromWire = (e: typeof WireEvent.Type): WireEvent => e
void _toWire
void _fromWire

/** Every message the live clients of a tab group exchange; every tag starts with `Live`. */
export const LiveTabMessage = Schema.Union(
  /** A tab started: the leader answers with a `LiveStatus`. */
  Schema.TaggedStruct("LiveHello", { from: Schema.String }),
  /** `from` leads now: followers send their calls and their `Attach` again. */
  Schema.TaggedStruct("LiveLeader", { from: Schema.String }),
  /** A follower closes: the leader drops its scopes. */
  Schema.TaggedStruct("LiveBye", { from: Schema.String }),
  Schema.TaggedStruct("LiveRequest", { id: Schema.String, from: Schema.String, op: Op }),
  Schema.TaggedStruct("LiveReply", { id: Schema.String, to: Schema.String, result: Result }),
  /** An event of the leader's socket, for every tab but `except`. */
  Schema.TaggedStruct("LiveEvent", { event: WireEvent, except: Schema.optional(Schema.String) }),
  /** The leader's status; `presence` (when given) is its whole presence state per topic. */
  Schema.TaggedStruct("LiveStatus", { status: Status, presence: Schema.optional(Schema.Record({ key: Schema.String, value: Values })) })
)
type Message = typeof LiveTabMessage.Encoded

const decodeMessage = Schema.decodeUnknownOption(LiveTabMessage)

const newRequestId = (): string => {
  const bytes = new Uint8Array(8)
  globalThis.crypto.getRandomValues(bytes)
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")
}

/** What a tab has once it leads: the real client and who wants which scope. */
interface Leading {
  readonly real: LiveClient["Type"]
  readonly owners: Map<string, Set<string>>
}

/** One tab's state (either mode). */
interface State {
  readonly group: TabGroup["Type"]
  readonly options: Options
  readonly mine: Set<string>
  readonly presenceValues: Map<string, Readonly<Record<string, unknown>>>
  /** The last known presence state per topic (the leader's, relayed). */
  readonly presence: Map<string, Readonly<Record<string, unknown>>>
  readonly pubsub: PubSub.PubSub<LiveEvent>
  readonly status: SubscriptionRef.SubscriptionRef<LiveStatus>
  readonly replies: Map<string, Deferred.Deferred<Result>>
  readonly leaderChanged: PubSub.PubSub<void>
  /** Done once this tab leads and its real client is built. */
  readonly leading: Deferred.Deferred<Leading>
  readonly fibers: FiberMap.FiberMap<string>
}

const pick = (cursors: Readonly<Record<string, number>>, mine: ReadonlySet<string>): Record<string, number> =>
  Object.fromEntries(Object.entries(cursors).filter(([s]) => mine.has(s)))

/** `event` as the tab that wants `mine` sees it (undefined: not for it). */
const view = (mine: ReadonlySet<string>, event: LiveEvent): LiveEvent | undefined => {
  switch (event._tag) {
    case "Poke":
      return mine.has(event.scope) ? event : undefined
    case "Broadcast":
    case "Presence":
      return mine.has(event.topic) ? event : undefined
    case "Online":
      return { ...event, cursors: pick(event.cursors, mine) }
    case "Subscribed": {
      const cursors = pick(event.cursors, mine)
      return Object.keys(cursors).length === 0 ? undefined : { ...event, cursors }
    }
    case "Forbidden": {
      const scopes = event.scopes.filter((s) => mine.has(s))
      return scopes.length === 0 ? undefined : { ...event, scopes }
    }
    default:
      return event
  }
}

/** Record `event` in the tab's state (presence, forgotten scopes) and publish what the tab sees of it. */
const receive = (state: State, event: LiveEvent): Effect.Effect<void> =>
  Effect.suspend(() => {
    const seen = view(state.mine, event)
    if (event._tag === "Presence") state.presence.set(event.topic, event.current)
    if (event._tag === "Forbidden") for (const s of event.scopes) state.mine.delete(s)
    return seen === undefined ? Effect.void : Effect.asVoid(PubSub.publish(state.pubsub, seen))
  })

const own = (l: Leading, tab: string, scopes: ReadonlyArray<string>): void => {
  for (const s of scopes) {
    const tabs = l.owners.get(s) ?? new Set<string>()
    tabs.add(tab)
    l.owners.set(s, tabs)
  }
}

/** Drop `tab` from `scopes`; the scopes no tab wants any more. */
const disown = (l: Leading, tab: string, scopes: ReadonlyArray<string>): Array<string> => {
  const orphaned: Array<string> = []
  for (const s of scopes) {
    const tabs = l.owners.get(s)
    tabs?.delete(tab)
    if (tabs === undefined || tabs.size === 0) {
      l.owners.delete(s)
      orphaned.push(s)
    }
  }
  return orphaned
}

const ok = (cursors: Readonly<Record<string, number>> = {}): Result => ({ _tag: "Ok", cursors })

const toResult = (l: Leading, asked: ReadonlyArray<string>, call: Effect.Effect<Readonly<Record<string, number>> | void, LiveError>) =>
  Effect.matchEffect(call, {
    onSuccess: (cursors) => Effect.succeed(ok(cursors ?? {})),
    onFailure: (e) =>
      Effect.map(l.real.scopes, (now): Result => ({
        _tag: "Failed",
        reason: e.reason,
        message: e.message,
        forgotten: asked.filter((s) => !now.includes(s))
      }))
  })

/** Run `op` for tab `from` on the leader's socket. */
const perform = (state: State, l: Leading, from: string, op: Op): Effect.Effect<Result> => {
  const self = state.group.tabId
  switch (op._tag) {
    case "Subscribe":
      own(l, from, op.scopes)
      return toResult(l, op.scopes, l.real.subscribe(op.scopes))
    case "Unsubscribe": {
      const orphaned = disown(l, from, op.scopes)
      return orphaned.length === 0 ? Effect.succeed(ok()) : toResult(l, [], l.real.unsubscribe(orphaned))
    }
    case "Broadcast": {
      const echo: WireEvent = { _tag: "Broadcast", topic: op.topic, event: op.event, payload: op.values, from: undefined }
      return toResult(
        l,
        [],
        Effect.zipRight(
          l.real.broadcast(op.topic, op.event, op.values),
          Effect.zipRight(
            state.group.post({ _tag: "LiveEvent", event: echo, except: from } satisfies Message),
            from === self ? Effect.void : receive(state, echo)
          )
        )
      )
    }
    case "Presence":
      return Effect.as(l.real.presence(op.topic, op.values), ok())
    case "Reconnect":
      return Effect.as(l.real.reconnect, ok())
    case "Attach":
      if (from === self) return Effect.succeed(ok()) // the real client was built with this tab's wants
      own(l, from, op.scopes)
      return Effect.zipRight(
        Effect.forEach(op.presence, (p) => l.real.presence(p.topic, p.values), { discard: true }),
        op.scopes.length === 0 ? Effect.succeed(ok()) : toResult(l, op.scopes, l.real.subscribe(op.scopes))
      )
  }
}

/**
 * Run `op` here when this tab leads, else ask the leader. `resend`: ask
 * again (same id) after a leader change or `REQUEST_TIMEOUT` until answered;
 * else one attempt (not answered: `disconnected`, unless this tab now leads).
 */
const call = (state: State, op: () => Op, resend: boolean): Effect.Effect<Result> =>
  Effect.gen(function*() {
    const id = newRequestId()
    const timeout = resend ? REQUEST_TIMEOUT : Duration.decode(state.options.requestTimeout ?? Duration.seconds(10))
    for (;;) {
      const leading = yield* Deferred.poll(state.leading)
      if (Option.isSome(leading)) return yield* perform(state, yield* leading.value, state.group.tabId, op())
      const answer = yield* Effect.scoped(Effect.gen(function*() {
        const reply = yield* Deferred.make<Result>()
        state.replies.set(id, reply)
        yield* Effect.addFinalizer(() => Effect.sync(() => state.replies.delete(id)))
        const changed = yield* PubSub.subscribe(state.leaderChanged)
        yield* state.group.post({ _tag: "LiveRequest", id, from: state.group.tabId, op: op() } satisfies Message)
        return yield* Effect.raceAll([
          Effect.asSome(Deferred.await(reply)),
          Effect.as(Queue.take(changed), Option.none()),
          Effect.as(Deferred.await(state.leading), Option.none()),
          Effect.as(Effect.sleep(timeout), Option.none())
        ])
      }))
      if (Option.isSome(answer)) return answer.value
      if (!resend && !(yield* Deferred.isDone(state.leading))) {
        return { _tag: "Failed", reason: "disconnected", message: "no leader tab answered", forgotten: [] } satisfies Result
      }
    }
  })

const fromResult = (state: State, r: Result): Effect.Effect<Readonly<Record<string, number>>, LiveError> =>
  Effect.suspend(() => {
    if (r._tag === "Ok") return Effect.succeed(r.cursors)
    for (const s of r.forgotten) state.mine.delete(s)
    return Effect.fail(new LiveError({ reason: r.reason, message: r.message }))
  })

/** The follower's wants, sent to each new leader (replacing an attach still waiting). */
const attach = (state: State): Effect.Effect<void> =>
  Effect.asVoid(FiberMap.run(
    state.fibers,
    "attach",
    call(state, () => ({
      _tag: "Attach",
      scopes: [...state.mine],
      presence: [...state.presenceValues].map(([topic, values]) => ({ topic, values }))
    }), true)
  ))

const statusMessage = (state: State, status: LiveStatus): Message => ({
  _tag: "LiveStatus",
  status,
  presence: Object.fromEntries(state.presence)
})

/** What a tab does with a message of another tab, as leader (`l`) or follower. */
const onMessage = (state: State) => (raw: unknown): Effect.Effect<void> =>
  Option.match(decodeMessage(raw), {
    onNone: () => Effect.void, // the sync client's messages, another version's, garbage
    onSome: (message) =>
      Effect.flatMap(Deferred.poll(state.leading), (leading) => {
        if (Option.isSome(leading)) {
          return Effect.flatMap(leading.value, (l) => {
            switch (message._tag) {
              case "LiveHello":
                return Effect.flatMap(SubscriptionRef.get(state.status), (s) => state.group.post(statusMessage(state, s)))
              case "LiveRequest":
                return Effect.asVoid(FiberMap.run(
                  state.fibers,
                  `request:${message.id}`,
                  Effect.flatMap(perform(state, l, message.from, message.op), (result) =>
                    state.group.post({ _tag: "LiveReply", id: message.id, to: message.from, result } satisfies Message)),
                  { onlyIfMissing: true }
                ))
              case "LiveBye": {
                const orphaned = disown(l, message.from, [...l.owners.keys()].filter((s) => l.owners.get(s)?.has(message.from)))
                return orphaned.length === 0 ? Effect.void : Effect.asVoid(FiberMap.run(
                  state.fibers,
                  `bye:${message.from}`,
                  Effect.ignore(l.real.unsubscribe(orphaned))
                ))
              }
              default:
                return Effect.void
            }
          })
        }
        switch (message._tag) {
          case "LiveLeader":
            // its status may have changed before it served a `LiveHello`: ask again
            return Effect.zipRight(
              PubSub.publish(state.leaderChanged, undefined),
              Effect.zipRight(attach(state), state.group.post({ _tag: "LiveHello", from: state.group.tabId } satisfies Message))
            )
          case "LiveReply": {
            const reply = message.to === state.group.tabId ? state.replies.get(message.id) : undefined
            return reply === undefined ? Effect.void : Effect.asVoid(Deferred.succeed(reply, message.result))
          }
          case "LiveEvent":
            return message.except === state.group.tabId ? Effect.void : receive(state, message.event)
          case "LiveStatus":
            return Effect.zipRight(
              Effect.sync(() => {
                if (message.presence === undefined) return
                state.presence.clear()
                for (const [topic, current] of Object.entries(message.presence)) state.presence.set(topic, current)
              }),
              SubscriptionRef.set(state.status, message.status)
            )
          default:
            return Effect.void
        }
      })
  })

/**
 * Once this tab leads: build the real client with this tab's wants, relay
 * its events and status, then say so (`LiveLeader`). Runs until the tab's
 * scope closes; the socket closes with it.
 */
const lead = (state: State): Effect.Effect<never, never, Socket.WebSocketConstructor> =>
  Effect.scoped(Effect.gen(function*() {
    yield* state.group.whenLeader
    const real = yield* Client.make({ ...state.options, scopes: [...state.mine] })
    // runs after the relays below stop: the followers wait for the next leader
    yield* Effect.addFinalizer(() => state.group.post({ _tag: "LiveStatus", status: "disconnected" } satisfies Message))
    const l: Leading = { real, owners: new Map() }
    own(l, state.group.tabId, [...state.mine])
    const events = yield* real.subscribeEvents
    yield* Effect.forkScoped(Effect.forever(Effect.flatMap(Queue.take(events), (event) =>
      Effect.zipRight(
        Effect.sync(() => {
          if (event._tag === "Forbidden") for (const s of event.scopes) l.owners.delete(s)
        }),
        Effect.zipRight(
          receive(state, event),
          event._tag === "Page" ? Effect.void : state.group.post({ _tag: "LiveEvent", event } satisfies Message)
        )
      ))))
    yield* Effect.forkScoped(real.statusChanges.pipe(Stream.runForEach((status) =>
      Effect.zipRight(
        SubscriptionRef.set(state.status, status),
        status === "closed" ? Effect.void : state.group.post(statusMessage(state, status))
      )
    )))
    for (const [topic, values] of state.presenceValues) yield* real.presence(topic, values)
    yield* Deferred.succeed(state.leading, l)
    yield* state.group.post({ _tag: "LiveLeader", from: state.group.tabId } satisfies Message)
    return yield* Effect.never
  }))

/** See `LiveClient.makeTabs`. */
export const make = (
  options: Options
): Effect.Effect<LiveClient["Type"], never, Socket.WebSocketConstructor | TabGroup | Scope.Scope> =>
  Effect.gen(function*() {
    const group = yield* TabGroup
    if (!group.shared) return yield* Client.make(options)
    const state: State = {
      group,
      options,
      mine: new Set(options.scopes ?? []),
      presenceValues: new Map(),
      presence: new Map(),
      pubsub: yield* Effect.acquireRelease(PubSub.unbounded<LiveEvent>(), PubSub.shutdown),
      status: yield* SubscriptionRef.make<LiveStatus>("connecting"),
      replies: new Map(),
      leaderChanged: yield* Effect.acquireRelease(PubSub.unbounded<void>(), PubSub.shutdown),
      leading: yield* Deferred.make<Leading>(),
      fibers: yield* FiberMap.make<string>()
    }
    yield* Effect.addFinalizer(() =>
      Effect.zipRight(
        Effect.flatMap(Deferred.isDone(state.leading), (leads) =>
          leads ? Effect.void : group.post({ _tag: "LiveBye", from: group.tabId } satisfies Message)),
        SubscriptionRef.set(state.status, "closed")
      )
    )
    const inbox = yield* group.messages
    yield* Effect.forkScoped(Effect.forever(Effect.flatMap(Queue.take(inbox), onMessage(state))))
    yield* Effect.forkScoped(lead(state))
    yield* group.post({ _tag: "LiveHello", from: group.tabId } satisfies Message)
    yield* attach(state)

    const scopes = (f: (s: ReadonlyArray<string>) => Op, change: (s: string) => void) => (asked: ReadonlyArray<string>) =>
      Effect.flatMap(checkScopes(asked), (valid) => {
        for (const s of valid) change(s)
        return Effect.flatMap(call(state, () => f(valid), true), (r) => fromResult(state, r))
      })

    return {
      status: SubscriptionRef.get(state.status),
      statusChanges: state.status.changes,
      subscribeEvents: PubSub.subscribe(state.pubsub),
      events: Stream.fromPubSub(state.pubsub),
      subscribe: scopes((s) => ({ _tag: "Subscribe", scopes: s }), (s) => state.mine.add(s)),
      unsubscribe: (asked) =>
        Effect.asVoid(scopes((s) => ({ _tag: "Unsubscribe", scopes: s }), (s) => state.mine.delete(s))(asked)),
      scopes: Effect.sync(() => [...state.mine]),
      broadcast: (topic, event, values) =>
        Effect.asVoid(Effect.flatMap(
          call(state, () => ({ _tag: "Broadcast", topic, event, ...(values === undefined ? {} : { values }) }), false),
          (r) => fromResult(state, r)
        )),
      presence: (topic, values) =>
        Effect.zipRight(
          Effect.sync(() => state.presenceValues.set(topic, values)),
          Effect.asVoid(FiberMap.run(state.fibers, `presence:${topic}`, call(state, () => ({ _tag: "Presence", topic, values }), true)))
        ),
      presenceState: (topic) => Effect.sync(() => ({ ...state.presence.get(topic) })),
      reconnect: Effect.asVoid(call(state, () => ({ _tag: "Reconnect" }), false))
    }
  })
