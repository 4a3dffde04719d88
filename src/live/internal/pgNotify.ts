/**
 * What the Postgres `LivePubSub` puts in a NOTIFY payload, and back.
 *
 * Invariants: every topic shares one channel (`CHANNEL`); a notification is
 * a whole message `{t: topic, m: message}`, a fragment
 * `{t, f: id, i, n, b: base64 part}` or a listener's probe `{p: id}`.
 * PostgreSQL refuses payloads of 8000 bytes or more, so a larger message is
 * cut into fragments (each under `MAX_PAYLOAD` bytes, sent in one statement:
 * delivered together, in order) and put back together by the receivers,
 * which keep at most `MAX_PARTIAL` partial messages for at most
 * `PARTIAL_TTL_MS`. A message over `MAX_MESSAGE_BYTES` is not sent.
 *
 * @internal
 */
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import type { Outgoing } from "./pubsubPublisher.js"

/** The one LISTEN/NOTIFY channel. @internal */
export const CHANNEL = "mizu_live"
/** The largest NOTIFY payload PostgreSQL accepts (it must be shorter than 8000 bytes). @internal */
export const MAX_PAYLOAD = 7999
/** The largest message sent at all (in fragments). @internal */
export const MAX_MESSAGE_BYTES = 512 * 1024
/** The most fragments of one message (parts are at least 1 KiB). */
const MAX_FRAGMENTS = MAX_MESSAGE_BYTES / 1024
/** Partly received messages kept at once; the oldest is abandoned beyond it. */
const MAX_PARTIAL = 64
/** A partly received message is abandoned after this long. */
const PARTIAL_TTL_MS = 30_000

const Whole = Schema.Struct({ t: Schema.String, m: Schema.String })
const Fragment = Schema.Struct({
  t: Schema.String,
  f: Schema.String,
  i: Schema.Int,
  n: Schema.Int.pipe(Schema.between(1, MAX_FRAGMENTS)),
  b: Schema.String
})
const Probe = Schema.Struct({ p: Schema.String })
const decodeNotification = Schema.decodeUnknownEither(Schema.parseJson(Schema.Union(Fragment, Probe, Whole)))

/** A probe's payload. @internal */
export const probe = (id: string): string => JSON.stringify({ p: id })

/**
 * The NOTIFY payloads of one message: itself, or its fragments (each under
 * `MAX_PAYLOAD` bytes); `undefined` when it is over `MAX_MESSAGE_BYTES`.
 *
 * @internal
 */
export const encode = ({ message, topic }: Outgoing, id: () => string): ReadonlyArray<string> | undefined => {
  const whole = JSON.stringify({ t: topic, m: message })
  if (Buffer.byteLength(whole) <= MAX_PAYLOAD) return [whole]
  const bytes = Buffer.from(message, "utf8")
  if (bytes.length > MAX_MESSAGE_BYTES) return undefined
  const f = id()
  // the envelope of the largest fragment, with an empty part
  const overhead = Buffer.byteLength(JSON.stringify({ t: topic, f, i: 999, n: 999, b: "" }))
  const partBytes = Math.floor((MAX_PAYLOAD - overhead) / 4) * 3
  if (partBytes < 1024) return undefined
  const n = Math.ceil(bytes.length / partBytes)
  return Array.from({ length: n }, (_, i) =>
    JSON.stringify({ t: topic, f, i, n, b: bytes.subarray(i * partBytes, (i + 1) * partBytes).toString("base64") }))
}

/** Fragments put back together; bounded in count and age. */
const makeReassembly = () => {
  const partial = new Map<string, { readonly parts: Array<string | undefined>; got: number; readonly since: number }>()
  return (fragment: typeof Fragment.Type): string | undefined => {
    const now = Date.now()
    for (const [id, entry] of partial) {
      if (partial.size <= MAX_PARTIAL && now - entry.since < PARTIAL_TTL_MS) break
      partial.delete(id)
    }
    if (fragment.i < 0 || fragment.i >= fragment.n) return undefined
    let entry = partial.get(fragment.f)
    if (entry === undefined) {
      entry = { parts: new Array<string | undefined>(fragment.n), got: 0, since: now }
      partial.set(fragment.f, entry)
    }
    if (entry.parts.length !== fragment.n || entry.parts[fragment.i] !== undefined) return undefined
    entry.parts[fragment.i] = fragment.b
    if (++entry.got < fragment.n) return undefined
    partial.delete(fragment.f)
    return Buffer.concat(entry.parts.map((part) => Buffer.from(part ?? "", "base64"))).toString("utf8")
  }
}

/**
 * A receiver of notifications: a whole message (or the last fragment of
 * one) goes to `deliver`, a probe's id to `heard`; anything else is ignored.
 *
 * @internal
 */
export const makeReceiver = (
  deliver: (topic: string, message: string) => void,
  heard: (probe: string) => void
): (raw: string) => void => {
  const reassemble = makeReassembly()
  return (raw) => {
    const decoded = decodeNotification(raw)
    if (Either.isLeft(decoded)) return
    const value = decoded.right
    if ("p" in value) {
      heard(value.p)
    } else if ("f" in value) {
      const whole = reassemble(value)
      if (whole !== undefined) deliver(value.t, whole)
    } else {
      deliver(value.t, value.m)
    }
  }
}
