/**
 * The read/write view of one scope that a mutation handler sees, and its one
 * implementation, shared by the server (over the `Store`, inside the push
 * transaction) and the client (over its local rows, in the optimistic run).
 * The two differ only in the `Backend` they give `make`.
 *
 * Invariants (the same on both sides, so a handler behaves alike wherever it
 * runs):
 * - every read and write goes to `Transaction.scope`, nowhere else;
 * - an entity outside the registry fails with `EntityError` `unknown_entity`,
 *   an id storage cannot keep with `invalid_id`, before the backend is asked;
 * - values are encoded with the entity's Schema before they are written and
 *   decoded after they are read; `list` is in `Entity.idOrder`;
 * - every write is recorded as a change, in order: `put` as `create` when the
 *   id did not exist and `update` otherwise, `delete` only when it existed.
 *
 * Module free of Node-only imports: it runs in browsers.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type { ChangeInput } from "./ChangeLog.js"
import * as Entity from "./Entity.js"
import type * as Mutation from "./Mutation.js"
import type { StorageError } from "./StorageError.js"
import * as Checksum from "../protocol/Checksum.js"

/** A stored row as this module keeps it: its JSON, or null when there is none. */
const rowOf = (row: Option.Option<unknown>): { readonly value: unknown } | null => Option.isSome(row) ? { value: row.value } : null

/**
 * A read/write view of one scope, the only thing a handler touches. Reads see
 * the transaction's own earlier writes.
 *
 * @since 0.1.0
 * @category models
 */
export interface Transaction {
  /** The scope every read and write goes to. */
  readonly scope: string
  readonly get: <A, I>(entity: Entity.Entity<A, I>, id: string) => Effect.Effect<Option.Option<A>, Entity.EntityError | StorageError>
  /** Every row of the entity in the scope, in `Entity.idOrder`. */
  readonly list: <A, I>(
    entity: Entity.Entity<A, I>
  ) => Effect.Effect<ReadonlyArray<readonly [id: string, value: A]>, Entity.EntityError | StorageError>
  /** Create or replace; recorded as `create` when the id is new, `update` otherwise. */
  readonly put: <A, I>(entity: Entity.Entity<A, I>, id: string, value: A) => Effect.Effect<void, Entity.EntityError | StorageError>
  /** Delete; a no-op (no change recorded) when the id does not exist. */
  readonly delete: <A, I>(entity: Entity.Entity<A, I>, id: string) => Effect.Effect<void, Entity.EntityError | StorageError>
}

/**
 * What a transaction reads and writes through, for one scope, in encoded
 * (JSON) values: the server's `Store`, or the client's rows with the run's
 * writes on top. `list` is in `Entity.idOrder`; `delete` says whether the row
 * existed.
 *
 * @since 0.1.0
 * @category models
 */
export interface Backend {
  readonly get: (entity: string, id: string) => Effect.Effect<Option.Option<unknown>, StorageError>
  readonly list: (entity: string) => Effect.Effect<ReadonlyArray<readonly [id: string, data: unknown]>, StorageError>
  readonly put: (entity: string, id: string, data: unknown) => Effect.Effect<void, StorageError>
  readonly delete: (entity: string, id: string) => Effect.Effect<boolean, StorageError>
}

/**
 * Fails with `EntityError` `unknown_entity` unless `entity` is the registry's
 * entity of that name (any entity without a registry): the check of every
 * read and write, here and in the client's queries.
 *
 * @since 0.1.0
 * @category guards
 */
export const checkEntity = (registry: Mutation.Registry | undefined, entity: Entity.Entity<any, any>): Effect.Effect<void, Entity.EntityError> =>
  registry === undefined || registry.entities.get(entity.name) === entity
    ? Effect.void
    : Effect.fail(new Entity.EntityError({ reason: "unknown_entity", entity: entity.name, message: `unknown entity ${entity.name}` }))

/** The entity is in the registry and the id can be stored: what every access by id checks first (`Effect.void` when both hold). */
const checked = (registry: Mutation.Registry | undefined, entity: Entity.Entity<any, any>, id: string) =>
  registry === undefined || registry.entities.get(entity.name) === entity ? Entity.checkId(entity, id) : checkEntity(registry, entity)

/**
 * A transaction over `backend` for `scope`, and the changes its writes make,
 * in order (read them once the handler is done). Without a registry (a
 * client built without one) any entity is allowed.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  registry: Mutation.Registry | undefined,
  scope: string,
  backend: Backend
): { readonly tx: Transaction; readonly changes: ReadonlyArray<ChangeInput> } => {
  const changes: Array<ChangeInput> = []
  // What this transaction already knows of a row (its stored JSON, or null: none), to spare a read on
  // put and to move the checksum by the old row's hash.
  const known = new Map<string, { readonly value: unknown } | null>()
  const key = (entity: string, id: string) => `${entity}\u0000${id}`
  const before = (entity: string, id: string): Effect.Effect<{ readonly value: unknown } | null, StorageError> => {
    const cached = known.get(key(entity, id))
    return cached !== undefined ? Effect.succeed(cached) : Effect.map(backend.get(entity, id), rowOf)
  }
  const tx: Transaction = {
    scope,
    get: (entity, id) =>
      Effect.zipRight(
        checked(registry, entity, id),
        Effect.flatMap(backend.get(entity.name, id), (row) => {
          known.set(key(entity.name, id), rowOf(row))
          return Option.isNone(row) ? Effect.succeedNone : Effect.asSome(Entity.decode(entity, row.value))
        })
      ),
    list: (entity) =>
      checkEntity(registry, entity).pipe(
        Effect.zipRight(backend.list(entity.name)),
        Effect.flatMap((rows) =>
          Effect.forEach(rows, ([id, json]) => Effect.map(Entity.decode(entity, json), (value) => [id, value] as const))
        )
      ),
    put: (entity, id, value) =>
      checked(registry, entity, id).pipe(
        Effect.zipRight(Entity.encode(entity, value)),
        Effect.flatMap((data) =>
          Effect.flatMap(before(entity.name, id), (old) =>
            Effect.map(backend.put(entity.name, id, data), () => {
              const row = { value: data }
              known.set(key(entity.name, id), row)
              const checksumDelta = Checksum.delta(entity.name, id, old ?? undefined, row)
              changes.push({ entity: entity.name, id, op: old !== null ? "update" : "create", data, checksumDelta })
            }))
        )
      ),
    delete: (entity, id) =>
      checked(registry, entity, id).pipe(
        Effect.zipRight(before(entity.name, id)),
        Effect.flatMap((old) =>
          Effect.map(backend.delete(entity.name, id), (existed) => {
            known.set(key(entity.name, id), null)
            if (existed) changes.push({ entity: entity.name, id, op: "delete", checksumDelta: Checksum.delta(entity.name, id, old ?? undefined, undefined) })
          })
        )
      )
  }
  return { tx, changes }
}
