/**
 * Mutation definitions, written once and run in two places: optimistically in
 * a client over its local view, and authoritatively on the server over the
 * `Store` inside the push transaction. A handler sees a `Transaction` bound to
 * the mutation's scope (it can write nowhere else) and either writes through
 * it or fails with `Rejected`. Handlers have no requirements, so the same code
 * runs wherever a `Transaction` exists.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import type * as Schema from "effect/Schema"
import type { Entity, EntityError } from "./Entity.js"
import type { StorageError } from "./StorageError.js"
import type * as Tx from "./Transaction.js"

/**
 * A business-rule rejection: the mutation is consumed with no changes and reported as `rejected`.
 *
 * @since 0.1.0
 * @category errors
 */
export class Rejected extends Data.TaggedError("Rejected")<{ readonly message: string }> {}

/**
 * Fail the current mutation with a business-rule rejection.
 *
 * @since 0.1.0
 * @category constructors
 */
export const reject = (message: string): Effect.Effect<never, Rejected> => Effect.fail(new Rejected({ message }))

/**
 * What a handler may fail with.
 *
 * @since 0.1.0
 * @category models
 */
export type HandlerError = Rejected | EntityError | StorageError

/**
 * The view of one scope a handler reads and writes through (see the
 * `Transaction` module): the same interface, and the same implementation, on
 * the server and in the client's optimistic run.
 *
 * @since 0.1.0
 * @category models
 */
export type Transaction = Tx.Transaction

/**
 * A named mutation with a Schema for its args and a handler.
 *
 * @since 0.1.0
 * @category models
 */
export interface Mutation<Name extends string = string, A = any, I = any> {
  readonly name: Name
  readonly args: Schema.Schema<A, I>
  readonly handler: (args: A, tx: Transaction) => Effect.Effect<void, HandlerError>
}

/**
 * Define a mutation. Its handler runs in a client's optimistic run (again
 * on every rebase) and once on the server, over the same `Transaction`: it
 * must be deterministic given its args.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <const Name extends string, A, I>(
  name: Name,
  options: {
    readonly args: Schema.Schema<A, I>
    readonly handler: (args: A, tx: Transaction) => Effect.Effect<void, HandlerError>
  }
): Mutation<Name, A, I> => ({ name, args: options.args, handler: options.handler })

/**
 * A set of entities and mutations: what both the server `Mutator` and a client are built from.
 *
 * @since 0.1.0
 * @category models
 */
export interface Registry<M extends Mutation = Mutation> {
  readonly entities: ReadonlyMap<string, Entity<any, any>>
  readonly mutations: ReadonlyMap<string, M>
}

/**
 * Mutation names the client uses for itself (placeholders of discarded ids, probes); no registry may define them.
 *
 * @since 0.1.0
 * @category constants
 */
export const RESERVED_PREFIX = "$mizu/"

/**
 * Build a registry. Duplicate names, and mutation names under
 * `RESERVED_PREFIX`, are programming errors and throw at definition time.
 *
 * @since 0.1.0
 * @category constructors
 */
export const registry = <const Ms extends ReadonlyArray<Mutation>>(options: {
  readonly entities: ReadonlyArray<Entity<any, any>>
  readonly mutations: Ms
}): Registry<Ms[number]> => {
  const entities = new Map<string, Entity<any, any>>()
  for (const e of options.entities) {
    if (entities.has(e.name)) throw new Error(`duplicate entity ${e.name}`)
    entities.set(e.name, e)
  }
  const mutations = new Map<string, Ms[number]>()
  for (const m of options.mutations) {
    if (mutations.has(m.name)) throw new Error(`duplicate mutation ${m.name}`)
    // the client's own placeholders (a discarded mutation's id) must reach the server as unknown
    if (m.name.startsWith(RESERVED_PREFIX)) throw new Error(`mutation names starting with ${RESERVED_PREFIX} are reserved: ${m.name}`)
    mutations.set(m.name, m)
  }
  return { entities, mutations }
}

/**
 * The args type of a mutation.
 *
 * @since 0.1.0
 * @category models
 */
export type ArgsOf<M> = M extends Mutation<string, infer A, any> ? A : never
