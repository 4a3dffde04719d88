/**
 * Wire Schemas of PROTOCOL.md section 2 (live over WebSocket).
 *
 * A frame is one JSON text message `{ type, ref?, topic?, payload? }`. Client
 * frames are decoded here with one discriminated union, so a frame that is not
 * JSON, has an unknown `type` or a bad payload is rejected in one step with a
 * message naming the path. Server frames are typed by the same module and
 * encoded with `encodeServerFrame`.
 *
 * @since 0.1.0
 */
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import { Cursor, formatParseError, Json, jsonDepthExceeds, MAX_JSON_DEPTH, parseJson, Scope } from "./Sync.js"

/** The WebSocket subprotocol name. */
export const SUBPROTOCOL = "mizu-live-v1"

/** Frame type codes. */
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
export type CloseReason = keyof typeof CloseCode

const Ref = Schema.optional(Schema.Number.pipe(Schema.int(), Schema.nonNegative()))
const Topic = Schema.optional(Scope)
const JsonObject = Schema.Record({ key: Schema.String, value: Json })

// ---------------------------------------------------------------------------
// Payloads
// ---------------------------------------------------------------------------

export const JoinPayload = Schema.Struct({
  token: Schema.optional(Schema.String),
  url: Schema.optional(Schema.String),
  params: Schema.optional(JsonObject),
  session: Schema.optional(Schema.String),
  reconnect: Schema.optional(Schema.Boolean),
  scopes: Schema.optional(Schema.Array(Scope))
})
export type JoinPayload = typeof JoinPayload.Type

export const LeavePayload = Schema.Struct({ reason: Schema.optional(Schema.String) })

export const EventPayload = Schema.Struct(
  { name: Schema.String.pipe(Schema.minLength(1), Schema.maxLength(128)), values: Schema.optional(JsonObject) },
  Schema.Record({ key: Schema.String, value: Json })
)
export type EventPayload = typeof EventPayload.Type

export const HeartbeatPayload = Schema.Struct({ ping: Schema.optional(Json), pong: Schema.optional(Json) })

export const ScopesPayload = Schema.Struct({ scopes: Schema.Array(Scope) })
export type ScopesPayload = typeof ScopesPayload.Type

export const ReplyPayload = Schema.Struct({
  status: Schema.Literal("ok", "error"),
  session_id: Schema.optional(Schema.String),
  reason: Schema.optional(Schema.String),
  message: Schema.optional(Schema.String),
  cursors: Schema.optional(Schema.Record({ key: Schema.String, value: Cursor })),
  regions: Schema.optional(Schema.Array(Schema.Struct({ id: Schema.String, html: Schema.String }))),
  result: Schema.optional(Json)
})
export type ReplyPayload = typeof ReplyPayload.Type

export const PatchAction = Schema.Literal("morph", "replace", "append", "prepend", "remove")
export const PatchPayload = Schema.Struct({
  regions: Schema.Array(Schema.Struct({ id: Schema.String, html: Schema.String, action: Schema.optional(PatchAction) })),
  title: Schema.optional(Schema.String)
})
export type PatchPayload = typeof PatchPayload.Type

export const CommandPayload = Schema.Struct({ commands: Schema.Array(Json) })
export const ErrorPayload = Schema.Struct({
  code: Schema.String,
  message: Schema.optional(Schema.String),
  recoverable: Schema.optional(Schema.Boolean)
})
export type ErrorPayload = typeof ErrorPayload.Type
export const RedirectPayload = Schema.Struct({ to: Schema.String, replace: Schema.optional(Schema.Boolean) })
export const ClosePayload = Schema.Struct({ reason: Schema.String, message: Schema.optional(Schema.String) })
export const PokePayload = Schema.Struct({ scope: Scope, cursor: Cursor })
export type PokePayload = typeof PokePayload.Type
export const BroadcastPayload = Schema.Struct({
  topic: Scope,
  event: Schema.String,
  payload: Schema.optional(Json),
  from: Schema.optional(Schema.String)
})
export type BroadcastPayload = typeof BroadcastPayload.Type
export const PresencePayload = Schema.Struct({
  topic: Scope,
  state: Schema.optional(JsonObject),
  joins: Schema.optional(JsonObject),
  leaves: Schema.optional(JsonObject)
})
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

export const Join = frameWithEmpty(FrameType.JOIN, JoinPayload)
export const Leave = frameWithEmpty(FrameType.LEAVE, LeavePayload)
export const Event = frame(FrameType.EVENT, EventPayload)
export const Heartbeat = frameWithEmpty(FrameType.HEARTBEAT, HeartbeatPayload)
export const Subscribe = frame(FrameType.SUBSCRIBE, ScopesPayload)
export const Unsubscribe = frame(FrameType.UNSUBSCRIBE, ScopesPayload)

/** Every frame a client may send. */
export const ClientFrame = Schema.Union(Join, Leave, Event, Heartbeat, Subscribe, Unsubscribe)
export type ClientFrame = typeof ClientFrame.Type

export const Reply = frame(FrameType.REPLY, ReplyPayload)
export const Patch = frame(FrameType.PATCH, PatchPayload)
export const Command = frame(FrameType.COMMAND, CommandPayload)
export const ErrorFrame = frame(FrameType.ERROR, ErrorPayload)
export const Redirect = frame(FrameType.REDIRECT, RedirectPayload)
export const Close = frame(FrameType.CLOSE, ClosePayload)
export const Poke = frame(FrameType.POKE, PokePayload)
export const Broadcast = frame(FrameType.BROADCAST, BroadcastPayload)
export const Presence = frame(FrameType.PRESENCE, PresencePayload)
export const ServerHeartbeat = frame(FrameType.HEARTBEAT, HeartbeatPayload)

/** Every frame a server may send. */
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
export type ServerFrame = typeof ServerFrame.Encoded

const decodeClient = Schema.decodeUnknownEither(ClientFrame, { errors: "first" })
const decodeServer = Schema.decodeUnknownEither(Schema.parseJson(ServerFrame), { errors: "first" })

/**
 * Decode one client text frame; the error is a message naming the path and the
 * reason. JSON nested deeper than `MAX_JSON_DEPTH` is refused before the Schema
 * sees it.
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

/** Decode one server text frame (what clients use). */
export const decodeServerFrame = (text: string): Either.Either<typeof ServerFrame.Type, string> =>
  Either.mapLeft(decodeServer(text), (e) => formatParseError(e))

/** Encode a server frame. The frame's type is checked by TypeScript against the Schemas above. */
export const encodeServerFrame = (frame: ServerFrame): string => JSON.stringify(frame)

/** Encode a client frame. */
export const encodeClientFrame = (frame: typeof ClientFrame.Encoded): string => JSON.stringify(frame)
