/**
 * A session's ephemeral messages on a topic: broadcasts (relayed to the
 * topic's other subscribers) and presence (tracked in the hub), from an
 * EVENT with a topic, or from a live page's `ctx.broadcast`.
 *
 * Invariants:
 * - Only on a topic the session subscribed, and only with the
 *   `Authorizer`'s `broadcast` action there, asked once per topic (kept until
 *   the topic is unsubscribed; re-authorization asks again).
 * - `from` and presence keys are the session's handle on the topic: 128
 *   bits of an HMAC of (session id, topic) under a random key of this
 *   process — stable for one session on one topic, unlinkable across topics
 *   and sessions, and no way back to the session id.
 * - Payloads are bounded (`maxBroadcastBytes`, `maxPresenceBytes` of JSON)
 *   and so is the rate (a token bucket of `broadcastBurst` refilled at
 *   `maxBroadcastsPerSecond`); a refusal is a `REPLY error`, the session stays.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as NodeCrypto from "node:crypto"
import type * as Live from "../../protocol/Live.js"
import { refill } from "./sessionLimits.js"
import type { SessionProtocol } from "./sessionProtocol.js"

/** An EVENT frame as decoded. */
export type EventFrame = Extract<Live.ClientFrame, { type: typeof Live.FrameType.EVENT }>

/** The key of this process's handles: random, never leaves the process. */
const handleKey = NodeCrypto.randomBytes(32)

/** A session's handle on a topic: 128 bits of an HMAC of (session id, topic). */
const handleOf = (sessionId: string, topic: string): string =>
  NodeCrypto.createHmac("sha256", handleKey).update(sessionId).update("\0").update(topic).digest("base64url").slice(0, 22)

const jsonBytes = (value: unknown): number => value === undefined ? 0 : Buffer.byteLength(JSON.stringify(value), "utf8")

/** The session's handle on `topic` if it may broadcast there, else false; asked once per topic. */
export const castGrant = (session: SessionProtocol, topic: string): Effect.Effect<string | false> => {
  const known = session.casts?.get(topic)
  if (known !== undefined) return Effect.succeed(known)
  return Effect.map(Effect.either(session.authorize("broadcast", topic)), (result) => {
    const answer = Either.isRight(result) ? handleOf(session.id, topic) : false
    ;(session.casts ??= new Map()).set(topic, answer)
    return answer
  })
}

/** One token of the session's broadcast bucket, if there is one. */
const takeCast = (session: SessionProtocol): boolean => {
  const now = Date.now()
  const { castBurst, castRate } = session.env.limits
  const tokens = refill(session.castTokens, session.castAt, now, castRate, castBurst)
  session.castAt = now
  session.castTokens = tokens < 1 ? tokens : tokens - 1
  return tokens >= 1
}

/** An EVENT on `topic`: refused unless subscribed and granted, then relayed or tracked. */
export const topicEvent = (session: SessionProtocol, frame: EventFrame, topic: string): Effect.Effect<void> => {
  if (!session.subscriptions.has(topic)) {
    return Effect.sync(() => session.replyError(frame.ref, "not_subscribed", `not subscribed to ${topic}`))
  }
  return Effect.flatMap(castGrant(session, topic), (key) => relay(session, frame, topic, key))
}

/** Presence (tracked) or a broadcast (relayed), within the session's limits; the ack tells the handle. */
const relay = (session: SessionProtocol, frame: EventFrame, topic: string, key: string | false): Effect.Effect<void> => {
  const ref = frame.ref
  if (key === false) {
    session.replyError(ref, "forbidden", `may not broadcast on ${topic}`)
    return Effect.void
  }
  const { castRate, maxBroadcast, maxPresence } = session.env.limits
  const presence = frame.payload.name === "presence"
  const body = presence ? (frame.payload.values ?? {}) : (frame.payload.values ?? frame.payload["payload"])
  const limit = presence ? maxPresence : maxBroadcast
  if (jsonBytes(body) > limit) {
    session.replyError(ref, presence ? "presence_too_large" : "broadcast_too_large", `at most ${limit} bytes of JSON`)
    return Effect.void
  }
  if (!takeCast(session)) {
    session.replyError(ref, "rate_limited", `at most ${castRate} broadcasts and presence updates per second`)
    return Effect.void
  }
  // the ack tells the client its own key on the topic (its PRESENCE key and BROADCAST `from` there)
  const ok = () => {
    if (ref !== undefined) session.reply(ref, { status: "ok", result: { key } })
  }
  const { hub } = session.env
  if (!presence) return Effect.map(hub.broadcast(topic, frame.payload.name, body, key, session.id), ok)
  const tracked = session.presence ??= new Map()
  const existed = tracked.has(topic)
  // noted before tracking yields, so the finalizer untracks it whatever happens next
  tracked.set(topic, key)
  return Effect.map(hub.trackUnscoped(topic, key, body as Readonly<Record<string, unknown>>), (tracked_) => {
    if (tracked_) return ok()
    if (!existed) tracked.delete(topic)
    session.replyError(ref, "presence_full", `${topic} has as many presence entries as it may hold`)
  })
}
