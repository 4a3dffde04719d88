/**
 * Typed entities. An app declares each entity once with a Schema; mutator
 * handlers and client queries see decoded values, the `Store` keeps JSON.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { formatParseError } from "../protocol/Sync.js"

/** An entity kind: its name on the wire (`Change.entity`) and the Schema of its value. */
export interface Entity<in out A, in out I = A> {
  readonly name: string
  readonly schema: Schema.Schema<A, I>
}

/** Declare an entity kind. */
export const make = <A, I>(name: string, schema: Schema.Schema<A, I>): Entity<A, I> => ({ name, schema })

/** A stored value that does not decode with its entity's Schema, or an entity no registry knows. */
export class EntityError extends Data.TaggedError("EntityError")<{
  readonly reason: "unknown_entity" | "decode" | "encode"
  readonly entity: string
  readonly message: string
}> {}

/** Decode a stored JSON value as the entity's type. */
export const decode = <A, I>(entity: Entity<A, I>, json: unknown): Effect.Effect<A, EntityError> =>
  Schema.decodeUnknown(entity.schema)(json).pipe(
    Effect.mapError((e) =>
      new EntityError({ reason: "decode", entity: entity.name, message: formatParseError(e) })
    )
  )

/** Encode a value of the entity's type to the JSON the store keeps. */
export const encode = <A, I>(entity: Entity<A, I>, value: A): Effect.Effect<I, EntityError> =>
  Schema.encode(entity.schema)(value).pipe(
    Effect.mapError((e) =>
      new EntityError({ reason: "encode", entity: entity.name, message: formatParseError(e) })
    )
  )
