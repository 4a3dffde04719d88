/**
 * The data structures of a client's local view and the pure steps the rebase
 * is made of: rows of a scope, running a handler over them (through the
 * `Transaction` the server's mutators run on, over the rows with the run's
 * writes on top), replaying a pending mutation, and diffing two views into
 * the changes a UI sees.
 *
 * Invariants (what `SyncClient` relies on):
 * - Rows hold JSON values exactly as the server's `Store` does
 *   (`entity → id → JSON`); values are never mutated in place, so copying a
 *   scope copies its maps and shares its values.
 * - `runHandler` and `replay` never fail: a handler that rejects, an entity
 *   outside the registry, or args that no longer decode mean the mutation has
 *   no local effect. Whether a mutation really is rejected is the server's call;
 *   locally it only decides what the optimistic view shows.
 * - A mutation's writes go to its own scope only (`Transaction.scope`), so a
 *   scope's view is a function of that scope's confirmed rows and that scope's
 *   pending mutations, in id order.
 *
 * @since 0.1.0
 */
import type * as Effect from "effect/Effect"
import type * as Either from "effect/Either"
import type * as Option from "effect/Option"
import type { Change, ChangeOp, SnapshotData } from "../protocol/Sync.js"
import type * as Mutation from "../sync/Mutation.js"
import * as internal from "./internal/localView.js"

/**
 * `entity → id → JSON`: one scope's data.
 *
 * @since 0.1.0
 * @category models
 */
export type Rows = Map<string, Map<string, unknown>>

/**
 * A mutation waiting for the server, as the queue stores it: `args` in their encoded (wire) form.
 *
 * @since 0.1.0
 * @category models
 */
export interface PendingMutation {
  /** The client's sequence number: 1, 2, 3, … across all scopes. */
  readonly id: number
  readonly name: string
  readonly scope: string
  readonly args: unknown
  /** The app version (`Registry.version`) it was made under; 1 when absent. */
  readonly version?: number
}

/**
 * One change of the local view, as a UI sees it. `data` is absent on `delete`.
 *
 * @since 0.1.0
 * @category models
 */
export interface LocalChange {
  readonly scope: string
  readonly entity: string
  readonly id: string
  readonly op: ChangeOp
  readonly data?: unknown
}

/**
 * A fresh empty scope.
 *
 * @since 0.1.0
 * @category constructors
 */
export const emptyRows: () => Rows = internal.emptyRows

/**
 * Copy the maps of a scope (values are shared: they are never mutated).
 *
 * @since 0.1.0
 * @category utils
 */
export const copyRows: (rows: Rows) => Rows = internal.copyRows

/**
 * Rows from a snapshot's `data`.
 *
 * @since 0.1.0
 * @category conversions
 */
export const fromSnapshot: (data: SnapshotData) => Rows = internal.fromSnapshot

/**
 * The rows as a snapshot's `data`: entities without rows are left out, ids sorted, as the server's `Store` does.
 *
 * @since 0.1.0
 * @category conversions
 */
export const toSnapshot: (rows: Rows) => SnapshotData = internal.toSnapshot

/**
 * Read one row.
 *
 * @since 0.1.0
 * @category utils
 */
export const getRow: (rows: Rows, entity: string, id: string) => Option.Option<unknown> = internal.getRow

/**
 * Apply pulled changes in order (mutates `rows`).
 *
 * @since 0.1.0
 * @category utils
 */
export const applyChanges: (rows: Rows, changes: ReadonlyArray<Change>) => void = internal.applyChanges

/**
 * What changed from `before` to `after`, as local changes of `scope`.
 *
 * @since 0.1.0
 * @category utils
 */
export const diff: (scope: string, before: Rows, after: Rows) => Array<LocalChange> = internal.diff

/**
 * The writes of one handler run: `entity → id → Some(JSON) | None (deleted)`.
 *
 * @since 0.1.0
 * @category models
 */
export type Writes = Map<string, Map<string, Option.Option<unknown>>>

/**
 * Apply writes to rows (mutates `rows`).
 *
 * @since 0.1.0
 * @category utils
 */
export const applyWrites: (rows: Rows, writes: Writes) => void = internal.applyWrites

/**
 * The writes as local changes, relative to the rows they were made over (before applying them).
 *
 * @since 0.1.0
 * @category utils
 */
export const writesToChanges: (scope: string, before: Rows, writes: Writes) => Array<LocalChange> = internal.writesToChanges

/**
 * Why a mutation has no local effect: the handler rejected it (or touched an
 * entity outside the registry), or (`invalid_args`) it used an id storage
 * cannot keep (`Entity.invalidId`), which the server refuses as `invalid_args`.
 *
 * @since 0.1.0
 * @category models
 */
export interface LocalRejection {
  readonly reason: "rejected" | "invalid_args"
  readonly message: string
}

/**
 * Run a mutation's handler over `base` with already-decoded args: the writes
 * on success, the rejection otherwise. Never fails, never dies: a handler
 * that dies is an app bug, and locally it only means "no optimistic effect".
 *
 * @since 0.1.0
 * @category utils
 */
export const runHandler: <A, I>(
  registry: Mutation.Registry | undefined,
  definition: Mutation.Mutation<string, A, I>,
  scope: string,
  args: A,
  base: Rows
) => Effect.Effect<Either.Either<Writes, LocalRejection>> = internal.runHandler

/**
 * Replay a pending mutation over `base` (mutates `base` when the handler
 * succeeds). Unknown names and args that no longer decode have no effect.
 *
 * @since 0.1.0
 * @category utils
 */
export const replay: (
  registry: Mutation.Registry | undefined,
  mutation: PendingMutation,
  base: Rows
) => Effect.Effect<void> = internal.replay

/**
 * The view of a scope: its confirmed rows with its pending mutations replayed on top, in id order.
 *
 * @since 0.1.0
 * @category utils
 */
export const rebuild: (
  registry: Mutation.Registry | undefined,
  scope: string,
  confirmed: Rows,
  pending: ReadonlyArray<PendingMutation>
) => Effect.Effect<Rows> = internal.rebuild
