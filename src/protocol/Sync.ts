/**
 * Wire Schemas of PROTOCOL.md section 1 (sync over HTTP).
 *
 * This is the one place that knows the JSON shape of the protocol: the server
 * decodes every body with these Schemas and every client encodes with them.
 * Field names are snake_case on the wire, as the protocol fixes them.
 *
 * @since 0.1.0
 */
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"

/** The protocol version this module speaks. */
export const PROTOCOL_VERSION = 1 as const

/** Every version a server built from this module answers. */
export const SUPPORTED_VERSIONS: ReadonlyArray<number> = [PROTOCOL_VERSION]

/** Scope: 1..256 chars of `A-Z a-z 0-9 _ - : . / @`. */
export const Scope = Schema.String.pipe(
  Schema.minLength(1),
  Schema.maxLength(256),
  Schema.pattern(/^[A-Za-z0-9_\-:./@]+$/, {
    message: () => "scope may contain only A-Z a-z 0-9 _ - : . / @"
  })
)
export type Scope = typeof Scope.Type

/** ClientId: 1..128 chars of `A-Z a-z 0-9 _ - : .`. */
export const ClientId = Schema.String.pipe(
  Schema.minLength(1),
  Schema.maxLength(128),
  Schema.pattern(/^[A-Za-z0-9_\-:.]+$/, {
    message: () => "client_id may contain only A-Z a-z 0-9 _ - : ."
  })
)
export type ClientId = typeof ClientId.Type

/** The scope a mutation without `scope` goes to. */
export const DEFAULT_SCOPE: Scope = "_default"

/** A JSON-safe integer in `[min, MAX_SAFE_INTEGER]`. */
const IntFrom = (min: number) =>
  Schema.Number.pipe(Schema.int(), Schema.greaterThanOrEqualTo(min), Schema.lessThanOrEqualTo(Number.MAX_SAFE_INTEGER))

/** A cursor: 0 means "nothing yet"; changes have cursors >= 1. */
export const Cursor = IntFrom(0)

/**
 * The deepest nesting of arrays and objects a request body or a live frame
 * may have. Deeper JSON parses, but cannot be written back or described in an
 * error (`JSON.stringify` and error formatting overflow the stack at a few
 * thousand levels), so it is refused at the door: `invalid_request` /
 * `invalid_message`.
 */
export const MAX_JSON_DEPTH = 64

/** Whether a parsed JSON value nests arrays and objects deeper than `max` (iterative, so the check itself is safe at every depth). */
export const jsonDepthExceeds = (value: unknown, max: number = MAX_JSON_DEPTH): boolean => {
  const values: Array<unknown> = [value]
  const depths: Array<number> = [0]
  while (values.length > 0) {
    const v = values.pop()
    const depth = (depths.pop() ?? 0) + 1
    if (typeof v !== "object" || v === null) continue
    if (depth > max) return true
    for (const child of Array.isArray(v) ? v : Object.values(v)) {
      values.push(child)
      depths.push(depth)
    }
  }
  return false
}

/**
 * `JSON.parse` for untrusted request bodies and frames: a `"__proto__"` key
 * is dropped, so no decoded object can get a prototype from the wire (the
 * Schemas copy keys by assignment, and assigning `__proto__` sets the
 * prototype). Throws as `JSON.parse` does. Not for responses that carry
 * `SnapshotData`: there `"__proto__"` may be an entity id, so parse them with
 * `JSON.parse` (own keys, never prototypes) and decode with the Schema.
 */
export const parseJson = (text: string): unknown =>
  JSON.parse(text, (key, value: unknown) => (key === "__proto__" ? undefined : value))

/** Any JSON value (bodies are JSON-parsed before decoding, so this is already JSON). */
export const Json: Schema.Schema<unknown> = Schema.Unknown

/** An optional `protocol` field every request body may carry. */
export const ProtocolField = Schema.optional(Schema.Number)

/** A mutation as pushed by a client. */
export const Mutation = Schema.Struct({
  id: Schema.optional(IntFrom(1)),
  name: Schema.String.pipe(Schema.minLength(1), Schema.maxLength(128)),
  scope: Schema.optional(Scope),
  args: Schema.optional(Json)
})
export type Mutation = typeof Mutation.Type

export const ChangeOp = Schema.Literal("create", "update", "delete")
export type ChangeOp = typeof ChangeOp.Type

/** One committed change in a scope's log. `data` is absent on `delete`. */
export const Change = Schema.Struct({
  cursor: IntFrom(1),
  scope: Scope,
  entity: Schema.String,
  id: Schema.String,
  op: ChangeOp,
  data: Schema.optional(Json),
  ts: Schema.String
})
export type Change = typeof Change.Type

export const MutationErrorCode = Schema.Literal("out_of_order", "unknown_mutation", "invalid_args", "rejected")
export type MutationErrorCode = typeof MutationErrorCode.Type

export const MutationError = Schema.Struct({
  code: MutationErrorCode,
  message: Schema.String,
  expected: Schema.optional(Schema.Number)
})
export type MutationError = typeof MutationError.Type

/**
 * The outcome of one mutation of a push. `duplicate: true`: the id was
 * processed before; `ok: true` when it succeeded then (or the server no
 * longer remembers how it went), `ok: false` with the `error` it failed with
 * then (the server remembers each client's last failed mutations), so a
 * retry whose first reply was lost still learns of its rejection.
 */
export const MutationResult = Schema.Struct({
  id: Schema.optional(Schema.Number),
  ok: Schema.Boolean,
  cursor: Schema.Number,
  duplicate: Schema.optional(Schema.Literal(true)),
  error: Schema.optional(MutationError)
})
export type MutationResult = typeof MutationResult.Type

export const MAX_MUTATIONS_PER_PUSH = 1000

export const PushRequest = Schema.Struct({
  protocol: ProtocolField,
  client_id: Schema.optional(ClientId),
  mutations: Schema.Array(Mutation).pipe(Schema.minItems(1), Schema.maxItems(MAX_MUTATIONS_PER_PUSH))
})
export type PushRequest = typeof PushRequest.Type

export const PushResponse = Schema.Struct({
  results: Schema.Array(MutationResult)
})
export type PushResponse = typeof PushResponse.Type

export const DEFAULT_PULL_LIMIT = 100
export const MAX_PULL_LIMIT = 1000

export const PullRequest = Schema.Struct({
  protocol: ProtocolField,
  scope: Scope,
  cursor: Cursor,
  limit: Schema.optional(Schema.Number.pipe(Schema.int(), Schema.between(1, MAX_PULL_LIMIT))),
  client_id: Schema.optional(ClientId)
})
export type PullRequest = typeof PullRequest.Type

export const PullResponse = Schema.Struct({
  changes: Schema.Array(Change),
  cursor: Schema.Number,
  has_more: Schema.Boolean,
  last_mutation_id: Schema.optional(Schema.Number)
})
export type PullResponse = typeof PullResponse.Type

export const SnapshotRequest = Schema.Struct({
  protocol: ProtocolField,
  scope: Scope,
  client_id: Schema.optional(ClientId)
})
export type SnapshotRequest = typeof SnapshotRequest.Type

/** `{ [entity]: { [id]: JSON } }`: every key is an own property, `"__proto__"` included (see `SnapshotData`). */
export type SnapshotData = { readonly [entity: string]: { readonly [id: string]: unknown } }

const isJsonObject = (u: unknown): u is { readonly [key: string]: unknown } =>
  typeof u === "object" && u !== null && !Array.isArray(u)

/**
 * `{ [entity]: { [id]: JSON } }`. Ids are data, and any string is an id:
 * `"__proto__"` and `"constructor"` too. A `Schema.Record` would copy the
 * keys by assignment (losing a `"__proto__"` id, which would set the copy's
 * prototype instead), so this Schema checks the shape and keeps the object
 * as it is: decode it from `JSON.parse`'s output (own keys, never
 * prototypes), not from `parseJson`'s (which drops `"__proto__"` keys).
 * Write such objects with `setOwn`, read them with `getOwn`.
 */
export const SnapshotData: Schema.Schema<SnapshotData> = Schema.declare(
  (u: unknown): u is SnapshotData => isJsonObject(u) && Object.values(u).every(isJsonObject),
  { identifier: "SnapshotData", description: "an object of entity -> an object of id -> JSON" }
)

/** The own property `key` of a JSON object, never an inherited one (`constructor`, `toString`, `__proto__`). */
export const getOwn = <A>(record: { readonly [key: string]: A }, key: string): A | undefined =>
  Object.prototype.hasOwnProperty.call(record, key) ? record[key] : undefined

/**
 * Set `key` as an own, enumerable property of `record`, whatever the key:
 * an assignment `record["__proto__"] = value` would set the prototype
 * instead (and lose the key); `JSON.stringify` writes the property.
 */
export const setOwn = <A>(record: { [key: string]: A }, key: string, value: A): void => {
  Object.defineProperty(record, key, { value, writable: true, enumerable: true, configurable: true })
}

export const SnapshotResponse = Schema.Struct({
  data: SnapshotData,
  cursor: Schema.Number,
  last_mutation_id: Schema.optional(Schema.Number)
})
export type SnapshotResponse = typeof SnapshotResponse.Type

/** Every HTTP error code of the protocol, with its status. */
export const ErrorStatus = {
  invalid_request: 400,
  version_not_supported: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  method_not_allowed: 405,
  cursor_ahead: 409,
  cursor_too_old: 410,
  payload_too_large: 413,
  unsupported_media_type: 415,
  internal: 500,
  unavailable: 503
} as const

export const ErrorCode = Schema.Literal(
  ...(Object.keys(ErrorStatus) as Array<keyof typeof ErrorStatus>)
)
export type ErrorCode = typeof ErrorCode.Type

export const ErrorBody = Schema.Struct({
  error: Schema.Struct({
    code: Schema.String,
    message: Schema.String,
    details: Schema.optional(Json)
  })
})
export type ErrorBody = typeof ErrorBody.Type

/** The protocol error as a typed value: what a handler fails with, mapped to a status in one place. */
export class ProtocolError extends Schema.TaggedError<ProtocolError>()("ProtocolError", {
  code: ErrorCode,
  message: Schema.String,
  details: Schema.optional(Json)
}) {
  get status(): number {
    return ErrorStatus[this.code]
  }
  toBody(): ErrorBody {
    return { error: { code: this.code, message: this.message, ...(this.details === undefined ? {} : { details: this.details }) } }
  }
}

/**
 * A decode failure as one line per issue, `path: reason`, e.g.
 * `mutations.0.name: Expected string, actual 1`. What `invalid_request`,
 * `invalid_args` and `invalid_message` messages carry.
 */
export const formatParseError = (error: ParseResult.ParseError): string =>
  ParseResult.ArrayFormatter.formatErrorSync(error)
    .map((issue) => `${issue.path.length === 0 ? "body" : issue.path.map(String).join(".")}: ${issue.message}`)
    .join("; ")
