/**
 * Hostile input, generated: fast-check with a fixed seed (in each test's
 * name; `FUZZ_SEED=n` explores another) against a real server on a free port.
 *
 * - HTTP: malformed bodies on push / pull / snapshot — wrong types, huge
 *   numbers, deep nesting, unicode in scopes, truncated JSON, duplicate keys,
 *   `__proto__` smuggling, random bytes, wrong content types, oversized.
 *   Each gets a 4xx `ErrorBody` whose code is in the protocol's table (and
 *   is one the case allows); never a 500, never a dropped connection.
 * - Live: malformed frames → `ERROR {code: "invalid_message", recoverable: true}`
 *   each, the connection stays open (a HEARTBEAT round trip after the batch),
 *   and a second session subscribed to every scope the fuzzer names receives
 *   no BROADCAST, PRESENCE or POKE. Frames over the size limit close with
 *   1009, separately.
 *
 * Every generated request is invalid by construction; each case re-checks it
 * against PROTOCOL.md's shapes and fails loudly on a generator bug, so an
 * accidentally valid push can never slip in. Afterwards a snapshot of every
 * scope the generators can name (with and without each client id they can
 * name) is unchanged.
 */
import { assert, describe, layer } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Queue from "effect/Queue"
import * as Schema from "effect/Schema"
import * as fc from "fast-check"
import { LiveHttp, LiveProtocol, LivePubSub, Protocol } from "mizu-sync-live"
import { registry } from "./suites/EngineSuite.js"
import { range, realSleep } from "./suites/util.js"
import { BaseUrl, decodeAs, layerMemoryDeps, layerServer, post } from "./support/TestServer.js"
import { connect, type Frame, is, join, request, T, type WsClient } from "./support/WsClient.js"

const SEED = Number(process.env["FUZZ_SEED"] ?? 20_260_417)
const HTTP_RUNS = 600
const WS_RUNS = 600
const WS_UNJOINED_RUNS = 100
const MAX_BODY = 1024 * 1024
const MAX_FRAME = 64 * 1024

const real = { excludeTestServices: true } as const

// ---------------------------------------------------------------------------
// JSON with what JSON.stringify cannot write
// ---------------------------------------------------------------------------

/** A JSON text written as is: `1e999`, `"\ud800"`, 10,000 levels of nesting. */
class Raw {
  constructor(readonly text: string) {}
}
/** One key written several times, `{"k": v1, "k": v2}`; JSON.parse keeps the last. */
class Dup {
  constructor(readonly values: ReadonlyArray<unknown>) {}
}

const encode = (value: unknown): string => {
  if (value instanceof Raw) return value.text
  if (Array.isArray(value)) return `[${value.map(encode).join(",")}]`
  if (typeof value === "object" && value !== null) {
    return `{${
      Object.entries(value).filter(([, v]) => v !== undefined)
        .flatMap(([k, v]) => (v instanceof Dup ? v.values : [v]).map((x) => `${JSON.stringify(k)}:${encode(x)}`))
        .join(",")
    }}`
  }
  return JSON.stringify(value) ?? "null"
}

type Obj = Readonly<Record<string, unknown>>

/** `obj` with `key` set to `bad`, written as a duplicate after the good value when `dup`. */
const setField = (obj: Obj, key: string, bad: unknown, dup: boolean): Obj => ({
  ...obj,
  [key]: dup && key in obj ? new Dup([obj[key], bad]) : bad
})

const without = (obj: Obj, key: string, smuggle: boolean): Obj => {
  const { [key]: removed, ...rest } = obj
  // `__proto__` as a computed key is an own property: JSON.parse makes it one too
  return smuggle ? { ...rest, ["__proto__"]: { [key]: removed } } : rest
}

// ---------------------------------------------------------------------------
// Bad values
// ---------------------------------------------------------------------------

/** Every scope and client id a generator can name (all others are malformed). */
const SCOPES = ["fz:a", "fz:b", "user:1:todos", "_default"] as const
const CLIENTS = ["fz-c1", "fz-c2"] as const
const SCOPE_CHARS = /^[A-Za-z0-9_\-:./@]+$/
const CLIENT_CHARS = /^[A-Za-z0-9_\-:.]+$/

const scopeArb = fc.constantFrom(...SCOPES)
const clientArb = fc.constantFrom(...CLIENTS)

const deep = fc.tuple(fc.integer({ min: 1, max: 10_000 }), fc.boolean()).map(([depth, arrays]) =>
  arrays ? new Raw("[".repeat(depth) + "]".repeat(depth)) : new Raw("{\"a\":".repeat(depth) + "1" + "}".repeat(depth))
)
/** Numbers no integer field of the protocol accepts: beyond safe integers, infinite once parsed, fractional. */
const hugeNumber = fc.constantFrom(
  ...["9007199254740992", "-9007199254740993", "1e999", "-1e999", "1e308", "-1e308", "1.7976931348623157e308", "5e-324", "123456789012345678901234567890"]
    .map((t) => new Raw(t))
)
const fractional = fc.double({ min: -1e9, max: 1e9, noNaN: true }).filter((x) => !Number.isInteger(x))
const someJson = fc.jsonValue({ maxDepth: 2 })
const anArray = fc.array(someJson, { maxLength: 3 })
const anObject = fc.dictionary(fc.string({ maxLength: 8 }), someJson, { maxKeys: 3 })

const notString = fc.oneof(fc.integer(), fractional, fc.boolean(), fc.constant(null), anArray, anObject, deep, hugeNumber)
const notNumber = fc.oneof(fc.string(), fc.nat().map(String), fc.boolean(), fc.constant(null), anArray, anObject, deep)
const notObject = fc.oneof(fc.string(), fc.integer(), fc.boolean(), fc.constant(null), fc.array(someJson, { minLength: 1, maxLength: 3 }), deep.map((r) => r.text.startsWith("[") ? r : new Raw("[" + r.text + "]")))
const notArray = fc.oneof(fc.string(), fc.integer(), fc.boolean(), fc.constant(null), anObject, deep.filter((r) => r.text.startsWith("{")))
const notBoolean = fc.oneof(fc.string(), fc.integer({ min: 0, max: 1 }), fc.constant(null), anArray, anObject)

const badChar = fc.oneof(
  fc.constantFrom(" ", "\t", "\n", "\u0000", "á", "а" /* Cyrillic */, "ｆ", "\u200b", "\u202e", "\u00a0", "\ufeff", "\u2028", "🙂", "e\u0301", "%", "#", "?", "*", "\\", "\"", "'", "<", ">", "+", "~", ",", ";", "=", "!", "$", "&"),
  fc.string({ unit: "binary", minLength: 1, maxLength: 3 }).filter((s) => /[^A-Za-z0-9_\-:./@]/.test(s))
)
const insert = (s: string, at: number, what: string) => {
  const i = at % (s.length + 1)
  return s.slice(0, i) + what + s.slice(i)
}

const badScope = fc.oneof(
  fc.constant(""),
  fc.integer({ min: 257, max: 3000 }).map((n) => "s".repeat(n)),
  fc.tuple(scopeArb, fc.nat(), badChar).map(([s, at, ch]) => insert(s, at, ch)),
  fc.string({ unit: "binary", minLength: 1, maxLength: 40 }).filter((s) => !SCOPE_CHARS.test(s)),
  scopeArb.map((s) => new Raw(`"${s}\\ud800"`)), // a lone surrogate
  notString
)
const badClientId = fc.oneof(
  fc.constant(""),
  fc.integer({ min: 129, max: 1000 }).map((n) => "c".repeat(n)),
  // `/` and `@` are fine in a scope, not in a client id
  fc.tuple(clientArb, fc.nat(), fc.oneof(badChar, fc.constantFrom("/", "@"))).map(([c, at, ch]) => insert(c, at, ch)),
  fc.string({ unit: "binary", minLength: 1, maxLength: 40 }).filter((s) => !CLIENT_CHARS.test(s)),
  notString
)
const badCursor = fc.oneof(fc.integer({ min: -(2 ** 31), max: -1 }), fractional, hugeNumber, notNumber)
const badLimit = fc.oneof(fc.constant(0), fc.integer({ min: -1000, max: -1 }), fc.integer({ min: 1001, max: 2 ** 31 }), fractional, hugeNumber, notNumber)
const badId = fc.oneof(fc.constant(0), fc.integer({ min: -(2 ** 31), max: -1 }), fractional, hugeNumber, notNumber)
const badName = fc.oneof(fc.constant(""), fc.integer({ min: 129, max: 1000 }).map((n) => "n".repeat(n)), notString)
const badProtocol = fc.oneof(fc.integer().filter((n) => n !== 1), fractional, hugeNumber, fc.constantFrom("1", null, true, [1], { v: 1 }))

// ---------------------------------------------------------------------------
// HTTP cases
// ---------------------------------------------------------------------------

type Endpoint = "push" | "pull" | "snapshot"
type Code = Protocol.ErrorCode

interface HttpCase {
  readonly kind: string
  readonly endpoint: Endpoint
  readonly body: Uint8Array<ArrayBuffer>
  readonly contentType: string | undefined
  /** The codes this case may get (the protocol fixes no precedence between two faults). */
  readonly expect: ReadonlyArray<Code>
}

const httpCase = (kind: string, endpoint: Endpoint, body: string | Uint8Array, contentType: string | undefined, expect: ReadonlyArray<Code>): HttpCase => {
  const bytes = new Uint8Array(typeof body === "string" ? Buffer.from(body, "utf8") : body)
  return {
    kind,
    endpoint,
    body: bytes,
    contentType,
    expect,
    // fast-check prints this, not a megabyte of body, on failure
    [fc.toStringMethod]: () =>
      `${kind} ${endpoint} content-type=${JSON.stringify(contentType)} expect=${expect.join("|")} ` +
      `body(${bytes.length} B)=${JSON.stringify(Buffer.from(bytes.subarray(0, 300)).toString("utf8"))}`
  } as HttpCase
}

const GOOD_TYPES = ["application/json", "application/json; charset=utf-8", "Application/JSON", "application/json;charset=UTF-8"]
const BAD_TYPES = [
  undefined,
  "",
  "text/plain",
  "text/json",
  "json",
  "application/jsonx",
  "application/json-patch+json",
  "application/ld+json",
  "application/x-www-form-urlencoded",
  "multipart/form-data; boundary=x",
  "application/javascript",
  "*/*",
  "text/plain; charset=application/json",
  "application/json , text/plain"
]
const goodType = fc.constantFrom(...GOOD_TYPES)

const mutationArb = fc.record({
  name: fc.constantFrom("todo/create", "todo/toggle", "todo/delete", "no/such"),
  scope: fc.option(scopeArb),
  args: fc.oneof(fc.record({ id: fc.string({ minLength: 1, maxLength: 8 }), title: fc.string({ minLength: 1, maxLength: 12 }) }), someJson)
}).map((m) => ({ name: m.name, ...(m.scope === null ? {} : { scope: m.scope }), args: m.args }))

/** Valid bodies: the base every corruption starts from (and what a wrong content type carries). */
const validPush = fc.tuple(fc.option(clientArb), fc.array(mutationArb, { minLength: 1, maxLength: 4 }), fc.integer({ min: 1, max: 50 }))
  .map(([client, mutations, firstId]): Obj => ({
    ...(client === null ? {} : { client_id: client }),
    mutations: mutations.map((m, i) => ({ id: firstId + i, ...m }))
  }))
const validPull = fc.record({ scope: scopeArb, cursor: fc.integer({ min: 0, max: 2 }), limit: fc.option(fc.integer({ min: 1, max: 1000 })), client: fc.option(clientArb) })
  .map((p): Obj => ({
    scope: p.scope,
    cursor: p.cursor,
    ...(p.limit === null ? {} : { limit: p.limit }),
    ...(p.client === null ? {} : { client_id: p.client })
  }))
const validSnapshot = fc.record({ scope: scopeArb, client: fc.option(clientArb) })
  .map((s): Obj => ({ scope: s.scope, ...(s.client === null ? {} : { client_id: s.client }) }))

const validBody = (endpoint: Endpoint) => endpoint === "push" ? validPush : endpoint === "pull" ? validPull : validSnapshot
const endpointArb = fc.constantFrom<Endpoint>("push", "pull", "snapshot")

/** One corruption of a valid body: the body and the code it must get. */
interface Corrupted {
  readonly body: Obj
  readonly code: Code
}

const KNOWN_KEYS = new Set(["protocol", "client_id", "mutations", "scope", "cursor", "limit"])
/** Keys the server must ignore: random ones and the ones that look like JavaScript internals. */
const noise = fc.dictionary(
  fc.oneof(fc.string({ maxLength: 10 }), fc.constantFrom("__proto__", "constructor", "prototype", "toString", "hasOwnProperty")).filter((k) => !KNOWN_KEYS.has(k)),
  someJson,
  { maxKeys: 3 }
)

const corruptField = (base: Obj, key: string, bad: fc.Arbitrary<unknown>, code: Code = "invalid_request") =>
  fc.tuple(bad, fc.boolean()).map(([value, dup]): Corrupted => ({ body: setField(base, key, value, dup), code }))

/** A corruption of one mutation of a push. */
const corruptMutation = (base: Obj) => {
  const mutations = base["mutations"] as ReadonlyArray<Obj>
  const at = fc.nat({ max: mutations.length - 1 })
  const withMutation = (i: number, m: unknown): Obj => ({ ...base, mutations: mutations.map((x, j) => (j === i ? m : x)) })
  return fc.oneof(
    fc.tuple(at, badName, fc.boolean()).map(([i, v, dup]): Corrupted => ({ body: withMutation(i, setField(mutations[i], "name", v, dup)), code: "invalid_request" })),
    fc.tuple(at, badId, fc.boolean()).map(([i, v, dup]): Corrupted => ({ body: withMutation(i, setField(mutations[i], "id", v, dup)), code: "invalid_request" })),
    fc.tuple(at, badScope, fc.boolean()).map(([i, v, dup]): Corrupted => ({ body: withMutation(i, setField(mutations[i], "scope", v, dup)), code: "invalid_request" })),
    fc.tuple(at, notObject).map(([i, v]): Corrupted => ({ body: withMutation(i, v), code: "invalid_request" })),
    fc.tuple(at, fc.boolean()).map(([i, smuggle]): Corrupted => ({ body: withMutation(i, without(mutations[i], "name", smuggle)), code: "invalid_request" })),
    // with a client_id every mutation needs its id
    fc.tuple(at, clientArb).map(([i, client]): Corrupted => ({
      body: { ...withMutation(i, without(mutations[i], "id", false)), client_id: client },
      code: "invalid_request"
    }))
  )
}

const corruptions = (endpoint: Endpoint, base: Obj): fc.Arbitrary<Corrupted> => {
  const common = [
    corruptField(base, "protocol", badProtocol, "version_not_supported"),
    corruptField(base, "client_id", badClientId)
  ]
  switch (endpoint) {
    case "push":
      return fc.oneof(
        ...common,
        corruptField(base, "mutations", notArray),
        fc.constant<Corrupted>({ body: { ...base, mutations: [] }, code: "invalid_request" }),
        fc.constant<Corrupted>({
          body: { mutations: range(1001).map((i) => ({ name: "todo/create", scope: "fz:a", args: { id: `m${i}`, title: "t" } })) },
          code: "invalid_request"
        }),
        fc.boolean().map((smuggle): Corrupted => ({ body: without(base, "mutations", smuggle), code: "invalid_request" })),
        corruptMutation(base),
        corruptMutation(base)
      )
    case "pull":
      return fc.oneof(
        ...common,
        corruptField(base, "scope", badScope),
        corruptField(base, "cursor", badCursor),
        corruptField(base, "limit", badLimit),
        fc.tuple(fc.constantFrom("scope", "cursor"), fc.boolean()).map(([key, smuggle]): Corrupted => ({ body: without(base, key, smuggle), code: "invalid_request" }))
      )
    case "snapshot":
      return fc.oneof(
        ...common,
        corruptField(base, "scope", badScope),
        corruptField(base, "scope", badScope),
        fc.boolean().map((smuggle): Corrupted => ({ body: without(base, "scope", smuggle), code: "invalid_request" }))
      )
  }
}

const isJson = (text: string) => {
  try {
    JSON.parse(text)
    return true
  } catch {
    return false
  }
}

const shapeArb: fc.Arbitrary<HttpCase> = endpointArb.chain((endpoint) =>
  validBody(endpoint).chain((base) =>
    fc.tuple(corruptions(endpoint, base), noise, fc.boolean(), goodType).map(([c, extra, v1, type]) => {
      const withNoise: Obj = { ...extra, ...(v1 && !("protocol" in c.body) ? { protocol: 1 } : {}), ...c.body }
      return httpCase(
        c.code === "version_not_supported" ? "version" : "shape",
        endpoint,
        encode(withNoise),
        type,
        [c.code]
      )
    })
  )
)

const httpCases: fc.Arbitrary<HttpCase> = fc.oneof(
  { arbitrary: shapeArb, weight: 12 },
  // not JSON at all: random text, the truncated prefix of a valid body, trailing garbage
  {
    arbitrary: fc.tuple(endpointArb, fc.string({ unit: "binary", maxLength: 200 }).filter((s) => !isJson(s)), goodType)
      .map(([e, s, type]) => httpCase("not-json", e, s, type, ["invalid_request"])),
    weight: 2
  },
  {
    arbitrary: endpointArb.chain((e) =>
      fc.tuple(validBody(e), fc.nat(), fc.boolean(), goodType).map(([b, at, garbage, type]) => {
        const text = encode(b)
        return httpCase("truncated", e, garbage ? text + text.slice(0, 1 + (at % 5)) : text.slice(0, at % text.length), type, ["invalid_request"])
      })
    ),
    weight: 2
  },
  // random bytes (mostly not UTF-8)
  {
    arbitrary: fc.tuple(endpointArb, fc.uint8Array({ maxLength: 512 }), goodType)
      .map(([e, bytes, type]) => httpCase("bytes", e, bytes, type, ["invalid_request", "version_not_supported"])),
    weight: 2
  },
  // JSON, but not an object
  {
    arbitrary: fc.tuple(endpointArb, fc.oneof(fc.jsonValue().filter((v) => typeof v !== "object" || v === null || Array.isArray(v)), deep.map((r) => r.text.startsWith("[") ? r : new Raw(`[${r.text}]`))), goodType)
      .map(([e, v, type]) => httpCase("not-object", e, encode(v), type, ["invalid_request"])),
    weight: 2
  },
  // a valid (or a broken) body with a content type that is not application/json
  {
    arbitrary: endpointArb.chain((e) =>
      fc.tuple(validBody(e), fc.constantFrom(...BAD_TYPES)).map(([b, type]) => httpCase("content-type", e, encode(b), type, ["unsupported_media_type"]))
    ),
    weight: 2
  },
  // a valid body, over the limit
  {
    arbitrary: endpointArb.chain((e) =>
      fc.tuple(validBody(e), fc.integer({ min: 1, max: 4096 })).map(([b, over]) => {
        const text = encode(b)
        const pad = MAX_BODY - text.length + over
        return httpCase("oversized", e, `{"pad":"${"x".repeat(pad)}",${text.slice(1)}`, "application/json", ["payload_too_large"])
      })
    ),
    weight: 1
  }
)

/** PROTOCOL.md's checks, to catch a generator that made a valid request by accident. */
const requestSchema = { push: Protocol.PushRequest, pull: Protocol.PullRequest, snapshot: Protocol.SnapshotRequest } as const
const isInvalid = (c: HttpCase): boolean => {
  const type = c.contentType?.split(";")[0]?.trim().toLowerCase()
  if (type !== "application/json" || c.body.length > MAX_BODY) return true
  let json: unknown
  try {
    json = JSON.parse(Buffer.from(c.body).toString("utf8"))
  } catch {
    return true
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) return true
  if ("protocol" in json && (json as { protocol: unknown }).protocol !== 1) return true
  const decoded = Schema.decodeUnknownEither(requestSchema[c.endpoint] as Schema.Schema<unknown, unknown>)(json)
  if (Either.isLeft(decoded)) return true
  if (c.endpoint === "push") {
    const push = decoded.right as Protocol.PushRequest
    return push.client_id !== undefined && push.mutations.some((m) => m.id === undefined)
  }
  return false
}

const sendHttp = async (base: string, c: HttpCase) => {
  const res = await fetch(`${base}/_sync/${c.endpoint}`, {
    method: "POST",
    headers: c.contentType === undefined ? {} : { "content-type": c.contentType },
    body: c.body
  })
  return { status: res.status, text: await res.text() }
}

const ErrorCodeIs = Schema.is(Protocol.ErrorCode)

/** The 4xx `ErrorBody` of a hostile request, checked against the protocol's table. */
const assertProtocolError = (c: HttpCase, res: { readonly status: number; readonly text: string }) => {
  assert.isTrue(res.status >= 400 && res.status < 500, `status ${res.status}: ${res.text.slice(0, 300)}`)
  const body = decodeAs(Protocol.ErrorBody, JSON.parse(res.text))
  const code = body.error.code
  assert.isTrue(ErrorCodeIs(code), `code ${code} is not in the protocol's table`)
  if (ErrorCodeIs(code)) assert.strictEqual(Protocol.ErrorStatus[code], res.status, `status of ${code}`)
  assert.include(c.expect, code, body.error.message)
  assert.isAbove(body.error.message.length, 0)
}

// ---------------------------------------------------------------------------
// Live frames
// ---------------------------------------------------------------------------

interface WsCase {
  readonly kind: string
  readonly data: string | Buffer
}

const wsCase = (kind: string, data: string | Buffer): WsCase =>
  ({
    kind,
    data,
    [fc.toStringMethod]: () =>
      `${kind} ${typeof data === "string" ? `text(${data.length})=${JSON.stringify(data.slice(0, 300))}` : `binary(${data.length})`}`
  }) as WsCase

const topicArb = scopeArb.filter((s) => s !== "_default")

/** Valid client frames, the bases of the corruptions. */
const validFrame: fc.Arbitrary<Obj> = fc.oneof(
  fc.record({
    type: fc.constant(T.JOIN),
    ref: fc.nat(),
    payload: fc.record(
      { token: fc.string(), params: anObject, session: fc.string(), reconnect: fc.boolean(), scopes: fc.subarray([...SCOPES]) },
      { requiredKeys: [] }
    )
  }, { requiredKeys: ["type", "payload"] }),
  fc.record({ type: fc.constant(T.LEAVE), payload: fc.record({ reason: fc.string() }) }),
  fc.record({ type: fc.constant(T.EVENT), ref: fc.nat(), topic: topicArb, payload: fc.record({ name: fc.constantFrom("presence", "typing", "x"), values: anObject }) }, {
    requiredKeys: ["type", "topic", "payload"]
  }),
  fc.record({ type: fc.constant(T.HEARTBEAT), ref: fc.nat(), payload: fc.record({ ping: someJson }) }, { requiredKeys: ["type"] }),
  fc.record({ type: fc.constantFrom(T.SUBSCRIBE, T.UNSUBSCRIBE), ref: fc.nat(), payload: fc.record({ scopes: fc.subarray([...SCOPES]) }) }, {
    requiredKeys: ["type", "payload"]
  })
)

/** PROTOCOL.md's frame shapes, to catch a generator that made a valid frame by accident. */
const isValidFrame = Schema.is(Schema.parseJson(LiveProtocol.ClientFrame))

const CLIENT_TYPES = new Set<unknown>([T.JOIN, T.LEAVE, T.EVENT, T.HEARTBEAT, T.SUBSCRIBE, T.UNSUBSCRIBE])
const badType = fc.oneof(
  fc.integer().filter((n) => !CLIENT_TYPES.has(n)),
  fc.constantFrom(T.REPLY, T.PATCH, T.COMMAND, T.ERROR, T.REDIRECT, T.CLOSE, T.POKE, T.BROADCAST, T.PRESENCE),
  fractional,
  hugeNumber,
  notNumber
)
const badRef = fc.oneof(fc.integer({ min: -(2 ** 31), max: -1 }), fractional, hugeNumber, notNumber)

const payloadOf = (frame: Obj): Obj => (frame["payload"] ?? {}) as Obj
const withPayload = (frame: Obj, payload: unknown): Obj => ({ ...frame, payload })

/** A corruption of a frame's payload, per frame type. */
const corruptPayload = (frame: Obj): fc.Arbitrary<Obj> => {
  const p = payloadOf(frame)
  const field = (key: string, bad: fc.Arbitrary<unknown>) =>
    fc.tuple(bad, fc.boolean()).map(([v, dup]) => withPayload(frame, setField(p, key, v, dup)))
  const scopes = fc.oneof(notArray, fc.tuple(fc.subarray([...SCOPES]), badScope, fc.nat()).map(([ok, bad, at]) => {
    const list: Array<unknown> = [...ok]
    list.splice(at % (list.length + 1), 0, bad)
    return list
  }))
  switch (frame["type"]) {
    case T.JOIN:
      return fc.oneof(
        field("token", notString),
        field("url", notString),
        field("params", notObject),
        field("session", notString),
        field("reconnect", notBoolean),
        field("scopes", scopes),
        notObject.map((v) => withPayload(frame, v))
      )
    case T.LEAVE:
      return fc.oneof(field("reason", notString), notObject.map((v) => withPayload(frame, v)))
    case T.EVENT:
      return fc.oneof(
        field("name", badName),
        field("values", notObject),
        fc.boolean().map((smuggle) => withPayload(frame, without(p, "name", smuggle))),
        notObject.map((v) => withPayload(frame, v)),
        fc.constant(without(frame, "payload", false))
      )
    case T.HEARTBEAT:
      return notObject.map((v) => withPayload(frame, v))
    default:
      return fc.oneof(
        field("scopes", scopes),
        fc.boolean().map((smuggle) => withPayload(frame, without(p, "scopes", smuggle))),
        notObject.map((v) => withPayload(frame, v)),
        fc.constant(without(frame, "payload", false))
      )
  }
}

const corruptFrame = (frame: Obj): fc.Arbitrary<WsCase> =>
  fc.oneof(
    fc.tuple(badType, fc.boolean()).map(([v, dup]) => wsCase("type", encode(setField(frame, "type", v, dup)))),
    fc.boolean().map((smuggle) => wsCase("type", encode(without(frame, "type", smuggle)))),
    fc.tuple(badRef, fc.boolean()).map(([v, dup]) => wsCase("ref", encode(setField(frame, "ref", v, dup)))),
    fc.tuple(badScope, fc.boolean()).map(([v, dup]) => wsCase("topic", encode(setField(frame, "topic", v, dup)))),
    corruptPayload(frame).map((f) => wsCase("payload", encode(f))),
    corruptPayload(frame).map((f) => wsCase("payload", encode(f)))
  )

const wsCases: fc.Arbitrary<WsCase> = fc.oneof(
  { arbitrary: validFrame.chain(corruptFrame), weight: 12 },
  { arbitrary: fc.string({ unit: "binary", maxLength: 200 }).filter((s) => !isJson(s)).map((s) => wsCase("not-json", s)), weight: 2 },
  {
    arbitrary: fc.tuple(validFrame, fc.nat()).map(([f, at]) => {
      const text = encode(f)
      return wsCase("truncated", text.slice(0, at % text.length))
    }),
    weight: 2
  },
  {
    arbitrary: fc.oneof(fc.jsonValue().filter((v) => typeof v !== "object" || v === null || Array.isArray(v)), deep.map((r) => r.text.startsWith("[") ? r : new Raw(`[${r.text}]`)))
      .map((v) => wsCase("not-object", encode(v))),
    weight: 2
  },
  { arbitrary: fc.uint8Array({ maxLength: 512 }).map((b) => wsCase("binary", Buffer.from(b))), weight: 1 }
)

// ---------------------------------------------------------------------------
// Running properties inside Effect
// ---------------------------------------------------------------------------

const check = <A>(arbitrary: fc.Arbitrary<A>, predicate: (a: A) => Promise<void>, params: fc.Parameters<[A]>) =>
  Effect.tryPromise({
    try: () => fc.assert(fc.asyncProperty(arbitrary, predicate), params),
    catch: (e) => (e instanceof Error ? e : new Error(String(e)))
  })

/** Every scope, also as each client sees it (`last_mutation_id`). */
const snapshotAll = (base: string) =>
  Effect.forEach(
    SCOPES.flatMap((scope) => [undefined, ...CLIENTS].map((client) => ({ scope, ...(client === undefined ? {} : { client_id: client }) }))),
    (body) =>
      Effect.map(post(`${base}/_sync/snapshot`, JSON.stringify(body)), (r) => {
        assert.strictEqual(r.status, 200, r.text)
        return { body, snapshot: decodeAs(Protocol.SnapshotResponse, r.json) }
      })
  )

/** Give every scope some data and every client some processed mutations. */
const populate = (base: string) =>
  Effect.forEach(SCOPES, (scope, i) =>
    Effect.gen(function*() {
      const plain = yield* post(`${base}/_sync/push`, JSON.stringify({ mutations: [{ name: "todo/create", scope, args: { id: `p${i}`, title: "plain" } }] }))
      assert.strictEqual(plain.status, 200)
      for (const client of CLIENTS) {
        const res = yield* post(`${base}/_sync/push`, JSON.stringify({
          client_id: client,
          mutations: [{ id: i + 1, name: "todo/create", scope, args: { id: `${client}-${i}`, title: client } }]
        }))
        assert.isTrue(decodeAs(Protocol.PushResponse, res.json).results[0].ok)
      }
    }), { discard: true })

const isHubFrame = (f: Frame) => f.type === T.BROADCAST || f.type === T.PRESENCE || f.type === T.POKE

describe("fuzzed hostile input", () => {
  // both edges of the server: the platform's router (tracing on) and Node's request event (`tracing: false`, SyncHttp.nodeHandler)
  for (const tracing of [true, false]) layer(layerServer({ registry, tracing }, layerMemoryDeps), real)(tracing ? "HTTP" : "HTTP, tracing: false", (it) => {
    it.effect(`${HTTP_RUNS} malformed bodies on push / pull / snapshot: each a 4xx ErrorBody, state unchanged (seed ${SEED})`, () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        yield* populate(base)
        const before = yield* snapshotAll(base)
        const kinds = new Map<string, number>()
        yield* check(httpCases, async (c) => {
          kinds.set(c.kind, (kinds.get(c.kind) ?? 0) + 1)
          if (!isInvalid(c)) throw new Error(`generator bug: a valid ${c.endpoint} request was generated`)
          assertProtocolError(c, await sendHttp(base, c))
        }, { seed: SEED, numRuns: HTTP_RUNS })
        const total = [...kinds.values()].reduce((a, b) => a + b, 0)
        assert.isAtLeast(total, 500)
        for (const kind of ["shape", "version", "not-json", "truncated", "bytes", "not-object", "content-type", "oversized"]) {
          assert.isAtLeast(kinds.get(kind) ?? 0, 5, `${kind} cases: ${JSON.stringify([...kinds])}`)
        }
        // the process is up and nothing changed, in any scope a body could name
        const pull = yield* post(`${base}/_sync/pull`, JSON.stringify({ scope: "fz:a", cursor: 0 }))
        assert.strictEqual(pull.status, 200)
        assert.deepStrictEqual(yield* snapshotAll(base), before)
      }))

    it.effect("regression: JSON nested 10,000 deep gets 400 invalid_request, never 500", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const nested = "[".repeat(10_000) + "]".repeat(10_000)
        for (
          const [endpoint, body] of [
            ["pull", `{"scope":${nested},"cursor":0}`],
            ["pull", `{"scope":"fz:a","cursor":${nested}}`],
            ["snapshot", `{"scope":${nested}}`],
            ["push", `{"mutations":[{"name":${nested}}]}`],
            ["push", nested],
            // valid shapes, but JSON no server can write back (JSON.stringify overflows at a few thousand levels)
            ["push", `{"mutations":[{"name":"todo/create","scope":"fz:a","args":${nested}}]}`],
            ["pull", `{"scope":"fz:a","cursor":0,"x":${nested}}`]
          ] as const
        ) {
          const res = yield* post(`${base}/_sync/${endpoint}`, body)
          assert.strictEqual(res.status, 400, `${endpoint}: ${res.text.slice(0, 200)}`)
          assert.strictEqual(decodeAs(Protocol.ErrorBody, res.json).error.code, "invalid_request")
        }
        // the bound: a body nests at most MAX_JSON_DEPTH levels (the body object is level 1)
        const atDepth = (levels: number) => `{"scope":"fz:a","cursor":0,"x":${"[".repeat(levels - 1)}${"]".repeat(levels - 1)}}`
        assert.strictEqual((yield* post(`${base}/_sync/pull`, atDepth(Protocol.MAX_JSON_DEPTH))).status, 200)
        const over = yield* post(`${base}/_sync/pull`, atDepth(Protocol.MAX_JSON_DEPTH + 1))
        assert.strictEqual(over.status, 400)
        assert.include(decodeAs(Protocol.ErrorBody, over.json).error.message, "nested deeper")
      }))
  })

  // the fuzzer sends its frames as fast as they are answered: far above the default frame rate
  layer(layerServer({ registry, live: { maxFramesPerSecond: Infinity, frameBurst: Infinity } }, layerMemoryDeps), real)("live", (it) => {
    it.effect(
      `${WS_RUNS} malformed frames on a joined session (and ${WS_UNJOINED_RUNS} before JOIN): each invalid_message, nothing leaks (seed ${SEED})`,
      () =>
        Effect.gen(function*() {
          const base = yield* BaseUrl
          yield* populate(base)
          const before = yield* snapshotAll(base)
          const topics = SCOPES.filter((s) => s !== "_default")
          const observer = yield* connect(base)
          assert.strictEqual((yield* join(observer, { scopes: [...SCOPES] })).status, "ok")
          const fuzzer = yield* connect(base)
          assert.strictEqual((yield* join(fuzzer, { scopes: [...SCOPES] })).status, "ok")
          const joinedAt = fuzzer.frames.length

          const kinds = new Map<string, number>()
          const sendBad = (c: WsClient) => async (x: WsCase) => {
            kinds.set(x.kind, (kinds.get(x.kind) ?? 0) + 1)
            if (typeof x.data === "string" && isValidFrame(x.data)) {
              throw new Error("generator bug: a valid frame was generated")
            }
            assert.isAtMost(Buffer.byteLength(x.data), MAX_FRAME, "generator bug: frame over the limit")
            const from = c.frames.length
            c.sendRaw(x.data)
            const answer = await Effect.runPromise(
              c.waitFor((f) => c.frames.indexOf(f) >= from, 5000).pipe(Effect.mapError((e) => new Error(e.message.slice(0, 300))))
            )
            assert.strictEqual(answer.type, T.ERROR, JSON.stringify(answer))
            if (answer.type === T.ERROR) {
              assert.strictEqual(answer.payload.code, "invalid_message", answer.payload.message)
              assert.strictEqual(answer.payload.recoverable, true)
            }
          }
          // a session's frames are handled in order: stop at the first failure, no shrinking on a used socket
          yield* check(wsCases, sendBad(fuzzer), { seed: SEED, numRuns: WS_RUNS, endOnFailure: true })

          // the connection is open and answered nothing but the ERRORs
          fuzzer.send({ type: T.HEARTBEAT, payload: { ping: "after-fuzz" } })
          yield* fuzzer.waitFor(is(T.HEARTBEAT, (f) => f.payload.pong === "after-fuzz"))
          const answers = fuzzer.frames.slice(joinedAt)
          assert.strictEqual(answers.length, WS_RUNS + 1)
          assert.isTrue(answers.slice(0, WS_RUNS).every(is(T.ERROR, (f) => f.payload.code === "invalid_message")))

          // before JOIN too: malformed frames get invalid_message (not not_joined), and JOIN works after them
          const unjoined = yield* connect(base)
          yield* check(wsCases, sendBad(unjoined), { seed: SEED + 1, numRuns: WS_UNJOINED_RUNS, endOnFailure: true })
          assert.strictEqual((yield* join(unjoined, { scopes: ["fz:a"] })).status, "ok")

          // the observer got nothing from any of it
          observer.send({ type: T.HEARTBEAT, payload: { ping: "observer" } })
          yield* observer.waitFor(is(T.HEARTBEAT, (f) => f.payload.pong === "observer"))
          yield* realSleep(50)
          assert.deepStrictEqual(observer.frames.filter(isHubFrame), [])
          assert.deepStrictEqual(yield* snapshotAll(base), before)
          const total = [...kinds.values()].reduce((a, b) => a + b, 0)
          assert.strictEqual(total, WS_RUNS + WS_UNJOINED_RUNS)
          for (const kind of ["type", "ref", "topic", "payload", "not-json", "truncated", "not-object", "binary"]) {
            assert.isAtLeast(kinds.get(kind) ?? 0, 5, `${kind} cases: ${JSON.stringify([...kinds])}`)
          }

          // control: the observer does get a broadcast a valid EVENT makes
          const ack = yield* request(fuzzer, { type: T.EVENT, topic: topics[0], payload: { name: "typing", values: { on: true } } })
          assert.strictEqual(ack.status, "ok")
          yield* observer.waitFor(is(T.BROADCAST, (f) => f.payload.topic === topics[0]))
        }).pipe(Effect.scoped)
    )

    it.effect("regression: a frame nested 10,000 deep gets invalid_message, the session lives", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const c = yield* connect(base)
        yield* join(c, { scopes: ["fz:a"] })
        const nested = "[".repeat(10_000) + "]".repeat(10_000)
        for (
          const text of [
            `{"type":${nested}}`,
            `{"type":4,"ref":${nested}}`,
            `{"type":12,"payload":{"scopes":[${nested}]}}`,
            // valid shapes: a ping echoed back, a broadcast relayed, presence tracked — none could be written again
            `{"type":4,"payload":{"ping":${nested}}}`,
            `{"type":3,"topic":"fz:a","payload":{"name":"typing","values":{"v":${nested}}}}`,
            `{"type":3,"topic":"fz:a","payload":{"name":"presence","values":{"v":${nested}}}}`
          ]
        ) {
          const from = c.frames.length
          c.sendRaw(text)
          const err = yield* c.waitFor(is(T.ERROR, (f) => c.frames.indexOf(f) >= from))
          assert.strictEqual(err.payload.code, "invalid_message")
        }
        // the bound: a frame nests at most MAX_JSON_DEPTH levels (the frame object is level 1)
        const ping = (levels: number) => `{"type":4,"payload":{"ping":${"[".repeat(levels - 2)}${"]".repeat(levels - 2)}}}`
        const from = c.frames.length
        c.sendRaw(ping(Protocol.MAX_JSON_DEPTH + 1))
        const over = yield* c.waitFor((f) => c.frames.indexOf(f) >= from)
        assert.isTrue(is(T.ERROR, (f) => f.payload.code === "invalid_message")(over), JSON.stringify(over))
        c.sendRaw(ping(Protocol.MAX_JSON_DEPTH))
        yield* c.waitFor(is(T.HEARTBEAT, (f) => Array.isArray(f.payload.pong)))
      }).pipe(Effect.scoped))
  })

  layer(layerServer({ registry, presence: { renewInterval: "50 millis", presenceTtl: "300 millis" } }, layerMemoryDeps), real)("live, the hub", (it) => {
    /** What the other processes see on a topic's transport, for `ms`. */
    const envelopes = (topic: string, ms: number) =>
      Effect.gen(function*() {
        const pubsub = yield* LivePubSub.LivePubSub
        const queue = yield* pubsub.subscribe(topic)
        yield* realSleep(ms)
        return (yield* Queue.takeAll(queue)).pipe(Chunk.toReadonlyArray, (all) => all.map((raw) => JSON.parse(raw) as { readonly _tag: string; readonly entries?: Record<string, unknown> }))
      }).pipe(Effect.scoped)

    it.effect("this process re-announces its presence entries every renewal interval (or the others expire them)", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const topic = "fz:renew"
        const c = yield* connect(base)
        yield* join(c, { scopes: [topic] })
        // the session's presence key on the topic (a handle, not its session id), as its ack tells it
        const ack = yield* request(c, { type: T.EVENT, topic, payload: { name: "presence", values: { user: "ann" } } })
        const key = (ack.result as { readonly key: string }).key
        const seen = yield* envelopes(topic, 400)
        const renewals = seen.filter((e) => e._tag === "renew" && e.entries?.[key] !== undefined)
        assert.isAtLeast(renewals.length, 2, JSON.stringify(seen))
      }).pipe(Effect.scoped))

    it.effect("regression: presence nested too deep to write gets invalid_message and cannot break the hub for others", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const pubsub = yield* LivePubSub.LivePubSub
        const topic = "fz:presence"
        const watcher = yield* connect(base)
        yield* join(watcher, { scopes: [topic] })
        const attacker = yield* connect(base)
        yield* join(attacker, { scopes: [topic] })
        const nested = "[".repeat(10_000) + "]".repeat(10_000)
        attacker.sendRaw(`{"type":3,"topic":"${topic}","payload":{"name":"presence","values":{"v":${nested}}}}`)
        yield* realSleep(200) // a few renewal rounds
        // another process opens the topic: it asks this one to announce its presence
        yield* pubsub.publish(topic, JSON.stringify({ _tag: "sync", topic, node: "another-process" }))
        // this process still relays the topic: pokes reach the watcher
        const push = yield* post(`${base}/_sync/push`, JSON.stringify({ mutations: [{ name: "todo/create", scope: topic, args: { id: "a", title: "a" } }] }))
        assert.strictEqual(push.status, 200)
        yield* watcher.waitFor(is(T.POKE, (f) => f.payload.scope === topic))
        // and it still expires another process's entries that are not renewed
        yield* pubsub.publish(topic, JSON.stringify({ _tag: "join", topic, key: "ghost", meta: {}, node: "another-process" }))
        yield* watcher.waitFor(is(T.PRESENCE, (f) => f.payload.joins?.["ghost"] !== undefined))
        yield* watcher.waitFor(is(T.PRESENCE, (f) => f.payload.leaves?.["ghost"] !== undefined), 3000)
        // the attacker got its error, on a connection that is still open
        const err = yield* attacker.waitFor(is(T.ERROR))
        assert.strictEqual(err.payload.code, "invalid_message")
        attacker.send({ type: T.HEARTBEAT, payload: { ping: 3 } })
        yield* attacker.waitFor(is(T.HEARTBEAT))
      }).pipe(Effect.scoped))
  })

  layer(layerServer({ registry }, layerMemoryDeps), real)("live, connection level", (it) => {
    it.effect(`frames over the 64 KiB limit close with 1009; at the limit they are just invalid (seed ${SEED})`, () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const oversized = fc.sample(
          fc.tuple(fc.integer({ min: MAX_FRAME + 1, max: 3 * MAX_FRAME }), fc.boolean(), fc.boolean()),
          { seed: SEED, numRuns: 6 }
        )
        for (const [size, binary, joinFirst] of oversized) {
          const c = yield* connect(base)
          if (joinFirst) yield* join(c)
          c.sendRaw(binary ? Buffer.alloc(size, 0x7b) : `{"type":4,"payload":{"ping":"${"x".repeat(size)}"}}`)
          const closed = yield* c.closed
          assert.strictEqual(closed.code, 1009, `${size} bytes, ${binary ? "binary" : "text"}`)
        }
        // exactly at the limit: read, and answered as the malformed frame it is
        const c = yield* connect(base)
        yield* join(c)
        c.sendRaw("x".repeat(MAX_FRAME))
        const err = yield* c.waitFor(is(T.ERROR))
        assert.strictEqual(err.payload.code, "invalid_message")
        // a text frame that is not UTF-8: the WebSocket protocol itself closes it (RFC 6455: 1007)
        const notUtf8 = yield* connect(base)
        yield* join(notUtf8)
        notUtf8.ws.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false })
        assert.strictEqual((yield* notUtf8.closed).code, 1007)
        // the server is up and holds no session of the closed connections
        c.send({ type: T.HEARTBEAT, payload: { ping: 2 } })
        yield* c.waitFor(is(T.HEARTBEAT))
        const server = yield* LiveHttp.LiveServer
        let open = -1
        for (let i = 0; i < 50 && open !== 1; i++) {
          yield* realSleep(20)
          open = yield* server.sessionCount
        }
        assert.strictEqual(open, 1)
      }).pipe(Effect.scoped))
  })
})
