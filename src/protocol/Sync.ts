/**
 * Wire Schemas of PROTOCOL.md section 1 (sync over HTTP), protocol version 1.
 *
 * The one place that knows the JSON shape of the protocol: the server decodes
 * every body with these Schemas and every client encodes with them. Field
 * names are snake_case, integers stay in the safe-integer range, and a field
 * named here is never renamed, dropped or given a new meaning (fields may be
 * added). Unknown fields of a request body are ignored.
 *
 * @since 0.1.0
 */
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"

/**
 * The protocol version this module speaks: the value of the optional
 * `protocol` field of a request body.
 *
 * @since 0.1.0
 * @category constants
 */
export const PROTOCOL_VERSION = 1 as const

/**
 * Every version a server built from this module answers. A body whose
 * `protocol` is anything else (`"1"` and `null` too) gets
 * `400 version_not_supported` with `details: { supported }`, this list.
 *
 * @since 0.1.0
 * @category constants
 */
export const SUPPORTED_VERSIONS: ReadonlyArray<number> = [PROTOCOL_VERSION]

/** The characters of a scope name (`Scope`). */
const SCOPE_PATTERN = /^[A-Za-z0-9_\-:./@]+$/

/** The characters of a client id (`ClientId`). */
const CLIENT_ID_PATTERN = /^[A-Za-z0-9_\-:.]+$/

/**
 * A scope: 1..256 chars of `A-Z a-z 0-9 _ - : . / @`, no spaces. The unit of
 * storage, authorization and subscription, each with its own gap-free change
 * log; live topics are scopes too.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Scope = Schema.String.pipe(
  Schema.minLength(1),
  Schema.maxLength(256),
  Schema.pattern(SCOPE_PATTERN, {
    message: () => "scope may contain only A-Z a-z 0-9 _ - : . / @"
  })
)
/**
 * A scope name that passed the `Scope` Schema.
 *
 * @since 0.1.0
 * @category models
 */
export type Scope = typeof Scope.Type

/**
 * A client id: 1..128 chars of `A-Z a-z 0-9 _ - : .`, no spaces. It names one
 * client's mutation sequence (ids 1, 2, 3, … across all scopes) and belongs to
 * the principal that first pushed with it.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ClientId = Schema.String.pipe(
  Schema.minLength(1),
  Schema.maxLength(128),
  Schema.pattern(CLIENT_ID_PATTERN, {
    message: () => "client_id may contain only A-Z a-z 0-9 _ - : ."
  })
)
/**
 * A client id that passed the `ClientId` Schema.
 *
 * @since 0.1.0
 * @category models
 */
export type ClientId = typeof ClientId.Type

/**
 * The scope a mutation without `scope` goes to: `_default`.
 *
 * @since 0.1.0
 * @category constants
 */
export const DEFAULT_SCOPE: Scope = "_default"

/** A JSON-safe integer in `[min, MAX_SAFE_INTEGER]`. */
const IntFrom = (min: number) =>
  Schema.Number.pipe(Schema.int(), Schema.greaterThanOrEqualTo(min), Schema.lessThanOrEqualTo(Number.MAX_SAFE_INTEGER))

/**
 * A cursor, an integer in `[0, MAX_SAFE_INTEGER]`: a scope's changes have the
 * cursors 1, 2, 3, … in commit order with no gaps; `0` means "nothing yet".
 *
 * @since 0.1.0
 * @category schemas
 */
export const Cursor = IntFrom(0)

/**
 * The deepest nesting of arrays and objects a request body or a live frame
 * may have. Deeper JSON parses, but cannot be written back or described in an
 * error (`JSON.stringify` and error formatting overflow the stack at a few
 * thousand levels), so it is refused at the door: `invalid_request` /
 * `invalid_message`.
 *
 * @since 0.1.0
 * @category constants
 */
export const MAX_JSON_DEPTH = 64

/**
 * Whether a parsed JSON value nests arrays and objects deeper than `max`
 * (iterative, so the check itself is safe at every depth).
 *
 * @since 0.1.0
 * @category utils
 */
export const jsonDepthExceeds = (value: unknown, max: number = MAX_JSON_DEPTH): boolean => {
  if (typeof value !== "object" || value === null) return false
  if (max < 1) return true
  // only arrays and objects are kept (a leaf adds no depth), each with its own depth
  const values: Array<object> = [value]
  const depths: Array<number> = [1]
  while (values.length > 0) {
    const v = values.pop() as object
    const depth = (depths.pop() as number) + 1
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) {
        const child: unknown = v[i]
        if (typeof child !== "object" || child === null) continue
        if (depth > max) return true
        values.push(child)
        depths.push(depth)
      }
    } else {
      for (const key in v) {
        if (!Object.hasOwn(v, key)) continue
        const child: unknown = (v as Record<string, unknown>)[key]
        if (typeof child !== "object" || child === null) continue
        if (depth > max) return true
        values.push(child)
        depths.push(depth)
      }
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
 *
 * A text with neither `__proto__` nor a `\u` escape (the only way to spell
 * that key otherwise) cannot hold the key, and is parsed by plain
 * `JSON.parse`, several times faster than with the reviver that drops it.
 *
 * @since 0.1.0
 * @category conversions
 */
export const parseJson = (text: string): unknown =>
  text.includes("__proto__") || text.includes("\\u") ? JSON.parse(text, dropProto) : JSON.parse(text)

const dropProto = (key: string, value: unknown): unknown => (key === "__proto__" ? undefined : value)

/**
 * Any JSON value: `args`, `data`, `details`. Bodies are JSON-parsed before
 * decoding, so whatever reaches it is already JSON; it checks nothing more.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Json: Schema.Schema<unknown> = Schema.Unknown

/**
 * The optional `protocol` field every request body may carry. The server
 * checks its value against `SUPPORTED_VERSIONS` before the Schema runs.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ProtocolField = Schema.optional(Schema.Number)

/**
 * The app's schema version a client's code was built with (an integer >= 1):
 * the registry's `version`. The optional `app_version` field of push, pull
 * and snapshot bodies. A push's mutations were made (or upgraded by the
 * client) under it; the server upgrades their args from it to its own
 * version, or answers `409 version_too_old` / `version_too_new`. Absent: the
 * server's own version (scripts, clients without versioning).
 *
 * @since 0.1.0
 * @category schemas
 */
export const AppVersion = Schema.Number.pipe(Schema.int(), Schema.between(1, Number.MAX_SAFE_INTEGER))

/**
 * A mutation as pushed: `name` (1..128 chars) picks the server's mutator,
 * `args` is its JSON input, `scope` defaults to `_default`. `id` (>= 1) is the
 * client's sequence number, required with `client_id` and only echoed without.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Mutation = Schema.Struct({
  id: Schema.optional(IntFrom(1)),
  name: Schema.String.pipe(Schema.minLength(1), Schema.maxLength(128)),
  scope: Schema.optional(Scope),
  args: Schema.optional(Json)
})
/**
 * A decoded `Mutation`.
 *
 * @since 0.1.0
 * @category models
 */
export type Mutation = typeof Mutation.Type

/**
 * What a change did to one entity: `create` (the id was absent), `update`
 * (it existed; `data` is its whole new value, not a diff) or `delete`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ChangeOp = Schema.Literal("create", "update", "delete")
/**
 * `"create" | "update" | "delete"`.
 *
 * @since 0.1.0
 * @category models
 */
export type ChangeOp = typeof ChangeOp.Type

/**
 * One committed change in a scope's log, at `cursor` (>= 1, no gaps). `data`
 * is the entity's whole value, absent on `delete`; `ts` is the server's
 * ISO-8601 commit time.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Change = Schema.Struct({
  cursor: IntFrom(1),
  scope: Scope,
  entity: Schema.String,
  id: Schema.String,
  op: ChangeOp,
  data: Schema.optional(Json),
  ts: Schema.String
})
/**
 * A decoded `Change`.
 *
 * @since 0.1.0
 * @category models
 */
export type Change = typeof Change.Type

/**
 * Why a mutation failed. `out_of_order`: its id skipped the next expected one
 * (nothing applied, the id is not used up). The others use up the id and are
 * final, never retried: `unknown_mutation`, `invalid_args`, `rejected`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const MutationErrorCode = Schema.Literal("out_of_order", "unknown_mutation", "invalid_args", "rejected")
/**
 * One of the `MutationErrorCode` literals.
 *
 * @since 0.1.0
 * @category models
 */
export type MutationErrorCode = typeof MutationErrorCode.Type

/**
 * The `error` of a failed mutation's result. `expected`, on `out_of_order`
 * only, is the id the server expects next (`last + 1`); one below the
 * client's first pending id means the server lost the client's state.
 *
 * @since 0.1.0
 * @category schemas
 */
export const MutationError = Schema.Struct({
  code: MutationErrorCode,
  message: Schema.String,
  expected: Schema.optional(Schema.Number)
})
/**
 * A decoded `MutationError`.
 *
 * @since 0.1.0
 * @category models
 */
export type MutationError = typeof MutationError.Type

/**
 * The outcome of one mutation of a push; `cursor` is the scope's head once it
 * is counted. `duplicate: true`: the id was processed before; `ok: true` when
 * it succeeded then (or the server no longer remembers how it went),
 * `ok: false` with the `error` it failed with then (the server remembers each
 * client's last failed mutations), so a retry whose first reply was lost
 * still learns of its rejection.
 *
 * @since 0.1.0
 * @category schemas
 */
export const MutationResult = Schema.Struct({
  id: Schema.optional(Schema.Number),
  ok: Schema.Boolean,
  cursor: Schema.Number,
  duplicate: Schema.optional(Schema.Literal(true)),
  error: Schema.optional(MutationError)
})
/**
 * A decoded `MutationResult`.
 *
 * @since 0.1.0
 * @category models
 */
export type MutationResult = typeof MutationResult.Type

/**
 * The most mutations one push may carry (1000); more is `400 invalid_request`.
 *
 * @since 0.1.0
 * @category constants
 */
export const MAX_MUTATIONS_PER_PUSH = 1000

/**
 * The body of `POST {prefix}/push`: 1..1000 mutations, processed in order.
 * With `client_id` each is applied exactly once however often it is retried;
 * without it each is applied as it comes, with no dedupe.
 *
 * @since 0.1.0
 * @category schemas
 */
export const PushRequest = Schema.Struct({
  protocol: ProtocolField,
  app_version: Schema.optional(AppVersion),
  client_id: Schema.optional(ClientId),
  mutations: Schema.Array(Mutation).pipe(Schema.minItems(1), Schema.maxItems(MAX_MUTATIONS_PER_PUSH))
})
/**
 * A decoded `PushRequest`.
 *
 * @since 0.1.0
 * @category models
 */
export type PushRequest = typeof PushRequest.Type

/**
 * The `200` answer to a push: one result per mutation, in request order.
 * A storage failure answers `503 unavailable` instead (with `client_id`,
 * nothing of the request was applied).
 *
 * @since 0.1.0
 * @category schemas
 */
export const PushResponse = Schema.Struct({
  results: Schema.Array(MutationResult)
})
/**
 * A decoded `PushResponse`.
 *
 * @since 0.1.0
 * @category models
 */
export type PushResponse = typeof PushResponse.Type

/**
 * The page size of a pull that gives no `limit` (100 changes).
 *
 * @since 0.1.0
 * @category constants
 */
export const DEFAULT_PULL_LIMIT = 100
/**
 * The largest `limit` a pull may ask for (1000); more is `400 invalid_request`.
 *
 * @since 0.1.0
 * @category constants
 */
export const MAX_PULL_LIMIT = 1000

/**
 * The body of `POST {prefix}/pull`: the changes of `scope` after `cursor`, at
 * most `limit` (1..1000, default 100). `client_id` asks for
 * `last_mutation_id` in the response.
 *
 * @since 0.1.0
 * @category schemas
 */
export const PullRequest = Schema.Struct({
  protocol: ProtocolField,
  app_version: Schema.optional(AppVersion),
  scope: Scope,
  cursor: Cursor,
  limit: Schema.optional(Schema.Number.pipe(Schema.int(), Schema.between(1, MAX_PULL_LIMIT))),
  client_id: Schema.optional(ClientId)
})
/**
 * A decoded `PullRequest`.
 *
 * @since 0.1.0
 * @category models
 */
export type PullRequest = typeof PullRequest.Type

/*
 * The request bodies' checks, each field's in one filter: the same
 * acceptance as the Schemas above (`test/proto.test.ts` checks both ways on
 * arbitrary bodies), at ~60% of their decoding time, since every
 * refinement is a layer of its own in a Schema's parser. Only for the
 * server's first try at a body; when one fails, the body is decoded again
 * with the Schema above, whose issue is the one answered.
 */
const quickInt = (min: number, max: number) =>
  Schema.Number.pipe(Schema.filter((n) => Number.isSafeInteger(n) && n >= min && n <= max))
const quickString = (min: number, max: number, pattern?: RegExp) =>
  Schema.String.pipe(Schema.filter((s) => {
    if (s.length < min || s.length > max) return false
    if (pattern === undefined) return true
    pattern.lastIndex = 0
    return pattern.test(s)
  }))
const quickScope = quickString(1, 256, SCOPE_PATTERN)
const quickClientId = quickString(1, 128, CLIENT_ID_PATTERN)
const QuickMutation = Schema.Struct({
  id: Schema.optional(quickInt(1, Number.MAX_SAFE_INTEGER)),
  name: quickString(1, 128),
  scope: Schema.optional(quickScope),
  args: Schema.optional(Json)
})

/**
 * `PushRequest` with each field's checks in one filter: what it accepts
 * `PushRequest` accepts, decoded alike (see the comment above).
 *
 * @since 0.1.0
 * @category schemas
 * @internal
 */
export const PushRequestQuick: Schema.Schema<PushRequest, unknown> = Schema.Struct({
  protocol: ProtocolField,
  app_version: Schema.optional(quickInt(1, Number.MAX_SAFE_INTEGER)),
  client_id: Schema.optional(quickClientId),
  mutations: Schema.Array(QuickMutation).pipe(Schema.filter((a) => a.length >= 1 && a.length <= MAX_MUTATIONS_PER_PUSH))
}) as unknown as Schema.Schema<PushRequest, unknown>

/**
 * `PullRequest` with each field's checks in one filter (see `PushRequestQuick`).
 *
 * @since 0.1.0
 * @category schemas
 * @internal
 */
export const PullRequestQuick: Schema.Schema<PullRequest, unknown> = Schema.Struct({
  protocol: ProtocolField,
  app_version: Schema.optional(quickInt(1, Number.MAX_SAFE_INTEGER)),
  scope: quickScope,
  cursor: quickInt(0, Number.MAX_SAFE_INTEGER),
  limit: Schema.optional(quickInt(1, MAX_PULL_LIMIT)),
  client_id: Schema.optional(quickClientId)
}) as unknown as Schema.Schema<PullRequest, unknown>

/**
 * One page of a pull: `changes` ascending after the request's cursor;
 * `cursor` is the last one's (or the request's when none); `has_more` says
 * another page follows. `last_mutation_id` (with `client_id`) is the client's
 * highest processed id in this scope, read in the same snapshot as the page.
 *
 * @since 0.1.0
 * @category schemas
 */
export const PullResponse = Schema.Struct({
  changes: Schema.Array(Change),
  cursor: Schema.Number,
  has_more: Schema.Boolean,
  last_mutation_id: Schema.optional(Schema.Number),
  /** The scope's checksum as of `cursor` (`Checksum`), when the server knows it. */
  checksum: Schema.optional(Schema.Number),
  /**
   * Present when the page starts at or below the scope's compaction mark:
   * cursors at or below `compacted_through` may be missing (folded into later
   * changes of the same rows); above it the cursors are gap-free.
   */
  compacted_through: Schema.optional(Schema.Number.pipe(Schema.int(), Schema.nonNegative()))
})
/**
 * A decoded `PullResponse`.
 *
 * @since 0.1.0
 * @category models
 */
export type PullResponse = typeof PullResponse.Type

/**
 * The body of `POST {prefix}/snapshot`: the whole of `scope`; `client_id`
 * asks for `last_mutation_id` in the response.
 *
 * @since 0.1.0
 * @category schemas
 */
export const SnapshotRequest = Schema.Struct({
  protocol: ProtocolField,
  app_version: Schema.optional(AppVersion),
  scope: Scope,
  client_id: Schema.optional(ClientId)
})
/**
 * A decoded `SnapshotRequest`.
 *
 * @since 0.1.0
 * @category models
 */
export type SnapshotRequest = typeof SnapshotRequest.Type

/**
 * `{ [entity]: { [id]: JSON } }`: every key is an own property, `"__proto__"`
 * included (see `SnapshotData`).
 *
 * @since 0.1.0
 * @category models
 */
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
 *
 * @since 0.1.0
 * @category schemas
 */
export const SnapshotData: Schema.Schema<SnapshotData> = Schema.declare(
  (u: unknown): u is SnapshotData => isJsonObject(u) && Object.values(u).every(isJsonObject),
  { identifier: "SnapshotData", description: "an object of entity -> an object of id -> JSON" }
)

/**
 * The own property `key` of a JSON object, never an inherited one
 * (`constructor`, `toString`, `__proto__`).
 *
 * @since 0.1.0
 * @category utils
 */
export const getOwn = <A>(record: { readonly [key: string]: A }, key: string): A | undefined =>
  Object.prototype.hasOwnProperty.call(record, key) ? record[key] : undefined

/**
 * Set `key` as an own, enumerable property of `record`, whatever the key:
 * an assignment `record["__proto__"] = value` would set the prototype
 * instead (and lose the key); `JSON.stringify` writes the property.
 *
 * @since 0.1.0
 * @category utils
 */
export const setOwn = <A>(record: { [key: string]: A }, key: string, value: A): void => {
  Object.defineProperty(record, key, { value, writable: true, enumerable: true, configurable: true })
}

/**
 * The `200` answer to a snapshot: `data` is the whole scope as of `cursor`,
 * read in one consistent snapshot (with `last_mutation_id` when `client_id`
 * was given); continue by pulling from `cursor`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const SnapshotResponse = Schema.Struct({
  data: SnapshotData,
  cursor: Schema.Number,
  last_mutation_id: Schema.optional(Schema.Number),
  /** The checksum of `data` (`Checksum`), read with it. */
  checksum: Schema.optional(Schema.Number)
})
/**
 * A decoded `SnapshotResponse`.
 *
 * @since 0.1.0
 * @category models
 */
export type SnapshotResponse = typeof SnapshotResponse.Type

/**
 * Every HTTP error code of the protocol, with the status it is answered with
 * (PROTOCOL.md's table). A 4xx request changed no state.
 *
 * @since 0.1.0
 * @category constants
 */
export const ErrorStatus = {
  invalid_request: 400,
  version_not_supported: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  method_not_allowed: 405,
  cursor_ahead: 409,
  version_too_old: 409,
  version_too_new: 409,
  cursor_too_old: 410,
  payload_too_large: 413,
  unsupported_media_type: 415,
  internal: 500,
  unavailable: 503
} as const

/**
 * The `error.code` of a non-2xx response: one of the keys of `ErrorStatus`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ErrorCode = Schema.Literal(
  ...(Object.keys(ErrorStatus) as Array<keyof typeof ErrorStatus>)
)
/**
 * One of the `ErrorCode` literals.
 *
 * @since 0.1.0
 * @category models
 */
export type ErrorCode = typeof ErrorCode.Type

/**
 * The body of every non-2xx response. `code` is read as a plain string, so a
 * client still decodes a code added later; `message` is for people and never
 * leaks internals (`internal error` on a 500).
 *
 * @since 0.1.0
 * @category schemas
 */
export const ErrorBody = Schema.Struct({
  error: Schema.Struct({
    code: Schema.String,
    message: Schema.String,
    details: Schema.optional(Json)
  })
})
/**
 * A decoded `ErrorBody`.
 *
 * @since 0.1.0
 * @category models
 */
export type ErrorBody = typeof ErrorBody.Type

/**
 * The protocol error as a typed value: what a handler fails with, mapped to a
 * status (`ErrorStatus`) and an `ErrorBody` in one place.
 *
 * @since 0.1.0
 * @category errors
 */
export class ProtocolError extends Schema.TaggedError<ProtocolError>()("ProtocolError", {
  code: ErrorCode,
  message: Schema.String,
  details: Schema.optional(Json)
}) {
  /** The HTTP status of `code`. */
  get status(): number {
    return ErrorStatus[this.code]
  }
  /** The error as the response body, `details` only when present. */
  toBody(): ErrorBody {
    return { error: { code: this.code, message: this.message, ...(this.details === undefined ? {} : { details: this.details }) } }
  }
}

/**
 * A decode failure as one line per issue, `path: reason`, e.g.
 * `mutations.0.name: Expected string, actual 1`. What `invalid_request`,
 * `invalid_args` and `invalid_message` messages carry.
 *
 * @since 0.1.0
 * @category conversions
 */
export const formatParseError = (error: ParseResult.ParseError): string =>
  ParseResult.ArrayFormatter.formatErrorSync(error)
    .map((issue) => `${issue.path.length === 0 ? "body" : issue.path.map(String).join(".")}: ${issue.message}`)
    .join("; ")

/**
 * A row's key in a scope, for repair ranges: rows are ordered by `entity`,
 * then `id`, each compared by UTF-16 code units (`Checksum.compareKeys`,
 * JavaScript's `<` on strings).
 *
 * @since 0.1.0
 * @category schemas
 */
export const RowKey = Schema.Struct({
  entity: Schema.String.pipe(Schema.maxLength(128)),
  id: Schema.String.pipe(Schema.maxLength(256))
})
/**
 * A decoded `RowKey`.
 *
 * @since 0.1.0
 * @category models
 */
export type RowKey = typeof RowKey.Type

/**
 * The most parts a `RangesRequest` may ask for.
 *
 * @since 0.1.0
 * @category constants
 */
export const MAX_RANGE_PARTS = 64

/**
 * How many parts a `RangesRequest` that names none gets.
 *
 * @since 0.1.0
 * @category constants
 */
export const DEFAULT_RANGE_PARTS = 16
/**
 * The most rows one `RowsResponse` carries; a range holding more answers
 * `has_more: true` and the first that many.
 *
 * @since 0.1.0
 * @category constants
 */
export const MAX_REPAIR_ROWS = 1000

/**
 * `POST /_sync/ranges`: the checksums of the scope's rows in `[from, to)`
 * (absent ends are open), split into at most `parts` contiguous ranges of
 * about equal row counts. Authorized as a snapshot of the scope.
 *
 * @since 0.1.0
 * @category schemas
 */
export const RangesRequest = Schema.Struct({
  protocol: ProtocolField,
  app_version: Schema.optional(AppVersion),
  scope: Scope,
  client_id: Schema.optional(ClientId),
  from: Schema.optional(RowKey),
  to: Schema.optional(RowKey),
  parts: Schema.optional(Schema.Number.pipe(Schema.int(), Schema.between(1, MAX_RANGE_PARTS)))
})
/**
 * A decoded `RangesRequest`.
 *
 * @since 0.1.0
 * @category models
 */
export type RangesRequest = typeof RangesRequest.Type

/**
 * One range of a `RangesResponse`: the rows with `from <= key < to` (an
 * absent end is open), how many there are and the sum of their hashes.
 *
 * @since 0.1.0
 * @category schemas
 */
export const RowRange = Schema.Struct({
  from: Schema.optional(RowKey),
  to: Schema.optional(RowKey),
  count: Schema.Number.pipe(Schema.int(), Schema.nonNegative()),
  checksum: Schema.Number.pipe(Schema.int(), Schema.between(0, 4294967295))
})
/**
 * A decoded `RowRange`.
 *
 * @since 0.1.0
 * @category models
 */
export type RowRange = typeof RowRange.Type

/**
 * The answer of `POST /_sync/ranges`, read at the scope's head `cursor` in
 * one snapshot: the ranges cover the request's `[from, to)` in key order
 * with no gap or overlap; `checksum` is the whole scope's.
 *
 * @since 0.1.0
 * @category schemas
 */
export const RangesResponse = Schema.Struct({
  cursor: Schema.Number,
  checksum: Schema.Number,
  ranges: Schema.Array(RowRange)
})
/**
 * A decoded `RangesResponse`.
 *
 * @since 0.1.0
 * @category models
 */
export type RangesResponse = typeof RangesResponse.Type

/**
 * `POST /_sync/rows`: the rows of the scope with `from <= key < to`, to
 * repair a range whose checksum differs. Authorized as a snapshot.
 *
 * @since 0.1.0
 * @category schemas
 */
export const RowsRequest = Schema.Struct({
  protocol: ProtocolField,
  app_version: Schema.optional(AppVersion),
  scope: Scope,
  client_id: Schema.optional(ClientId),
  from: Schema.optional(RowKey),
  to: Schema.optional(RowKey)
})
/**
 * A decoded `RowsRequest`.
 *
 * @since 0.1.0
 * @category models
 */
export type RowsRequest = typeof RowsRequest.Type

/**
 * One row of a `RowsResponse`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Row = Schema.Struct({ entity: Schema.String, id: Schema.String, data: Json })
/**
 * A decoded `Row`.
 *
 * @since 0.1.0
 * @category models
 */
export type Row = typeof Row.Type

/**
 * The answer of `POST /_sync/rows`, read at the scope's head `cursor` in one
 * snapshot: the range's rows in key order, at most `MAX_REPAIR_ROWS`
 * (`has_more` when the range holds more).
 *
 * @since 0.1.0
 * @category schemas
 */
export const RowsResponse = Schema.Struct({
  cursor: Schema.Number,
  rows: Schema.Array(Row),
  has_more: Schema.Boolean
})
/**
 * A decoded `RowsResponse`.
 *
 * @since 0.1.0
 * @category models
 */
export type RowsResponse = typeof RowsResponse.Type
