/**
 * `PushPolicy`'s implementation: placeholders and probes, request sizes in
 * UTF-8 bytes without encoding, the next batch cut by count and bytes, the
 * meaning of a failed request by its status.
 *
 * @internal
 */
import * as Protocol from "../../protocol/Sync.js"
import type { PendingMutation } from "../LocalView.js"
import { type Batch, DISCARDED, PROBE, type RefusalCode, type RequestFailure, type Sent } from "../PushPolicy.js"
import type { SyncTransportError } from "../SyncTransport.js"



/** See `PushPolicy.isReservedName`. */
export const isReservedName = (name: string): boolean => name === DISCARDED || name === PROBE

/** See `PushPolicy.isPlaceholder`. */
export const isPlaceholder = (m: PendingMutation): boolean => m.name === DISCARDED

/** See `PushPolicy.isProbe`. */
export const isProbe = (m: PendingMutation): boolean => m.name === PROBE

/** See `PushPolicy.isReserved`. */
export const isReserved = (m: PendingMutation): boolean => isReservedName(m.name)

/** See `PushPolicy.placeholder`. */
export const placeholder = (m: PendingMutation): PendingMutation => ({ id: m.id, name: DISCARDED, scope: m.scope, args: undefined })

/** See `PushPolicy.probe`. */
export const probe = (m: PendingMutation): PendingMutation => ({
  id: m.id,
  name: PROBE,
  scope: m.scope,
  args: { name: m.name, args: m.args },
  ...(m.version === undefined ? {} : { version: m.version })
})

/** See `PushPolicy.probed`. */
export const probed = (m: PendingMutation): PendingMutation => {
  const args = m.args
  const name = typeof args === "object" && args !== null && "name" in args && typeof args.name === "string" ? args.name : m.name
  return {
    id: m.id,
    name,
    scope: m.scope,
    args: typeof args === "object" && args !== null && "args" in args ? args.args : undefined,
    ...(m.version === undefined ? {} : { version: m.version })
  }
}


/**
 * UTF-8 length of a string, without encoding it.
 */
const utf8Length = (s: string): number => {
  let n = 0
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x80) n += 1
    else if (c < 0x800) n += 2
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      n += 4
      i++
    } else n += 3
  }
  return n
}

/** See `PushPolicy.wireOf`. */
export const wireOf = (m: PendingMutation, scope: string = m.scope): Protocol.Mutation =>
  isReserved(m) ? { id: m.id, name: m.name, scope } : { id: m.id, name: m.name, scope, args: m.args }

const sizes = new WeakMap<PendingMutation, number>()

/** Bytes of a mutation's JSON (cached per queued value, which never changes). */
const bytesOf = (m: PendingMutation, wire: Protocol.Mutation): number => {
  if (isReserved(m)) return utf8Length(JSON.stringify(wire))
  const known = sizes.get(m)
  if (known !== undefined) return known
  const n = utf8Length(JSON.stringify(wire))
  sizes.set(m, n)
  return n
}

/**
 * Bytes of a push body around its mutations: `{"protocol":1,"client_id":…,"mutations":[]}`.
 */
const envelopeBytes = (clientId: string): number =>
  utf8Length(JSON.stringify({ protocol: Protocol.PROTOCOL_VERSION, client_id: clientId, mutations: [] }))

/** See `PushPolicy.singleRequestBytes`. */
export const singleRequestBytes = (clientId: string, wire: Protocol.Mutation): number =>
  envelopeBytes(clientId) + utf8Length(JSON.stringify(wire))

/** See `PushPolicy.nextBatch`. */
export const nextBatch = (
  queue: ReadonlyArray<PendingMutation>,
  limits: { readonly count: number; readonly bytes: number },
  clientId: string
): Batch => {
  const carriers = carrierScopes(queue)
  const sent: Array<Sent> = []
  let bytes = envelopeBytes(clientId)
  for (let i = 0; i < queue.length && sent.length < limits.count; i++) {
    const m = queue[i]
    const scope = isPlaceholder(m) ? carriers[i] : m.scope
    if (scope === undefined) break
    const wire = wireOf(m, scope)
    const size = bytesOf(m, wire) + (sent.length > 0 ? 1 : 0)
    if (sent.length > 0 && bytes + size > limits.bytes) break
    sent.push({ mutation: m, wire })
    bytes += size
  }
  return { sent, bytes }
}

/** For each position, the scope of the first app mutation at or after it (`undefined` past the last). */
const carrierScopes = (queue: ReadonlyArray<PendingMutation>): Array<string | undefined> => {
  const out = new Array<string | undefined>(queue.length)
  let next: string | undefined
  for (let i = queue.length - 1; i >= 0; i--) {
    const m = queue[i]
    if (!isReserved(m)) next = m.scope
    out[i] = next
  }
  return out
}

/** See `PushPolicy.carrierOf`. */
export const carrierOf = (queue: ReadonlyArray<PendingMutation>, m: PendingMutation): PendingMutation | undefined =>
  isPlaceholder(m) ? queue.find((p) => p.id > m.id && !isReserved(p)) : m

/** `details.min` of a `version_too_old` answer (undefined when the server did not say). */
const minOf = (details: unknown): number | undefined => {
  const min = typeof details === "object" && details !== null ? (details as { readonly min?: unknown }).min : undefined
  return typeof min === "number" ? min : undefined
}

const refusals: Readonly<Record<number, RefusalCode>> = { 400: "invalid_request", 401: "unauthorized", 403: "forbidden", 404: "not_found" }

/** See `PushPolicy.classify`. */
export const classify = (error: SyncTransportError): RequestFailure => {
  if (error._tag === "ProtocolError" && error.code === "version_not_supported") return { _tag: "Retry" }
  if (error._tag === "ProtocolError" && error.code === "version_too_old") return { _tag: "UpdateNeeded", min: minOf(error.details), message: error.message }
  if (error._tag === "ProtocolError" && error.code === "version_too_new") return { _tag: "ServerBehind", message: error.message }
  const status = error._tag === "ProtocolError" ? error.status : error.reason === "http" ? error.status : undefined
  if (status === 413) return { _tag: "TooLarge", message: error.message }
  const code = status === undefined ? undefined : refusals[status]
  return code === undefined ? { _tag: "Retry" } : { _tag: "Refused", code, message: error.message }
}
