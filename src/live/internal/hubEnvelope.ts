/**
 * What one process's hub tells the others through the `LivePubSub`, and the
 * frames the hub writes to its sessions.
 *
 * Invariants: an envelope is decoded with a Schema (a malformed message from
 * the transport is dropped, never trusted); a frame is encoded once per
 * message, whatever the number of sessions it goes to.
 *
 * @internal
 */
import * as Schema from "effect/Schema"
import * as Live from "../../protocol/Live.js"

const Meta = Schema.Record({ key: Schema.String, value: Schema.Unknown })

/** @internal */
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

/** @internal */
export type Envelope = typeof Envelope.Type

/** @internal */
export const decode = Schema.decodeUnknownEither(Schema.parseJson(Envelope))

/** @internal */
export const encode = (e: Envelope): string => JSON.stringify(e)

/** A PRESENCE frame: the topic's full `state`, or `joins` / `leaves`. @internal */
export const presenceFrame = (topic: string, field: "state" | "joins" | "leaves", entries: Record<string, unknown>): string =>
  Live.encodeServerFrame({ type: Live.FrameType.PRESENCE, payload: { topic, [field]: entries } })

/** A BROADCAST frame. @internal */
export const broadcastFrame = (topic: string, event: string, payload: unknown, from: string): string =>
  Live.encodeServerFrame({
    type: Live.FrameType.BROADCAST,
    payload: { topic, event, ...(payload === undefined ? {} : { payload }), from }
  })
