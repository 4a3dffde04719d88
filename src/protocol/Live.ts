/**
 * Wire Schemas of PROTOCOL.md section 2 (live over WebSocket).
 *
 * A frame is one JSON text message `{ type, ref?, topic?, payload? }`. Client
 * frames are decoded here with one discriminated union, so a frame that is not
 * JSON, has an unknown `type` or a bad payload is rejected in one step with a
 * message naming the path. Server frames are typed by the same module and
 * encoded with `encodeServerFrame`. Live carries no data: pokes are hints,
 * broadcasts and presence are never stored, the sync log is the truth.
 *
 * @since 0.1.0
 */
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import { Cursor, formatParseError, Json, jsonDepthExceeds, MAX_JSON_DEPTH, parseJson, Scope } from "./Sync.js"

/**
 * The WebSocket subprotocol name, `mizu-live-v1`: the server picks it when the
 * client offers it, and accepts connections that offer none.
 *
 * @since 0.1.0
 * @category constants
 */
export const SUBPROTOCOL = "mizu-live-v1"

/**
 * Frame type codes, the `type` of every frame (a JSON number). C→S: JOIN,
 * LEAVE, EVENT, HEARTBEAT, SUBSCRIBE, UNSUBSCRIBE; S→C: the others and
 * HEARTBEAT. A client frame of any other type gets `ERROR invalid_message`.
 *
 * @since 0.1.0
 * @category constants
 */
export const FrameType = {
  JOIN: 0x01,
  LEAVE: 0x02,
  EVENT: 0x03,
  HEARTBEAT: 0x04,
  REPLY: 0x05,
  PATCH: 0x06,
  COMMAND: 0x07,
  ERROR: 0x08,
  REDIRECT: 0x09,
  CLOSE: 0x0a,
  POKE: 0x0b,
  SUBSCRIBE: 0x0c,
  UNSUBSCRIBE: 0x0d,
  BROADCAST: 0x0e,
  PRESENCE: 0x0f
} as const

/**
 * Why the server closes a session (`CLOSE {reason}`), each with the WebSocket
 * close code it closes with, in one place:
 * - `normal` (1000): the client sent LEAVE.
 * - `shutdown` (1001): the server is draining.
 * - `idle_timeout` (1000): no frame after JOIN for the idle timeout.
 * - `join_timeout` (1008): no JOIN within the JOIN deadline.
 * - `page_not_found` (1008): JOIN with a `url` no live page is registered at.
 * - `unauthorized` (4001): re-authorization (on the principal's expiry, or
 *   periodically) refused the session's token for a scope or topic it holds.
 * - `slow_consumer` (4008): the frames pending for it passed `maxPendingBytes`.
 * - `rate_limited` (4029): it sent frames faster than its frame rate limit.
 *
 * A frame over the size limit is refused by the WebSocket layer itself, with
 * code 1009 and no CLOSE frame.
 *
 * @since 0.1.0
 * @category constants
 */
export const CloseCode = {
  normal: 1000,
  shutdown: 1001,
  idle_timeout: 1000,
  join_timeout: 1008,
  page_not_found: 1008,
  unauthorized: 4001,
  slow_consumer: 4008,
  rate_limited: 4029
} as const
/**
 * Every `reason` a server's CLOSE frame carries (the keys of `CloseCode`).
 *
 * @since 0.1.0
 * @category models
 */
export type CloseReason = keyof typeof CloseCode

const Ref = Schema.optional(Schema.Number.pipe(Schema.int(), Schema.nonNegative()))
const Topic = Schema.optional(Scope)
const JsonObject = Schema.Record({ key: Schema.String, value: Json })

// ---------------------------------------------------------------------------
// Payloads
// ---------------------------------------------------------------------------

/**
 * JOIN's payload. `token` is the only credential on live (the upgrade's
 * headers are not seen); `scopes` are subscribed as SUBSCRIBE does, all or
 * nothing. `url`/`params` mount a live page; `session`/`reconnect` are unused.
 *
 * @since 0.1.0
 * @category schemas
 */
export const JoinPayload = Schema.Struct({
  token: Schema.optional(Schema.String),
  url: Schema.optional(Schema.String),
  params: Schema.optional(JsonObject),
  session: Schema.optional(Schema.String),
  reconnect: Schema.optional(Schema.Boolean),
  scopes: Schema.optional(Schema.Array(Scope))
})
/**
 * A decoded `JoinPayload`.
 *
 * @since 0.1.0
 * @category models
 */
export type JoinPayload = typeof JoinPayload.Type

/**
 * LEAVE's payload: an optional `reason` the server does not act on. The
 * answer is `CLOSE {reason: "normal"}`, then close code 1000.
 *
 * @since 0.1.0
 * @category schemas
 */
export const LeavePayload = Schema.Struct({ reason: Schema.optional(Schema.String) })

/**
 * EVENT's payload: `name` (1..128 chars) and `values`, for a live page, or, on
 * a subscribed `topic`, relayed as BROADCAST to the topic's other sessions
 * (`name: "presence"` tracks presence instead). Other keys are kept.
 *
 * @since 0.1.0
 * @category schemas
 */
export const EventPayload = Schema.Struct(
  { name: Schema.String.pipe(Schema.minLength(1), Schema.maxLength(128)), values: Schema.optional(JsonObject) },
  Schema.Record({ key: Schema.String, value: Json })
)
/**
 * A decoded `EventPayload`.
 *
 * @since 0.1.0
 * @category models
 */
export type EventPayload = typeof EventPayload.Type

/**
 * HEARTBEAT's payload both ways: the client's `{ping}` is answered with
 * `{pong: <its ping>}` and the same `ref` (`{}` without a ping).
 *
 * @since 0.1.0
 * @category schemas
 */
export const HeartbeatPayload = Schema.Struct({ ping: Schema.optional(Json), pong: Schema.optional(Json) })

/**
 * SUBSCRIBE's and UNSUBSCRIBE's payload: the scopes (topics) to add or drop.
 * A SUBSCRIBE is all or nothing; one that would pass the session's limit
 * (default 100 scopes) fails with `reason: "too_many_scopes"`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ScopesPayload = Schema.Struct({ scopes: Schema.Array(Scope) })
/**
 * A decoded `ScopesPayload`.
 *
 * @since 0.1.0
 * @category models
 */
export type ScopesPayload = typeof ScopesPayload.Type

/**
 * REPLY's payload, the answer to the request with the same `ref`. `ok` to a
 * JOIN/SUBSCRIBE carries `cursors: {scope: head}` read after subscribing (pull
 * what is beyond yours); `error` carries `reason`. `regions` (a page's first
 * render) and `result` (an EVENT's `{key}`) are additions to PROTOCOL.md.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ReplyPayload = Schema.Struct({
  status: Schema.Literal("ok", "error"),
  session_id: Schema.optional(Schema.String),
  reason: Schema.optional(Schema.String),
  message: Schema.optional(Schema.String),
  cursors: Schema.optional(Schema.Record({ key: Schema.String, value: Cursor })),
  regions: Schema.optional(Schema.Array(Schema.Struct({ id: Schema.String, html: Schema.String }))),
  result: Schema.optional(Json)
})
/**
 * A decoded `ReplyPayload`.
 *
 * @since 0.1.0
 * @category models
 */
export type ReplyPayload = typeof ReplyPayload.Type

/**
 * How the browser applies a PATCH region to the element with its id: `morph`
 * (the default: the element's content is morphed in place), `replace`
 * (content set), `append`, `prepend`, or `remove` (the element removed).
 *
 * @since 0.1.0
 * @category schemas
 */
export const PatchAction = Schema.Literal("morph", "replace", "append", "prepend", "remove")
/**
 * PATCH's payload (live pages): the regions whose markup changed, each by
 * element id with its HTML and action, and the new document `title` if it
 * changed.
 *
 * @since 0.1.0
 * @category schemas
 */
export const PatchPayload = Schema.Struct({
  regions: Schema.Array(Schema.Struct({ id: Schema.String, html: Schema.String, action: Schema.optional(PatchAction) })),
  title: Schema.optional(Schema.String)
})
/**
 * A decoded `PatchPayload`.
 *
 * @since 0.1.0
 * @category models
 */
export type PatchPayload = typeof PatchPayload.Type

/**
 * COMMAND's payload (live pages): browser commands (`focus`,
 * `scroll_into_view`, `dispatch`, `set_title`) run in order, after the PATCH;
 * the browser runtime ignores a command it does not know.
 *
 * @since 0.1.0
 * @category schemas
 */
export const CommandPayload = Schema.Struct({ commands: Schema.Array(Json) })
/**
 * ERROR's payload: `code` (e.g. `not_joined`, `invalid_message`,
 * `page_not_found`, `handler_error`). `recoverable: true` means the
 * connection stays open; `false` is followed by a CLOSE.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ErrorPayload = Schema.Struct({
  code: Schema.String,
  message: Schema.optional(Schema.String),
  recoverable: Schema.optional(Schema.Boolean)
})
/**
 * A decoded `ErrorPayload`.
 *
 * @since 0.1.0
 * @category models
 */
export type ErrorPayload = typeof ErrorPayload.Type
/**
 * REDIRECT's payload (live pages): navigate to `to`, replacing the history
 * entry when `replace` is true.
 *
 * @since 0.1.0
 * @category schemas
 */
export const RedirectPayload = Schema.Struct({ to: Schema.String, replace: Schema.optional(Schema.Boolean) })
/**
 * CLOSE's payload: the `reason` (a `CloseReason`) the server closes with,
 * sent just before the socket closes with that reason's `CloseCode`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ClosePayload = Schema.Struct({ reason: Schema.String, message: Schema.optional(Schema.String) })
/**
 * POKE's payload: `scope` has a committed change at `cursor`, visible to pull.
 * A hint: at most once, and a newer poke of a scope may replace one not yet
 * sent; pull when `cursor` is beyond yours.
 *
 * @since 0.1.0
 * @category schemas
 */
export const PokePayload = Schema.Struct({ scope: Scope, cursor: Cursor })
/**
 * A decoded `PokePayload`.
 *
 * @since 0.1.0
 * @category models
 */
export type PokePayload = typeof PokePayload.Type
/**
 * BROADCAST's payload: an ephemeral `event` (the EVENT's name) on `topic`,
 * relayed to the topic's other sessions on every process, never stored.
 * `from` is the sender's opaque handle on that topic.
 *
 * @since 0.1.0
 * @category schemas
 */
export const BroadcastPayload = Schema.Struct({
  topic: Scope,
  event: Schema.String,
  payload: Schema.optional(Json),
  from: Schema.optional(Schema.String)
})
/**
 * A decoded `BroadcastPayload`.
 *
 * @since 0.1.0
 * @category models
 */
export type BroadcastPayload = typeof BroadcastPayload.Type
/**
 * PRESENCE's payload: who is on `topic`, keyed by handle. `state` (the full
 * set) comes right after subscribing; `joins` / `leaves` are the diffs after
 * (a changed meta is a `joins`).
 *
 * @since 0.1.0
 * @category schemas
 */
export const PresencePayload = Schema.Struct({
  topic: Scope,
  state: Schema.optional(JsonObject),
  joins: Schema.optional(JsonObject),
  leaves: Schema.optional(JsonObject)
})
/**
 * A decoded `PresencePayload`.
 *
 * @since 0.1.0
 * @category models
 */
export type PresencePayload = typeof PresencePayload.Type

// ---------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------

const frame = <T extends number, P extends Schema.Schema.Any>(type: T, payload: P) =>
  Schema.Struct({ type: Schema.Literal(type), ref: Ref, topic: Topic, payload })

const frameWithEmpty = <T extends number, P extends Schema.Struct<Schema.Struct.Fields>>(type: T, payload: P) =>
  Schema.Struct({
    type: Schema.Literal(type),
    ref: Ref,
    topic: Topic,
    payload: Schema.optionalWith(payload, { default: () => ({}) as Schema.Schema.Type<P> })
  })

/**
 * The JOIN frame (C→S), the first frame of a connection; a missing payload
 * decodes as `{}`. Answered by REPLY with `session_id` and `cursors`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Join = frameWithEmpty(FrameType.JOIN, JoinPayload)
/**
 * The LEAVE frame (C→S); a missing payload decodes as `{}`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Leave = frameWithEmpty(FrameType.LEAVE, LeavePayload)
/**
 * The EVENT frame (C→S); the frame's `topic` (or `payload.topic`) names the
 * topic a broadcast or presence goes to.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Event = frame(FrameType.EVENT, EventPayload)
/**
 * The client's HEARTBEAT frame (C→S), every 30 s; a missing payload decodes
 * as `{}`. Any frame after JOIN resets the idle clock.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Heartbeat = frameWithEmpty(FrameType.HEARTBEAT, HeartbeatPayload)
/**
 * The SUBSCRIBE frame (C→S), answered by REPLY with its `ref`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Subscribe = frame(FrameType.SUBSCRIBE, ScopesPayload)
/**
 * The UNSUBSCRIBE frame (C→S), answered by REPLY `ok` with its `ref`; it also
 * ends the session's presence on those topics.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Unsubscribe = frame(FrameType.UNSUBSCRIBE, ScopesPayload)

/**
 * Every frame a client may send, discriminated by `type`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ClientFrame = Schema.Union(Join, Leave, Event, Heartbeat, Subscribe, Unsubscribe)
/**
 * A decoded client frame (payload defaults applied).
 *
 * @since 0.1.0
 * @category models
 */
export type ClientFrame = typeof ClientFrame.Type

/**
 * The REPLY frame (S→C), echoing the request's `ref`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Reply = frame(FrameType.REPLY, ReplyPayload)
/**
 * The PATCH frame (S→C, live pages).
 *
 * @since 0.1.0
 * @category schemas
 */
export const Patch = frame(FrameType.PATCH, PatchPayload)
/**
 * The COMMAND frame (S→C, live pages).
 *
 * @since 0.1.0
 * @category schemas
 */
export const Command = frame(FrameType.COMMAND, CommandPayload)
/**
 * The ERROR frame (S→C).
 *
 * @since 0.1.0
 * @category schemas
 */
export const ErrorFrame = frame(FrameType.ERROR, ErrorPayload)
/**
 * The REDIRECT frame (S→C, live pages).
 *
 * @since 0.1.0
 * @category schemas
 */
export const Redirect = frame(FrameType.REDIRECT, RedirectPayload)
/**
 * The CLOSE frame (S→C), the last frame before the server closes the socket.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Close = frame(FrameType.CLOSE, ClosePayload)
/**
 * The POKE frame (S→C), sent only after the change at its cursor committed.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Poke = frame(FrameType.POKE, PokePayload)
/**
 * The BROADCAST frame (S→C).
 *
 * @since 0.1.0
 * @category schemas
 */
export const Broadcast = frame(FrameType.BROADCAST, BroadcastPayload)
/**
 * The PRESENCE frame (S→C).
 *
 * @since 0.1.0
 * @category schemas
 */
export const Presence = frame(FrameType.PRESENCE, PresencePayload)
/**
 * The server's HEARTBEAT frame (S→C): only ever an answer to the client's,
 * with its `ref`; the server never starts a heartbeat.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ServerHeartbeat = frame(FrameType.HEARTBEAT, HeartbeatPayload)

/**
 * Every frame a server may send, discriminated by `type`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ServerFrame = Schema.Union(
  Reply,
  Patch,
  Command,
  ErrorFrame,
  Redirect,
  Close,
  Poke,
  Broadcast,
  Presence,
  ServerHeartbeat
)
/**
 * A server frame as written on the wire (the encoded side of `ServerFrame`).
 *
 * @since 0.1.0
 * @category models
 */
export type ServerFrame = typeof ServerFrame.Encoded

const decodeClient = Schema.decodeUnknownEither(ClientFrame, { errors: "first" })
const decodeServer = Schema.decodeUnknownEither(Schema.parseJson(ServerFrame), { errors: "first" })

/**
 * Decode one client text frame; the error is a message naming the path and the
 * reason (what `ERROR invalid_message` carries). JSON nested deeper than
 * `MAX_JSON_DEPTH` is refused before the Schema sees it.
 *
 * @since 0.1.0
 * @category conversions
 */
export const decodeClientFrame = (text: string): Either.Either<ClientFrame, string> => {
  let json: unknown
  try {
    json = parseJson(text)
  } catch (e) {
    return Either.left(`body: ${e instanceof Error ? e.message : String(e)}`)
  }
  if (jsonDepthExceeds(json)) return Either.left(`body: JSON nested deeper than ${MAX_JSON_DEPTH} levels`)
  return Either.mapLeft(decodeClient(json), (e) => formatParseError(e))
}

/**
 * Decode one server text frame (what clients use); the error names the path
 * and the reason. A frame of an unknown `type` fails.
 *
 * @since 0.1.0
 * @category conversions
 */
export const decodeServerFrame = (text: string): Either.Either<typeof ServerFrame.Type, string> =>
  Either.mapLeft(decodeServer(text), (e) => formatParseError(e))

/**
 * Encode a server frame as its JSON text. The frame's shape is checked by
 * TypeScript against the Schemas above, not at run time.
 *
 * @since 0.1.0
 * @category conversions
 */
export const encodeServerFrame = (frame: ServerFrame): string => JSON.stringify(frame)

/**
 * Encode a client frame as its JSON text (checked by TypeScript only).
 *
 * @since 0.1.0
 * @category conversions
 */
export const encodeClientFrame = (frame: typeof ClientFrame.Encoded): string => JSON.stringify(frame)
