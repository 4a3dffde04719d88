/**
 * Typed entities. An app declares each entity once with a Schema; mutator
 * handlers and client queries see decoded values, the `Store` keeps JSON.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Order from "effect/Order"
import type * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { formatParseError } from "../protocol/Sync.js"

/**
 * An entity kind: its name on the wire (`Change.entity`) and the Schema of its value.
 *
 * @since 0.1.0
 * @category models
 */
export interface Entity<in out A, in out I = A> {
  readonly name: string
  readonly schema: Schema.Schema<A, I>
  /**
   * How a value stored under an older shape of the entity is read: a Schema
   * from that shape to the current type (a `Schema.transform`), tried when
   * `schema` does not decode a stored value.
   */
  readonly migrate?: Schema.Schema<A, any>
}

/**
 * The longest entity id, in UTF-16 code units (JavaScript's `length`): 256.
 * With the scope (at most 256 ASCII characters) and the entity name (at most
 * 128) it keeps every key of every storage layer within what its index can
 * hold (Postgres B-tree rows: ~2,700 bytes).
 *
 * @since 0.1.0
 * @category constants
 */
export const MAX_ID_LENGTH = 256

/**
 * The one order of entity ids, everywhere ids are listed (store listings,
 * snapshots, local queries): by UTF-16 code units, the order SQLite's and
 * Postgres' `COLLATE "C"` keys give, so server and client list the same rows
 * in the same order.
 *
 * @since 0.1.0
 * @category order
 */
export const idOrder: Order.Order<string> = Order.string

/**
 * The longest entity name, in UTF-16 code units: 128.
 *
 * @since 0.1.0
 * @category constants
 */
export const MAX_NAME_LENGTH = 128

/** U+0000 (Postgres text cannot hold it) or a lone surrogate (no UTF-8 form: stored, it would come back as U+FFFD). */
const unstorable = /\u0000|\p{Surrogate}/u

/**
 * Why `id` cannot be an entity id, or `undefined` when it can: at most
 * `MAX_ID_LENGTH` code units, no U+0000, no lone surrogate. Ids are stored
 * as text keys by every layer, so an id outside these rules could not be
 * stored, or not read back as it was, on some of them; every layer refuses
 * it in the same way (the mutation fails with `invalid_args`, here and in
 * the client's optimistic run). Any other string is fine, `"__proto__"` and
 * `"constructor"` included.
 *
 * @since 0.1.0
 * @category guards
 */
export const invalidId = (id: string): string | undefined =>
  id.length > MAX_ID_LENGTH
    ? `entity id is ${id.length} characters long, more than ${MAX_ID_LENGTH}`
    : unstorable.test(id)
    ? "entity id contains U+0000 or an unpaired surrogate, which storage cannot keep"
    : undefined

/**
 * Declare an entity kind. The name is checked at once (a programming error
 * throws, as a duplicate name in a registry does): 1 to `MAX_NAME_LENGTH`
 * code units, no U+0000, no lone surrogate. `migrate` reads values stored
 * under an older shape (see `Entity.migrate`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <A, I>(name: string, schema: Schema.Schema<A, I>, options?: { readonly migrate?: Schema.Schema<A, any> }): Entity<A, I> => {
  if (name.length === 0 || name.length > MAX_NAME_LENGTH || unstorable.test(name)) {
    throw new Error(`invalid entity name ${JSON.stringify(name)}: 1..${MAX_NAME_LENGTH} characters, no U+0000, no unpaired surrogate`)
  }
  return options?.migrate === undefined ? { name, schema } : { name, schema, migrate: options.migrate }
}

/**
 * A stored value that does not decode with its entity's Schema, an entity no
 * registry knows, or an id storage cannot keep (`invalid_id`, see `invalidId`).
 *
 * @since 0.1.0
 * @category errors
 */
export class EntityError extends Data.TaggedError("EntityError")<{
  readonly reason: "unknown_entity" | "decode" | "encode" | "invalid_id"
  readonly entity: string
  readonly message: string
}> {}

/**
 * Fail with `invalid_id` when `id` cannot be an id of `entity` (see `invalidId`).
 *
 * @since 0.1.0
 * @category guards
 */
export const checkId = (entity: Entity<any, any>, id: string): Effect.Effect<void, EntityError> => {
  const error = idError(entity, id)
  return error === undefined ? Effect.void : Effect.fail(error)
}

/**
 * `checkId` as a plain call: the `invalid_id` error, or undefined when `id`
 * can be an id of `entity`.
 *
 * @since 0.1.0
 * @category guards
 */
export const idError = (entity: Entity<any, any>, id: string): EntityError | undefined => {
  const problem = invalidId(id)
  return problem === undefined ? undefined : new EntityError({ reason: "invalid_id", entity: entity.name, message: problem })
}

/** An entity's decoder and encoder, made once: synchronous first, the Effect one for a failure or an async Schema. */
interface Codec {
  readonly decodeSync: (json: unknown) => Either.Either<unknown, ParseResult.ParseError>
  readonly decode: (json: unknown) => Effect.Effect<unknown, ParseResult.ParseError>
  readonly encodeSync: (value: unknown) => Either.Either<unknown, ParseResult.ParseError>
  readonly encode: (value: unknown) => Effect.Effect<unknown, ParseResult.ParseError>
}

const codecs = new WeakMap<Entity<any, any>, Codec>()

const codecOf = (entity: Entity<any, any>): Codec => {
  let codec = codecs.get(entity)
  if (codec === undefined) {
    const decodeSync = Schema.decodeUnknownEither(entity.schema)
    const decode = Schema.decodeUnknown(entity.schema)
    // a value of an older shape: through the migration; when that fails too, the current Schema's error is the one told
    const migrate = entity.migrate
    const migrateSync = migrate === undefined ? undefined : Schema.decodeUnknownEither(migrate)
    const migrateEffect = migrate === undefined ? undefined : Schema.decodeUnknown(migrate)
    codec = {
      decodeSync: migrateSync === undefined ? decodeSync : (json) => {
        const current = decodeSync(json)
        if (Either.isRight(current)) return current
        const older = migrateSync(json)
        return Either.isRight(older) ? older : current
      },
      decode: migrateEffect === undefined
        ? decode
        : (json) => Effect.catchAll(decode(json), (error) => Effect.orElse(migrateEffect(json), () => Effect.fail(error))),
      encodeSync: Schema.encodeEither(entity.schema),
      encode: Schema.encode(entity.schema)
    }
    codecs.set(entity, codec)
  }
  return codec
}

/** Run one direction of a codec: synchronously when that succeeds, else the Effect one, whose error is the one reported. */
const runCodec = <B>(
  entity: Entity<any, any>,
  reason: "decode" | "encode",
  sync: Either.Either<unknown, ParseResult.ParseError>,
  effect: () => Effect.Effect<unknown, ParseResult.ParseError>
): Effect.Effect<B, EntityError> =>
  Either.isRight(sync)
    ? Effect.succeed(sync.right as B)
    : effect().pipe(
      Effect.map((value) => value as B),
      Effect.mapError((e) => new EntityError({ reason, entity: entity.name, message: formatParseError(e) }))
    )

/**
 * `decode` as a plain call: Right with the value, or Left when the Schema
 * failed or cannot run synchronously (then `decode` tells the error to
 * report). What a caller already in a fiber step uses to spare one.
 *
 * @since 0.1.0
 * @category conversions
 */
export const decodeEither = <A, I>(entity: Entity<A, I>, json: unknown): Either.Either<A, ParseResult.ParseError> =>
  codecOf(entity).decodeSync(json) as Either.Either<A, ParseResult.ParseError>

/**
 * `encode` as a plain call: Right with the JSON, or Left when the Schema
 * failed or cannot run synchronously (then `encode` tells the error to
 * report).
 *
 * @since 0.1.0
 * @category conversions
 */
export const encodeEither = <A, I>(entity: Entity<A, I>, value: A): Either.Either<I, ParseResult.ParseError> =>
  codecOf(entity).encodeSync(value) as Either.Either<I, ParseResult.ParseError>

/**
 * Decode a stored JSON value as the entity's type (synchronously when the
 * Schema allows: no fiber step on the way).
 *
 * @since 0.1.0
 * @category conversions
 */
export const decode = <A, I>(entity: Entity<A, I>, json: unknown): Effect.Effect<A, EntityError> => {
  const codec = codecOf(entity)
  return runCodec(entity, "decode", codec.decodeSync(json), () => codec.decode(json))
}

/**
 * Encode a value of the entity's type to the JSON the store keeps
 * (synchronously when the Schema allows).
 *
 * @since 0.1.0
 * @category conversions
 */
export const encode = <A, I>(entity: Entity<A, I>, value: A): Effect.Effect<I, EntityError> => {
  const codec = codecOf(entity)
  return runCodec(entity, "encode", codec.encodeSync(value), () => codec.encode(value))
}
