/**
 * Dispatches a mutation by name to its definition: decodes the args with the
 * definition's Schema, runs the handler over a `Transaction` bound to the
 * mutation's scope and backed by the `Store`, and returns the changes the
 * handler's writes made, in order. It does not append to the log and does not
 * open a transaction: `SyncEngine` does both, around it.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { formatParseError } from "../protocol/Sync.js"
import type { ChangeInput } from "./ChangeLog.js"
import * as Entity from "./Entity.js"
import type * as Mutation from "./Mutation.js"
import type { StorageError } from "./StorageError.js"
import { Store } from "./Store.js"

/** Why a mutation produced no changes; each reason is a protocol error code. */
export class MutationFailed extends Data.TaggedError("MutationFailed")<{
  readonly reason: "unknown_mutation" | "invalid_args" | "rejected"
  readonly message: string
  /**
   * Whether the handler wrote to the store before failing, so that those
   * writes must be rolled back (unknown when absent: assume it did).
   */
  readonly wrote?: boolean
}> {}

/** What `apply` receives. */
export interface Input {
  readonly name: string
  readonly scope: string
  readonly args: unknown
}

export class Mutator extends Context.Tag("@mizu/sync/Mutator")<Mutator, {
  readonly apply: (input: Input) => Effect.Effect<ReadonlyArray<ChangeInput>, MutationFailed | StorageError>
  /** The names this mutator knows. */
  readonly names: ReadonlyArray<string>
}>() {}

const entityOf = (registry: Mutation.Registry, entity: Entity.Entity<any, any>) =>
  registry.entities.get(entity.name) === entity
    ? Effect.void
    : Effect.fail(
      new Entity.EntityError({ reason: "unknown_entity", entity: entity.name, message: `unknown entity ${entity.name}` })
    )

/**
 * A `Transaction` over the `Store` for one scope that records every write as a
 * change. Exported for other server-side writers (live pages) that need the
 * same semantics.
 */
export const makeTransaction = (
  store: Store["Type"],
  registry: Mutation.Registry,
  scope: string
): { readonly tx: Mutation.Transaction; readonly changes: Array<ChangeInput> } => {
  const changes: Array<ChangeInput> = []
  // What this transaction already knows about existence, to spare a read on put.
  const known = new Map<string, boolean>()
  const key = (entity: string, id: string) => `${entity}\u0000${id}`
  const exists = (entity: string, id: string) => {
    const k = key(entity, id)
    const cached = known.get(k)
    return cached !== undefined
      ? Effect.succeed(cached)
      : Effect.map(store.get(scope, entity, id), Option.isSome)
  }
  const tx: Mutation.Transaction = {
    scope,
    get: (entity, id) =>
      entityOf(registry, entity).pipe(
        Effect.zipRight(Entity.checkId(entity, id)),
        Effect.zipRight(store.get(scope, entity.name, id)),
        Effect.tap((row) => known.set(key(entity.name, id), Option.isSome(row))),
        Effect.flatMap(Option.match({
          onNone: () => Effect.succeedNone,
          onSome: (json) => Effect.asSome(Entity.decode(entity, json))
        }))
      ),
    list: (entity) =>
      entityOf(registry, entity).pipe(
        Effect.zipRight(store.list(scope, entity.name)),
        Effect.flatMap((rows) =>
          Effect.forEach(rows, ([id, json]) => Effect.map(Entity.decode(entity, json), (value) => [id, value] as const))
        )
      ),
    put: (entity, id, value) =>
      Effect.gen(function*() {
        yield* entityOf(registry, entity)
        yield* Entity.checkId(entity, id)
        const data = yield* Entity.encode(entity, value)
        const existed = yield* exists(entity.name, id)
        yield* store.put(scope, entity.name, id, data)
        known.set(key(entity.name, id), true)
        changes.push({ entity: entity.name, id, op: existed ? "update" : "create", data })
      }),
    delete: (entity, id) =>
      Effect.gen(function*() {
        yield* entityOf(registry, entity)
        yield* Entity.checkId(entity, id)
        const existed = yield* store.delete(scope, entity.name, id)
        known.set(key(entity.name, id), false)
        if (existed) changes.push({ entity: entity.name, id, op: "delete" })
      })
  }
  return { tx, changes }
}

/** Build a `Mutator` from a registry of mutation definitions. */
export const make = (registry: Mutation.Registry): Effect.Effect<Mutator["Type"], never, Store> =>
  Effect.gen(function*() {
    const store = yield* Store
    const decoders = new Map([...registry.mutations.values()].map((m) => {
      const decodeSync = Schema.decodeUnknownEither(m.args, { errors: "all" })
      const decode = Schema.decodeUnknown(m.args, { errors: "all" })
      // Synchronously first (no fiber steps); a failure, or a Schema that needs to run
      // asynchronously, goes through the Effect decoder, whose error is the one reported.
      const run = (args: unknown): Effect.Effect<unknown, ParseResult.ParseError> => {
        const result = decodeSync(args)
        return Either.isRight(result) ? Effect.succeed(result.right) : decode(args)
      }
      return [m.name, run] as const
    }))
    return Mutator.of({
      names: [...registry.mutations.keys()],
      apply: (input) => {
        const def = registry.mutations.get(input.name)
        const decode = decoders.get(input.name)
        if (def === undefined || decode === undefined) {
          return Effect.fail(
            new MutationFailed({ reason: "unknown_mutation", message: `unknown mutation ${input.name}`, wrote: false })
          )
        }
        return decode(input.args).pipe(
          Effect.mapError((e) =>
            new MutationFailed({ reason: "invalid_args", message: formatParseError(e), wrote: false })
          ),
          Effect.flatMap((args) => {
            const { changes, tx } = makeTransaction(store, registry, input.scope)
            return def.handler(args, tx).pipe(
              Effect.as(changes as ReadonlyArray<ChangeInput>),
              Effect.catchTags({
                // every write of the handler records a change, so no change means no write
                Rejected: (e) =>
                  Effect.fail(new MutationFailed({ reason: "rejected", message: e.message, wrote: changes.length > 0 })),
                // An id storage cannot keep (too long, U+0000) comes from the args: invalid_args,
                // the same on every storage layer and in the client's optimistic run.
                // A stored value that no longer decodes, or an entity outside the registry, is a
                // bug of the app. It is deterministic, so retrying cannot help: the mutation is
                // consumed as rejected (and logged), never left to block the client's queue.
                EntityError: (e) =>
                  e.reason === "invalid_id"
                    ? Effect.fail(new MutationFailed({ reason: "invalid_args", message: e.message, wrote: changes.length > 0 }))
                    : Effect.logError("mutation failed on an entity", e).pipe(
                      Effect.zipRight(
                        Effect.fail(new MutationFailed({ reason: "rejected", message: e.message, wrote: changes.length > 0 }))
                      )
                    ),
                // A value the database refused as such (not an outage): retrying cannot help either.
                // The statement may have failed half-way, so the mutation counts as having written
                // (its savepoint is rolled back).
                StorageError: (e) =>
                  e.reason === "invalid"
                    ? Effect.fail(new MutationFailed({ reason: "invalid_args", message: e.message, wrote: true }))
                    : Effect.fail(e)
              })
            )
          })
        )
      }
    })
  })

/** The `Mutator` layer for a registry. */
export const layer = (registry: Mutation.Registry): Layer.Layer<Mutator, never, Store> =>
  Layer.effect(Mutator, make(registry))
