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
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import type { ChangeInput } from "./ChangeLog.js"
import * as Entity from "./Entity.js"
import type * as Mutation from "./Mutation.js"
import { StorageError } from "./StorageError.js"
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
  /**
   * The same `get`, `put` and `delete` as plain calls for a fiber whose
   * context is `context`, when the backend can answer without waiting
   * (valid in that fiber step only; each throws the `StorageError` its
   * Effect would fail with), or undefined: then the Effects are used.
   */
  readonly sync?: ((context: Context.Context<never>) => SyncBackend | undefined) | undefined
}

/**
 * A backend's `get`, `put` and `delete` as plain calls (see `Backend.sync`).
 *
 * @since 0.1.0
 * @category models
 */
export interface SyncBackend {
  readonly get: (entity: string, id: string) => Option.Option<unknown>
  readonly put: (entity: string, id: string, data: unknown) => void
  readonly delete: (entity: string, id: string) => boolean
}

/** `unknown_entity` unless `entity` is the registry's entity of that name (any entity without a registry). */
const unknownEntity = (registry: Mutation.Registry | undefined, entity: Entity.Entity<any, any>): Entity.EntityError | undefined =>
  registry === undefined || registry.entities.get(entity.name) === entity
    ? undefined
    : new Entity.EntityError({ reason: "unknown_entity", entity: entity.name, message: `unknown entity ${entity.name}` })

/**
 * Fails with `EntityError` `unknown_entity` unless `entity` is the registry's
 * entity of that name (any entity without a registry): the check of every
 * read and write, here and in the client's queries.
 *
 * @since 0.1.0
 * @category guards
 */
export const checkEntity = (registry: Mutation.Registry | undefined, entity: Entity.Entity<any, any>): Effect.Effect<void, Entity.EntityError> => {
  const error = unknownEntity(registry, entity)
  return error === undefined ? Effect.void : Effect.fail(error)
}

/** Why an access by id is refused: the entity is not the registry's, or the id cannot be stored; undefined when both hold. */
const refusal = (registry: Mutation.Registry | undefined, entity: Entity.Entity<any, any>, id: string): Entity.EntityError | undefined =>
  unknownEntity(registry, entity) ?? Entity.idError(entity, id)

/** `refusal` as an Effect: what every access by id checks first (`Effect.void` when it may go on). */
const checked = (registry: Mutation.Registry | undefined, entity: Entity.Entity<any, any>, id: string) => {
  const error = refusal(registry, entity, id)
  return error === undefined ? Effect.void : Effect.fail(error)
}

/** A synchronous backend call that threw: its `StorageError`, or a defect for anything else. */
const thrown = (error: unknown): Effect.Effect<never, StorageError> => error instanceof StorageError ? Exit.fail(error) : Exit.die(error)

/**
 * A transaction over `backend` for `scope`, and the changes its writes make,
 * in order (read them once the handler is done). Without a registry (a
 * client built without one) any entity is allowed.
 *
 * `get`, `put` and `delete` run in one fiber step when the backend offers
 * its synchronous view (`Backend.sync`) and the values encode and decode
 * synchronously; otherwise through the backend's Effects. Both ways check,
 * read, write and record alike.
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
  const beforeNow = (view: SyncBackend, entity: string, id: string): { readonly value: unknown } | null => {
    const cached = known.get(key(entity, id))
    return cached !== undefined ? cached : rowOf(view.get(entity, id))
  }
  const read = (entity: string, id: string, row: Option.Option<unknown>) => known.set(key(entity, id), rowOf(row))
  const wrote = (entity: string, id: string, old: { readonly value: unknown } | null, data: unknown) => {
    const row = { value: data }
    known.set(key(entity, id), row)
    const checksumDelta = Checksum.delta(entity, id, old ?? undefined, row)
    changes.push({ entity, id, op: old !== null ? "update" : "create", data, checksumDelta })
  }
  const deleted = (entity: string, id: string, old: { readonly value: unknown } | null, existed: boolean) => {
    known.set(key(entity, id), null)
    if (existed) changes.push({ entity, id, op: "delete", checksumDelta: Checksum.delta(entity, id, old ?? undefined, undefined) })
  }

  const getting = <A, I>(entity: Entity.Entity<A, I>, id: string) =>
    Effect.zipRight(
      checked(registry, entity, id),
      Effect.flatMap(backend.get(entity.name, id), (row) => {
        read(entity.name, id, row)
        return Option.isNone(row) ? Effect.succeedNone : Effect.asSome(Entity.decode(entity, row.value))
      })
    )
  const putting = <A, I>(entity: Entity.Entity<A, I>, id: string, value: A) =>
    checked(registry, entity, id).pipe(
      Effect.zipRight(Entity.encode(entity, value)),
      Effect.flatMap((data) =>
        Effect.flatMap(before(entity.name, id), (old) => Effect.map(backend.put(entity.name, id, data), () => wrote(entity.name, id, old, data)))
      )
    )
  const deleting = <A, I>(entity: Entity.Entity<A, I>, id: string) =>
    checked(registry, entity, id).pipe(
      Effect.zipRight(before(entity.name, id)),
      Effect.flatMap((old) => Effect.map(backend.delete(entity.name, id), (existed) => deleted(entity.name, id, old, existed)))
    )

  const sync = backend.sync
  /** `f` over the backend's synchronous view in this fiber step, or `otherwise` (no view). */
  const now = <A, E>(
    f: (view: SyncBackend) => Effect.Effect<A, E | StorageError>,
    otherwise: () => Effect.Effect<A, E | StorageError>
  ): Effect.Effect<A, E | StorageError> =>
    sync === undefined ? otherwise() : Effect.withFiberRuntime((fiber) => {
      const view = sync(fiber.currentContext)
      if (view === undefined) return otherwise()
      try {
        return f(view)
      } catch (error) {
        return thrown(error)
      }
    })

  const tx: Transaction = {
    scope,
    get: (entity, id) =>
      now((view) => {
        const refused = refusal(registry, entity, id)
        if (refused !== undefined) return Exit.fail(refused)
        const row = view.get(entity.name, id)
        read(entity.name, id, row)
        if (Option.isNone(row)) return Exit.succeed(Option.none())
        const decoded = Entity.decodeEither(entity, row.value)
        return Either.isRight(decoded) ? Exit.succeed(Option.some(decoded.right)) : Effect.asSome(Entity.decode(entity, row.value))
      }, () => getting(entity, id)),
    list: (entity) =>
      checkEntity(registry, entity).pipe(
        Effect.zipRight(backend.list(entity.name)),
        Effect.flatMap((rows) =>
          Effect.forEach(rows, ([id, json]) => Effect.map(Entity.decode(entity, json), (value) => [id, value] as const))
        )
      ),
    put: (entity, id, value) =>
      now((view) => {
        const refused = refusal(registry, entity, id)
        if (refused !== undefined) return Exit.fail(refused)
        const encoded = Entity.encodeEither(entity, value)
        // the Effect encoder tells the error (or runs an asynchronous Schema)
        if (Either.isLeft(encoded)) return putting(entity, id, value)
        const old = beforeNow(view, entity.name, id)
        view.put(entity.name, id, encoded.right)
        wrote(entity.name, id, old, encoded.right)
        return Exit.void
      }, () => putting(entity, id, value)),
    delete: (entity, id) =>
      now((view) => {
        const refused = refusal(registry, entity, id)
        if (refused !== undefined) return Exit.fail(refused)
        const old = beforeNow(view, entity.name, id)
        deleted(entity.name, id, old, view.delete(entity.name, id))
        return Exit.void
      }, () => deleting(entity, id))
  }
  return { tx, changes }
}
