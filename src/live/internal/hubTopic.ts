/**
 * One topic of the hub in this process: its sinks, its replicated presence,
 * and the hub's hold on its transport subscription.
 *
 * Invariants: every step here is synchronous and never blocks (a sink's
 * methods only hand bytes over or note a cursor); a frame is encoded once
 * per message; a broadcast is never echoed to the sink whose id is its
 * origin.
 *
 * @internal
 */
import type * as Scope from "effect/Scope"
import type { Sink } from "../LiveHub.js"
import * as Envelope from "./hubEnvelope.js"

/** One presence entry, of this process or another. @internal */
export interface PresenceEntry {
  readonly meta: Readonly<Record<string, unknown>>
  readonly node: string
  expiresAt: number
}

/** @internal */
export interface Topic {
  readonly name: string
  readonly sinks: Set<Sink>
  /** key -> entry, for every process */
  readonly presence: Map<string, PresenceEntry>
  /**
   * The hub's reference to the topic's entry in its `RcMap` (the transport
   * subscription and the dispatch fiber): held exactly while `sinks` is not
   * empty, released with the last sink.
   */
  lease: Scope.CloseableScope | undefined
}

/** @internal */
export const make = (name: string): Topic => ({ name, sinks: new Set(), presence: new Map(), lease: undefined })

/** The topic's full presence as a PRESENCE `state` frame. @internal */
export const stateFrame = (topic: Topic): string =>
  Envelope.presenceFrame(topic.name, "state", Object.fromEntries([...topic.presence].map(([k, v]) => [k, v.meta])))

/** `frame` to every sink of the topic. @internal */
export const send = (topic: Topic, frame: string): void => {
  for (const sink of topic.sinks) sink.send(frame)
}

/** A commit in `scope` reached `cursor`, to every sink of the topic. @internal */
export const poke = (topic: Topic, scope: string, cursor: number): void => {
  for (const sink of topic.sinks) sink.poke(scope, cursor)
}

/** A broadcast to every sink but `origin`'s: decoded to those that take it so, else as one shared frame. @internal */
export const broadcast = (topic: Topic, event: string, payload: unknown, from: string, origin: string): void => {
  let frame: string | undefined
  for (const sink of topic.sinks) {
    if (sink.id === origin) continue
    if (sink.broadcast !== undefined) {
      sink.broadcast(topic.name, event, payload, from)
      continue
    }
    frame ??= Envelope.broadcastFrame(topic.name, event, payload, from)
    sink.send(frame)
  }
}

/** Add `sink` (nothing if it is there); it gets the topic's presence, if any, as a `state` frame. @internal */
export const attach = (topic: Topic, sink: Sink): void => {
  if (topic.sinks.has(sink)) return
  topic.sinks.add(sink)
  if (topic.presence.size === 0) return
  const frame = stateFrame(topic)
  if (sink.sendState !== undefined) sink.sendState(topic.name, frame)
  else sink.send(frame)
}
