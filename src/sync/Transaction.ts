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
  /** Returns the data's JSON text when the backend stored that text (see `ChangeInput.json`). */
  readonly put: (entity: string, id: string, data: unknown) => string | void
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
  // one object per run and one closure per operation: a run is made for every mutation (bench/README, "Allocations per mutation")
  const run = new Run(registry, backend)
  const sync = backend.sync
  const tx: Transaction = sync === undefined
    ? {
      scope,
      get: (entity, id) => run.getting(entity, id),
      list: (entity) => run.listing(entity),
      put: (entity, id, value) => run.putting(entity, id, value),
      delete: (entity, id) => run.deleting(entity, id)
    }
    : {
      scope,
      get: (entity, id) => Effect.withFiberRuntime((fiber) => run.getNow(sync(fiber.currentContext), entity, id)),
      list: (entity) => run.listing(entity),
      put: (entity, id, value) => Effect.withFiberRuntime((fiber) => run.putNow(sync(fiber.currentContext), entity, id, value)),
      delete: (entity, id) => Effect.withFiberRuntime((fiber) => run.deleteNow(sync(fiber.currentContext), entity, id))
    }
  return { tx, changes: run.changes }
}

/** The state of one run of a handler: its changes, and what it already knows of the rows it touched. */
class Run {
  readonly changes: Array<ChangeInput> = []
  /**
   * What the run already knows of a row (its stored JSON, or null: none), to
   * spare a read on put and to move the checksum by the old row's hash: the
   * first row it touched in two fields (most mutations touch one), any other
   * in a `Map` made when needed.
   */
  private firstKey: string | undefined = undefined
  private firstRow: { readonly value: unknown } | null = null
  private others: Map<string, { readonly value: unknown } | null> | undefined = undefined
  constructor(readonly registry: Mutation.Registry | undefined, readonly backend: Backend) {}

  /** What the run knows of the row at `key`; `undefined` when it has not touched it. */
  private knownAt(key: string): { readonly value: unknown } | null | undefined {
    return key === this.firstKey ? this.firstRow : this.others?.get(key)
  }
  private know(key: string, row: { readonly value: unknown } | null): void {
    if (this.firstKey === undefined || key === this.firstKey) {
      this.firstKey = key
      this.firstRow = row
    } else {
      if (this.others === undefined) this.others = new Map()
      this.others.set(key, row)
    }
  }

  before(entity: string, id: string): Effect.Effect<{ readonly value: unknown } | null, StorageError> {
    const cached = this.knownAt(`${entity}\u0000${id}`)
    return cached !== undefined ? Effect.succeed(cached) : Effect.map(this.backend.get(entity, id), rowOf)
  }
  beforeNow(view: SyncBackend, entity: string, id: string): { readonly value: unknown } | null {
    const cached = this.knownAt(`${entity}\u0000${id}`)
    return cached !== undefined ? cached : rowOf(view.get(entity, id))
  }
  read(entity: string, id: string, row: Option.Option<unknown>): void {
    this.know(`${entity}\u0000${id}`, rowOf(row))
  }
  wrote(entity: string, id: string, old: { readonly value: unknown } | null, data: unknown, json: string | void): void {
    const row = { value: data }
    this.know(`${entity}\u0000${id}`, row)
    const checksumDelta = Checksum.delta(entity, id, old ?? undefined, row)
    const op = old !== null ? "update" : "create"
    this.changes.push(typeof json === "string" ? { entity, id, op, data, checksumDelta, json } : { entity, id, op, data, checksumDelta })
  }
  deleted(entity: string, id: string, old: { readonly value: unknown } | null, existed: boolean): void {
    this.know(`${entity}\u0000${id}`, null)
    if (existed) this.changes.push({ entity, id, op: "delete", checksumDelta: Checksum.delta(entity, id, old ?? undefined, undefined) })
  }

  // Through the backend's Effects (no synchronous view, or a Schema that runs asynchronously).
  getting<A, I>(entity: Entity.Entity<A, I>, id: string): Effect.Effect<Option.Option<A>, Entity.EntityError | StorageError> {
    return Effect.zipRight(
      checked(this.registry, entity, id),
      Effect.flatMap(this.backend.get(entity.name, id), (row) => {
        this.read(entity.name, id, row)
        return Option.isNone(row) ? Effect.succeedNone : Effect.asSome(Entity.decode(entity, row.value))
      })
    )
  }
  listing<A, I>(entity: Entity.Entity<A, I>): Effect.Effect<ReadonlyArray<readonly [id: string, value: A]>, Entity.EntityError | StorageError> {
    return checkEntity(this.registry, entity).pipe(
      Effect.zipRight(this.backend.list(entity.name)),
      Effect.flatMap((rows) => Effect.forEach(rows, ([id, json]) => Effect.map(Entity.decode(entity, json), (value) => [id, value] as const)))
    )
  }
  putting<A, I>(entity: Entity.Entity<A, I>, id: string, value: A): Effect.Effect<void, Entity.EntityError | StorageError> {
    return checked(this.registry, entity, id).pipe(
      Effect.zipRight(Entity.encode(entity, value)),
      Effect.flatMap((data) =>
        Effect.flatMap(this.before(entity.name, id), (old) => Effect.map(this.backend.put(entity.name, id, data), () => this.wrote(entity.name, id, old, data, undefined)))
      )
    )
  }
  deleting<A, I>(entity: Entity.Entity<A, I>, id: string): Effect.Effect<void, Entity.EntityError | StorageError> {
    return checked(this.registry, entity, id).pipe(
      Effect.zipRight(this.before(entity.name, id)),
      Effect.flatMap((old) => Effect.map(this.backend.delete(entity.name, id), (existed) => this.deleted(entity.name, id, old, existed)))
    )
  }

  // Over the backend's synchronous view in this fiber step (the Effects when there is none).
  getNow<A, I>(view: SyncBackend | undefined, entity: Entity.Entity<A, I>, id: string): Effect.Effect<Option.Option<A>, Entity.EntityError | StorageError> {
    if (view === undefined) return this.getting(entity, id)
    try {
      const refused = refusal(this.registry, entity, id)
      if (refused !== undefined) return Exit.fail(refused)
      const row = view.get(entity.name, id)
      this.read(entity.name, id, row)
      if (Option.isNone(row)) return Exit.succeed(Option.none())
      const decoded = Entity.decodeEither(entity, row.value)
      return Either.isRight(decoded) ? Exit.succeed(Option.some(decoded.right)) : Effect.asSome(Entity.decode(entity, row.value))
    } catch (error) {
      return thrown(error)
    }
  }
  putNow<A, I>(view: SyncBackend | undefined, entity: Entity.Entity<A, I>, id: string, value: A): Effect.Effect<void, Entity.EntityError | StorageError> {
    if (view === undefined) return this.putting(entity, id, value)
    try {
      const refused = refusal(this.registry, entity, id)
      if (refused !== undefined) return Exit.fail(refused)
      const encoded = Entity.encodeEither(entity, value)
      // the Effect encoder tells the error (or runs an asynchronous Schema)
      if (Either.isLeft(encoded)) return this.putting(entity, id, value)
      const old = this.beforeNow(view, entity.name, id)
      this.wrote(entity.name, id, old, encoded.right, view.put(entity.name, id, encoded.right))
      return Exit.void
    } catch (error) {
      return thrown(error)
    }
  }
  deleteNow<A, I>(view: SyncBackend | undefined, entity: Entity.Entity<A, I>, id: string): Effect.Effect<void, Entity.EntityError | StorageError> {
    if (view === undefined) return this.deleting(entity, id)
    try {
      const refused = refusal(this.registry, entity, id)
      if (refused !== undefined) return Exit.fail(refused)
      const old = this.beforeNow(view, entity.name, id)
      this.deleted(entity.name, id, old, view.delete(entity.name, id))
      return Exit.void
    } catch (error) {
      return thrown(error)
    }
  }
}
