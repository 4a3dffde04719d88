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
import type * as Effect from "effect/Effect"
import * as Equal from "effect/Equal"
import type * as Option from "effect/Option"
import * as Utils from "effect/Utils"
import type * as Entity from "../sync/Entity.js"
import type * as Mutation from "../sync/Mutation.js"
import * as internal from "./internal/query.js"
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

/**
 * What to do with a stored row its entity's Schema (and migration) cannot
 * read: told, and the row left out of the read.
 *
 * @since 0.1.0
 * @category models
 */
export type OnUnreadable = (scope: string, entity: string, id: string, error: Entity.EntityError) => Effect.Effect<void>

/**
 * A read transaction over `views` (scope → rows; taken at the start of a
 * run, never mutated) and the set of what it read so far. A row that does
 * not decode fails the read with its `EntityError`, or, with
 * `onUnreadable`, is left out and reported to it.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeReadTransaction: (
  registry: Mutation.Registry | undefined,
  views: ReadonlyMap<string, Rows>,
  onUnreadable?: OnUnreadable
) => { readonly tx: ReadTransaction; readonly reads: ReadSet } = internal.makeReadTransaction

/**
 * The synchronous reads of the Promise API over a read transaction; failures are thrown as `onError` maps them.
 *
 * @since 0.1.0
 * @category utils
 */
export const plain: (tx: ReadTransaction, onError: (error: Entity.EntityError) => unknown) => PlainReadTransaction = internal.plain

/**
 * Whether two results are the same (structurally): an unchanged result is not reported again.
 *
 * @since 0.1.0
 * @category utils
 */
export const equivalent = <A>(a: A, b: A): boolean => Utils.structuralRegion(() => Equal.equals(a, b))
