/**
 * Mutation definitions, written once and run in two places: optimistically in
 * a client over its local view, and authoritatively on the server over the
 * `Store` inside the push transaction. A handler sees a `Transaction` bound to
 * the mutation's scope (it can write nowhere else) and either writes through
 * it or fails with `Rejected`. Handlers have no requirements, so the same code
 * runs wherever a `Transaction` exists.
 *
 * Versions (deploys while clients are offline): a registry has an app
 * `version` and the oldest `minVersion` it still accepts. A mutation whose
 * args changed keeps its past shapes (`versioned(...).changedIn(v, ...)`),
 * each with a typed upgrade to the next, so a mutation queued by an old
 * client is decoded in the shape it was made in and upgraded through the
 * chain before its handler runs, on the server and in a client that
 * reloads on newer code. A mutation removed in a later version is
 * `retire`d with a replacement or a rejection reason.
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
  /** The args as the current version takes them. */
  readonly args: Schema.Schema<A, I>
  readonly handler: (args: A, tx: Transaction) => Effect.Effect<void, HandlerError>
  /** The past shapes of the args, oldest first (empty when they never changed). */
  readonly history: ReadonlyArray<PastArgs>
}

/**
 * The args of a mutation before the app version `changedIn`, and how a value
 * of them becomes one of the next shape.
 *
 * @since 0.1.0
 * @category models
 */
export interface PastArgs {
  /** The first app version with the next shape: clients below it made their mutations in this one. */
  readonly changedIn: number
  readonly args: Schema.Schema<any, any>
  readonly upgrade: (previous: unknown) => unknown
}

/**
 * A chain of args shapes, built with `versioned` and `changedIn`: its
 * `Type` is the last shape's, and each upgrade takes the shape before it, so
 * a chain whose upgrades do not compose does not type-check.
 *
 * @since 0.1.0
 * @category models
 */
export interface Versioned<A, I> {
  readonly _tag: "Versioned"
  /** The newest shape. */
  readonly args: Schema.Schema<A, I>
  readonly history: ReadonlyArray<PastArgs>
  /** The args changed in app version `version` (above every earlier change) to `args`, reached from the shape before by `upgrade`. */
  readonly changedIn: <B, J>(version: number, args: Schema.Schema<B, J>, upgrade: (previous: A) => B) => Versioned<B, J>
}

const versionedOf = <A, I>(args: Schema.Schema<A, I>, history: ReadonlyArray<PastArgs>): Versioned<A, I> => ({
  _tag: "Versioned",
  args,
  history,
  changedIn: (version, next, upgrade) => {
    const last = history[history.length - 1]?.changedIn ?? 1
    if (!Number.isInteger(version) || version <= last) {
      throw new Error(`changedIn(${version}): versions must be integers above ${last}, in increasing order`)
    }
    // `previous` is what `args` (the shape before) decoded: an `A`
    return versionedOf(next, [...history, { changedIn: version, args, upgrade: (previous) => upgrade(previous as A) }])
  }
})

/**
 * The first shape of a mutation's args (from app version 1), to chain
 * `changedIn` on: `versioned(V1).changedIn(2, V2, (v1) => ({ ...v1, due: null }))`.
 * Upgrades must be pure and total: a value that decoded as the old shape
 * becomes a valid value of the new one.
 *
 * @since 0.1.0
 * @category constructors
 */
export const versioned = <A, I>(args: Schema.Schema<A, I>): Versioned<A, I> => versionedOf(args, [])

/**
 * Define a mutation. Its handler runs in a client's optimistic run (again
 * on every rebase) and once on the server, over the same `Transaction`: it
 * must be deterministic given its args. `args` is a Schema, or a `versioned`
 * chain whose newest shape the handler takes.
 *
 * Write a generator handler as `Effect.fnUntraced(function*(args, tx) { … })`,
 * which makes its generator function once, rather than
 * `(args, tx) => Effect.gen(function*() { … })`, which makes one per
 * mutation: V8 is slow at that (a push of 50 todo creates took ~35% less
 * of the engine's CPU with the first form; bench/README, "Generator
 * functions made per call").
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <const Name extends string, A, I>(
  name: Name,
  options: {
    readonly args: Schema.Schema<A, I> | Versioned<A, I>
    readonly handler: (args: A, tx: Transaction) => Effect.Effect<void, HandlerError>
  }
): Mutation<Name, A, I> => {
  const args = options.args
  return isVersioned(args)
    ? { name, args: args.args, handler: options.handler, history: args.history }
    : { name, args, handler: options.handler, history: [] }
}

const isVersioned = <A, I>(args: Schema.Schema<A, I> | Versioned<A, I>): args is Versioned<A, I> =>
  "_tag" in args && (args as { readonly _tag: unknown })._tag === "Versioned"

/**
 * A call of a mutation with its (current) args: what a retired mutation is replaced by.
 *
 * @since 0.1.0
 * @category models
 */
export interface Call {
  readonly mutation: Mutation
  readonly args: unknown
}

/**
 * A typed `Call`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const call = <Name extends string, A, I>(mutation: Mutation<Name, A, I>, args: NoInfer<A>): Call => ({ mutation, args })

/**
 * A mutation removed in app version `removedIn`: one queued by an older
 * client is decoded as its definition says (through its own history) and
 * either becomes `replace`'s call, or is rejected with `reason` (consumed,
 * reported to the client as `rejected`). Clients at `removedIn` or later
 * get `unknown_mutation` for the name.
 *
 * @since 0.1.0
 * @category models
 */
export interface Retired {
  readonly mutation: Mutation
  readonly removedIn: number
  readonly replace: ((args: unknown) => Call) | undefined
  readonly reason: string
}

/**
 * Retire a mutation (see `Retired`), keeping its last definition for the clients that still queue it.
 *
 * @since 0.1.0
 * @category constructors
 */
export const retire = <Name extends string, A, I>(
  mutation: Mutation<Name, A, I>,
  options: { readonly removedIn: number; readonly reason: string; readonly replace?: (args: A) => Call }
): Retired => {
  const replace = options.replace
  // what `mutation`'s args (through its history) decoded: an `A`
  return { mutation, removedIn: options.removedIn, replace: replace === undefined ? undefined : (args) => replace(args as A), reason: options.reason }
}

/**
 * A set of entities and mutations: what both the server `Mutator` and a client are built from.
 *
 * @since 0.1.0
 * @category models
 */
export interface Registry<M extends Mutation = Mutation> {
  readonly entities: ReadonlyMap<string, Entity<any, any>>
  readonly mutations: ReadonlyMap<string, M>
  /** The app's schema version (by default the newest `changedIn` of its mutations, 1 when none). */
  readonly version: number
  /** The oldest client version whose mutations are still accepted (1 by default). */
  readonly minVersion: number
  /** Mutations removed in some version, by name. */
  readonly retired: ReadonlyMap<string, Retired>
}

/**
 * Mutation names the client uses for itself (placeholders of discarded ids, probes); no registry may define them.
 *
 * @since 0.1.0
 * @category constants
 */
export const RESERVED_PREFIX = "$mizu/"

/**
 * Build a registry. Duplicate names, mutation names under
 * `RESERVED_PREFIX`, a `minVersion` above `version`, a change or a removal
 * above `version`, and a retired name that is also defined are programming
 * errors and throw at definition time.
 *
 * @since 0.1.0
 * @category constructors
 */
export const registry = <const Ms extends ReadonlyArray<Mutation>>(options: {
  readonly entities: ReadonlyArray<Entity<any, any>>
  readonly mutations: Ms
  readonly version?: number
  readonly minVersion?: number
  readonly retired?: ReadonlyArray<Retired>
}): Registry<Ms[number]> => {
  // without a version, the newest change among its mutations' args (1 when none changed)
  const newestChange = Math.max(1, ...options.mutations.map((m) => m.history[m.history.length - 1]?.changedIn ?? 1))
  const version = options.version ?? newestChange
  const minVersion = options.minVersion ?? 1
  if (!Number.isInteger(version) || version < 1) throw new Error(`registry version ${version}: an integer >= 1`)
  if (!Number.isInteger(minVersion) || minVersion < 1 || minVersion > version) {
    throw new Error(`registry minVersion ${minVersion}: an integer from 1 to version (${version})`)
  }
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
    const newest = m.history[m.history.length - 1]?.changedIn ?? 1
    if (newest > version) throw new Error(`mutation ${m.name} changed in version ${newest}, above the registry's ${version}`)
    mutations.set(m.name, m)
  }
  const retired = new Map<string, Retired>()
  for (const r of options.retired ?? []) {
    if (mutations.has(r.mutation.name)) throw new Error(`mutation ${r.mutation.name} is both defined and retired`)
    if (retired.has(r.mutation.name)) throw new Error(`mutation ${r.mutation.name} is retired twice`)
    if (r.removedIn > version) throw new Error(`mutation ${r.mutation.name} removed in version ${r.removedIn}, above the registry's ${version}`)
    retired.set(r.mutation.name, r)
  }
  return { entities, mutations, version, minVersion, retired }
}

/**
 * The args type of a mutation.
 *
 * @since 0.1.0
 * @category models
 */
export type ArgsOf<M> = M extends Mutation<string, infer A, any> ? A : never
