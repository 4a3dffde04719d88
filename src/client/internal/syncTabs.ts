/**
 * A sync client's side of its `TabGroup`: the messages its tabs exchange
 * over the group's channel, and what each tab does with them.
 *
 * Invariants:
 * - Every tab follows `Committed` (another tab wrote the shared store): it
 *   refreshes under `locked` (`SyncState.refresh`), so its views show the
 *   other tab's optimistic mutations within a frame or two, also offline.
 * - Only the leader talks to the server. A follower's `push`, `pull` and
 *   `sync` are requests to the leader (`Request` → `Reply`), sent again when
 *   a new leader announces itself (`Leader`), when this tab becomes the
 *   leader (it then runs the call itself) or after `REQUEST_TIMEOUT`; each
 *   is idempotent, so asking twice is harmless.
 * - The leader relays its events (`Rejected`, `Stuck`, `Reset`,
 *   `Renumbered`, `Error`: not `Changes`, which every tab derives from the
 *   store) and its status to the followers, which show the leader's status
 *   with their own pending count.
 * - Every message is decoded with `TabMessage` before it is used; one that
 *   does not decode (another version of the app in another tab) is ignored.
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberSet from "effect/FiberSet"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import * as Queue from "effect/Queue"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Protocol from "../../protocol/Sync.js"
import { ClientStorageError } from "../ClientStorage.js"
import type { SyncEvent, SyncStatus } from "../SyncClient.js"
import { MutateError, type SyncFailure as Failures, SyncError } from "../SyncClient.js"
import { TransportError } from "../SyncTransport.js"
import { type SyncState, wake } from "./syncState.js"

/** How long a follower waits for the leader's reply before it asks again. */
export const REQUEST_TIMEOUT = Duration.seconds(15)

const Op = Schema.Union(
  Schema.TaggedStruct("Push", {}),
  Schema.TaggedStruct("Sync", {}),
  Schema.TaggedStruct("Pull", { scope: Schema.String, cursor: Schema.optional(Schema.Number) })
)

/** A call a follower asks the leader to make. */
export type Op = typeof Op.Type

/** A failure as it crosses the channel (classes do not survive a structured clone). */
const Failure = Schema.Struct({
  _tag: Schema.Literal("SyncError", "TransportError", "ProtocolError", "ClientStorageError", "MutateError"),
  reason: Schema.optional(Schema.String),
  code: Schema.optional(Schema.String),
  status: Schema.optional(Schema.Number),
  message: Schema.String,
  details: Schema.optional(Schema.Unknown)
})

const Pending = Schema.Struct({
  id: Schema.Number,
  name: Schema.String,
  scope: Schema.String,
  args: Schema.Unknown,
  version: Schema.optional(Schema.Number)
})

const Stuck = Schema.Struct({ mutation: Pending, error: Failure, attempts: Schema.Number })

const Status = Schema.Struct({
  online: Schema.Boolean,
  live: Schema.Literal("connecting", "connected", "disconnected", "closed", "none"),
  pending: Schema.Number,
  lastPullAt: Schema.UndefinedOr(Schema.Number),
  lastPushAt: Schema.UndefinedOr(Schema.Number),
  lastError: Schema.UndefinedOr(Schema.String),
  stuck: Schema.UndefinedOr(Stuck),
  updateNeeded: Schema.optional(Schema.UndefinedOr(Schema.Struct({ min: Schema.UndefinedOr(Schema.Number) })))
})

const Event = Schema.Union(
  Schema.TaggedStruct("Rejected", { mutation: Pending, code: Schema.String, message: Schema.String }),
  Schema.TaggedStruct("Stuck", { mutation: Pending, error: Failure, attempts: Schema.Number }),
  Schema.TaggedStruct("Reset", {
    scope: Schema.String,
    reason: Schema.Literal("cursor_too_old", "cursor_ahead", "server_lost_state", "backlog", "schema", "checksum")
  }),
  Schema.TaggedStruct("Repaired", { scope: Schema.String, ranges: Schema.Number, rows: Schema.Number }),
  Schema.TaggedStruct("Renumbered", { from: Schema.Number, count: Schema.Number }),
  Schema.TaggedStruct("UpdateNeeded", {
    min: Schema.UndefinedOr(Schema.Number),
    version: Schema.UndefinedOr(Schema.Number),
    message: Schema.String
  }),
  Schema.TaggedStruct("Error", { during: Schema.Literal("push", "pull", "snapshot"), error: Failure })
)

/** Every message of a sync client's tabs. */
export const TabMessage = Schema.Union(
  Schema.TaggedStruct("Committed", { revision: Schema.Number }),
  Schema.TaggedStruct("Hello", { from: Schema.String }),
  Schema.TaggedStruct("Leader", { from: Schema.String }),
  Schema.TaggedStruct("Request", { id: Schema.String, from: Schema.String, op: Op }),
  Schema.TaggedStruct("Reply", { id: Schema.String, to: Schema.String, failure: Schema.optional(Failure) }),
  Schema.TaggedStruct("Event", { event: Event }),
  Schema.TaggedStruct("Status", { status: Status })
)

type Failure = typeof Failure.Type

/** What a call through the leader may fail with. */
export type SyncFailure = Failures | MutateError

const decodeMessage = Schema.decodeUnknownOption(TabMessage)

const toWire = (e: SyncFailure): Failure => {
  switch (e._tag) {
    case "ProtocolError":
      return { _tag: e._tag, code: e.code, message: e.message, ...(e.details === undefined ? {} : { details: e.details }) }
    case "TransportError":
      return { _tag: e._tag, reason: e.reason, message: e.message, ...(e.status === undefined ? {} : { status: e.status }) }
    default:
      return { _tag: e._tag, reason: e.reason, message: e.message }
  }
}

const isErrorCode = Schema.is(Protocol.ErrorCode)

/** A failure back as the class it was (an unknown reason or code becomes the nearest one that says so). */
const fromWire = (f: Failure): SyncFailure => {
  switch (f._tag) {
    case "ProtocolError":
      return new Protocol.ProtocolError({
        code: f.code !== undefined && isErrorCode(f.code) ? f.code : "internal",
        message: f.message,
        ...(f.details === undefined ? {} : { details: f.details })
      })
    case "TransportError": {
      const reason = f.reason === "network" || f.reason === "timeout" || f.reason === "http" || f.reason === "token" ? f.reason : "decode"
      return new TransportError({ reason, message: f.message, ...(f.status === undefined ? {} : { status: f.status }) })
    }
    case "ClientStorageError":
      return new ClientStorageError({ reason: f.reason === "corrupt" ? "corrupt" : "unavailable", message: f.message })
    case "SyncError":
      return new SyncError({ reason: f.reason === "not_settled" ? "not_settled" : "bad_response", message: f.message })
    case "MutateError":
      return new MutateError({ reason: f.reason === "invalid_scope" ? "invalid_scope" : "rejected", message: f.message })
  }
}

/** A transport failure back (what events and the status carry). */
const transportOf = (f: Failure): Extract<SyncEvent, { _tag: "Error" }>["error"] => {
  const e = fromWire(f)
  return e._tag === "ProtocolError" || e._tag === "TransportError" ? e : new TransportError({ reason: "decode", message: e.message })
}

/** An event of the leader as it crosses the channel (`Changes` never does). */
const eventToWire = (e: SyncEvent): typeof Event.Encoded | undefined => {
  switch (e._tag) {
    case "Changes":
      return undefined
    case "Stuck":
      return { _tag: "Stuck", mutation: e.mutation, error: toWire(e.error), attempts: e.attempts }
    case "Error":
      return { _tag: "Error", during: e.during, error: toWire(e.error) }
    default:
      return e
  }
}

const eventFromWire = (e: typeof Event.Type): SyncEvent => {
  switch (e._tag) {
    case "Stuck":
      return { _tag: "Stuck", mutation: e.mutation, error: transportOf(e.error), attempts: e.attempts }
    case "Error":
      return { _tag: "Error", during: e.during, error: transportOf(e.error) }
    case "Rejected":
      return e as Extract<SyncEvent, { _tag: "Rejected" }>
    default:
      return e
  }
}

const statusToWire = (s: SyncStatus): typeof Status.Encoded => ({
  ...s,
  stuck: s.stuck === undefined ? undefined : { mutation: s.stuck.mutation, error: toWire(s.stuck.error), attempts: s.stuck.attempts }
})

const newRequestId = (): string => {
  const bytes = new Uint8Array(8)
  globalThis.crypto.getRandomValues(bytes)
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")
}

/** The calls a leader serves. */
export interface Calls {
  readonly push: Effect.Effect<void, SyncFailure>
  readonly sync: Effect.Effect<void, SyncFailure>
  readonly pull: (scope: string, cursor: number | undefined) => Effect.Effect<void, SyncFailure>
}

/** The tabs side of a sync client. */
export interface Tabs {
  /** `call` here when this tab leads; else the leader's reply to `op`. */
  readonly viaLeader: <E extends SyncFailure>(op: Op, call: Effect.Effect<void, E>) => Effect.Effect<void, E>
  /** Follow the other tabs' messages (every tab, for the client's lifetime). */
  readonly start: (calls: Calls) => Effect.Effect<void, never, Scope.Scope>
  /** Once this tab leads: relay its events and status, and say so to the followers. */
  readonly announce: Effect.Effect<void, never, Scope.Scope>
}

/** The tabs side of the client whose state is `s` (does nothing for a group of one). */
export const make = (s: SyncState): Effect.Effect<Tabs> =>
  Effect.gen(function*() {
    const { tabs } = s
    const replies = new Map<string, Deferred.Deferred<Option.Option<Failure>>>()
    const leaderChanged = yield* PubSub.unbounded<void>()
    const refreshWake = yield* Queue.sliding<void>(1)

    const ask = (op: Op) =>
      Effect.scoped(Effect.gen(function*() {
        const id = newRequestId()
        const reply = yield* Deferred.make<Option.Option<Failure>>()
        replies.set(id, reply)
        yield* Effect.addFinalizer(() => Effect.sync(() => replies.delete(id)))
        const changed = yield* PubSub.subscribe(leaderChanged)
        yield* tabs.post({ _tag: "Request", id, from: tabs.tabId, op })
        return yield* Effect.raceAll([
          Effect.asSome(Deferred.await(reply)),
          Effect.as(Queue.take(changed), Option.none()),
          Effect.as(tabs.whenLeader, Option.none()),
          Effect.as(Effect.sleep(REQUEST_TIMEOUT), Option.none())
        ])
      }))

    const viaLeader = <E extends SyncFailure>(op: Op, call: Effect.Effect<void, E>): Effect.Effect<void, E> =>
      Effect.gen(function*() {
        for (;;) {
          if (yield* tabs.isLeader) return yield* call
          const answer = yield* ask(op)
          if (Option.isSome(answer)) {
            // the leader ran the same call (`Calls` for `op`): its failure is one of `call`'s
            if (Option.isSome(answer.value)) return yield* Effect.fail(fromWire(answer.value.value) as E)
            return
          }
        }
      })

    const postStatus = Effect.flatMap(s.status.get, (status) => tabs.post({ _tag: "Status", status: statusToWire(status) }))

    const serve = (calls: Calls, id: string, from: string, op: Op) => {
      const call = op._tag === "Push" ? calls.push : op._tag === "Sync" ? calls.sync : calls.pull(op.scope, op.cursor)
      return FiberSet.run(s.fibers, Effect.flatMap(Effect.either(call), (result) =>
        tabs.post({ _tag: "Reply", id, to: from, ...(result._tag === "Left" ? { failure: toWire(result.left) } : {}) })))
    }

    const onMessage = (calls: Calls) => (raw: unknown): Effect.Effect<void> =>
      Option.match(decodeMessage(raw), {
        onNone: () => Effect.logDebug("SyncClient: ignoring a message from another tab that does not decode"),
        onSome: (message) =>
          Effect.gen(function*() {
            const leader = yield* tabs.isLeader
            switch (message._tag) {
              case "Committed":
                return yield* wake(refreshWake)
              case "Leader":
                return yield* PubSub.publish(leaderChanged, undefined)
              case "Hello":
                if (leader) yield* postStatus
                return
              case "Request":
                if (leader) yield* serve(calls, message.id, message.from, message.op)
                return
              case "Reply": {
                const reply = message.to === tabs.tabId ? replies.get(message.id) : undefined
                if (reply !== undefined) yield* Deferred.succeed(reply, Option.fromNullable(message.failure))
                return
              }
              case "Event":
                if (!leader) yield* s.publish(eventFromWire(message.event))
                return
              case "Status": {
                if (leader) return
                const st = message.status
                const stuck = st.stuck === undefined ? undefined : { ...st.stuck, error: transportOf(st.stuck.error) }
                return yield* s.setStatus((mine) => ({ ...st, stuck, pending: mine.pending }))
              }
            }
          })
      })

    const start = (calls: Calls) =>
      tabs.shared
        ? Effect.gen(function*() {
          const inbox = yield* tabs.messages
          yield* FiberSet.run(s.fibers, Effect.forever(Effect.flatMap(Queue.take(inbox), onMessage(calls))))
          // another tab's commit: refresh (the lock and the revision check are `locked`'s)
          yield* FiberSet.run(s.fibers, Effect.forever(Effect.zipRight(
            Queue.take(refreshWake),
            s.locked(Effect.void).pipe(Effect.catchAll((e) => Effect.logWarning("SyncClient: cannot reload the shared store", e.message)))
          )))
          yield* tabs.post({ _tag: "Hello", from: tabs.tabId })
        })
        : Effect.void

    const announce = tabs.shared
      ? Effect.gen(function*() {
        const events = yield* PubSub.subscribe(s.events)
        yield* FiberSet.run(s.fibers, Effect.forever(Effect.flatMap(Queue.take(events), (e) => {
          const wire = eventToWire(e)
          return wire === undefined ? Effect.void : tabs.post({ _tag: "Event", event: wire })
        })))
        yield* FiberSet.run(s.fibers, s.status.changes.pipe(
          Stream.runForEach((status) => tabs.post({ _tag: "Status", status: statusToWire(status) }))
        ))
        yield* tabs.post({ _tag: "Leader", from: tabs.tabId })
      })
      : Effect.void

    return { viaLeader, start, announce }
  })
