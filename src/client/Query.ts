/**
 * Reactive queries over the local view: a query is any function of a
 * `ReadTransaction` (reads across scopes and entities, decoded with their
 * `Entity`), and `SyncClient.watch(query)` runs it again only when a row it
 * read (or a row that would fall in a list or scan it made) changes.
 *
 * Guarantees:
 * - A run reads one snapshot of the views (the optimistic state: confirmed
 *   rows with pending mutations applied) as of its start, whatever commits
 *   while it runs; a commit during a run that touches what it read makes
 *   it run again.
 * - Results are compared structurally (`Equal.equals` in a structural
 *   region: plain objects, arrays, `Data` values, Options, Dates), so a run
 *   that gives an equal result is not reported.
 * - Entities outside the client's registry fail with `EntityError`
 *   (`unknown_entity`), as in mutators.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Equal from "effect/Equal"
import * as Option from "effect/Option"
import * as Order from "effect/Order"
import * as Utils from "effect/Utils"
import * as Entity from "../sync/Entity.js"
import type * as Mutation from "../sync/Mutation.js"
import * as Transaction from "../sync/Transaction.js"
import type { LocalChange, Rows } from "./LocalView.js"

/**
 * Which rows a scan reads: every scope and id by default, or those starting with these prefixes.
 *
 * @since 0.1.0
 * @category options
 */
export interface ScanOptions {
  readonly scopePrefix?: string
  readonly idPrefix?: string
}

/**
 * A row found by a scan.
 *
 * @since 0.1.0
 * @category models
 */
export interface ScanRow<A> {
  readonly scope: string
  readonly id: string
  readonly value: A
}

/**
 * What a query reads the local view with; every read is recorded.
 *
 * @since 0.1.0
 * @category models
 */
export interface ReadTransaction {
  /** One row. */
  readonly get: <A, I>(scope: string, entity: Entity.Entity<A, I>, id: string) => Effect.Effect<Option.Option<A>, Entity.EntityError>
  /** Every row of an entity in a scope, by id. */
  readonly list: <A, I>(scope: string, entity: Entity.Entity<A, I>) => Effect.Effect<ReadonlyArray<readonly [string, A]>, Entity.EntityError>
  /** Rows of an entity across scopes, by scope then id, optionally only those under prefixes. */
  readonly scan: <A, I>(entity: Entity.Entity<A, I>, options?: ScanOptions) => Effect.Effect<ReadonlyArray<ScanRow<A>>, Entity.EntityError>
}

/**
 * The same reads, synchronous, for the Promise API: a decode failure throws what `onError` makes of it.
 *
 * @since 0.1.0
 * @category models
 */
export interface PlainReadTransaction {
  readonly get: <A, I>(scope: string, entity: Entity.Entity<A, I>, id: string) => A | undefined
  readonly list: <A, I>(scope: string, entity: Entity.Entity<A, I>) => ReadonlyArray<readonly [string, A]>
  readonly scan: <A, I>(entity: Entity.Entity<A, I>, options?: ScanOptions) => ReadonlyArray<ScanRow<A>>
}

/**
 * The rows a run read: a change concerns the query when `touches` says so.
 *
 * @since 0.1.0
 * @category models
 */
export interface ReadSet {
  readonly touches: (change: LocalChange) => boolean
}

/**
 * A query that read nothing (yet).
 *
 * @since 0.1.0
 * @category constants
 */
export const readNothing: ReadSet = { touches: () => false }

const key = (scope: string, entity: string, id: string) => `${scope}\u0000${entity}\u0000${id}`

/** A range read: an entity's rows in scopes equal to (or starting with) `scope`, with ids starting with `idPrefix`. */
interface Range {
  readonly entity: string
  readonly scope: string
  readonly exactScope: boolean
  readonly idPrefix: string
}

/**
 * A read transaction over `views` (scope → rows; taken at the start of a
 * run, never mutated) and the set of what it read so far.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeReadTransaction = (
  registry: Mutation.Registry | undefined,
  views: ReadonlyMap<string, Rows>
): { readonly tx: ReadTransaction; readonly reads: ReadSet } => {
  const exact = new Set<string>()
  const ranges: Array<Range> = []
  const known = <A, I>(entity: Entity.Entity<A, I>) => Transaction.checkEntity(registry, entity)
  const decodeRows = <A, I>(entity: Entity.Entity<A, I>, rows: ReadonlyArray<readonly [string, string, unknown]>) =>
    Effect.forEach(rows, ([scope, id, json]) => Effect.map(Entity.decode(entity, json), (value): ScanRow<A> => ({ scope, id, value })))

  const tx: ReadTransaction = {
    get: (scope, entity, id) =>
      Effect.zipRight(
        known(entity),
        Effect.suspend(() => {
          exact.add(key(scope, entity.name, id))
          const ids = views.get(scope)?.get(entity.name)
          return ids !== undefined && ids.has(id) ? Effect.asSome(Entity.decode(entity, ids.get(id))) : Effect.succeedNone
        })
      ),
    list: (scope, entity) =>
      Effect.zipRight(
        known(entity),
        Effect.suspend(() => {
          ranges.push({ entity: entity.name, scope, exactScope: true, idPrefix: "" })
          const ids = views.get(scope)?.get(entity.name)
          const rows = ids === undefined ? [] : [...ids].sort(([a], [b]) => Entity.idOrder(a, b)).map(([id, json]) => [scope, id, json] as const)
          return Effect.map(decodeRows(entity, rows), (found) => found.map((r) => [r.id, r.value] as const))
        })
      ),
    scan: (entity, options = {}) =>
      Effect.zipRight(
        known(entity),
        Effect.suspend(() => {
          const scopePrefix = options.scopePrefix ?? ""
          const idPrefix = options.idPrefix ?? ""
          ranges.push({ entity: entity.name, scope: scopePrefix, exactScope: false, idPrefix })
          const rows: Array<readonly [string, string, unknown]> = []
          for (const scope of [...views.keys()].filter((s) => s.startsWith(scopePrefix)).sort(Order.string)) {
            const ids = views.get(scope)?.get(entity.name)
            if (ids === undefined) continue
            for (const [id, json] of [...ids].sort(([a], [b]) => Entity.idOrder(a, b))) if (id.startsWith(idPrefix)) rows.push([scope, id, json])
          }
          return decodeRows(entity, rows)
        })
      )
  }

  const reads: ReadSet = {
    touches: (c) =>
      exact.has(key(c.scope, c.entity, c.id)) ||
      ranges.some((r) =>
        r.entity === c.entity && (r.exactScope ? c.scope === r.scope : c.scope.startsWith(r.scope)) && c.id.startsWith(r.idPrefix)
      )
  }
  return { tx, reads }
}

/**
 * The synchronous reads of the Promise API over a read transaction; failures are thrown as `onError` maps them.
 *
 * @since 0.1.0
 * @category utils
 */
export const plain = (tx: ReadTransaction, onError: (error: Entity.EntityError) => unknown): PlainReadTransaction => {
  const run = <A>(effect: Effect.Effect<A, Entity.EntityError>): A =>
    Either.getOrThrowWith(Effect.runSync(Effect.either(effect)), onError)
  return {
    get: (scope, entity, id) => Option.getOrUndefined(run(tx.get(scope, entity, id))),
    list: (scope, entity) => run(tx.list(scope, entity)),
    scan: (entity, options) => run(tx.scan(entity, options))
  }
}

/**
 * Whether two results are the same (structurally): an unchanged result is not reported again.
 *
 * @since 0.1.0
 * @category utils
 */
export const equivalent = <A>(a: A, b: A): boolean => Utils.structuralRegion(() => Equal.equals(a, b))
