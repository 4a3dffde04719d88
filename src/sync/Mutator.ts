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
import type * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { ChangeInput } from "./ChangeLog.js"
import * as internal from "./internal/mutator.js"
import type * as Mutation from "./Mutation.js"
import type { StorageError } from "./StorageError.js"
import type { Store } from "./Store.js"

/**
 * Why a mutation produced no changes; each reason is a protocol error code.
 *
 * @since 0.1.0
 * @category errors
 */
export class MutationFailed extends Data.TaggedError("MutationFailed")<{
  readonly reason: "unknown_mutation" | "invalid_args" | "rejected"
  readonly message: string
  /**
   * Whether the handler wrote to the store before failing, so that those
   * writes must be rolled back (unknown when absent: assume it did).
   */
  readonly wrote?: boolean
}> {}

/**
 * What `apply` receives.
 *
 * @since 0.1.0
 * @category models
 */
export interface Input {
  readonly name: string
  readonly scope: string
  readonly args: unknown
  /**
   * The app version the mutation was made under (the push's `app_version`);
   * the registry's own when absent. Older: its args are decoded in that
   * version's shape and upgraded (`Mutation.versioned`), or it stands for
   * its replacement or rejection (`Mutation.retire`).
   */
  readonly version?: number
}

/**
 * Runs a mutation by name: `apply` decodes its args and runs its handler
 * over the `Store` for the mutation's scope, returning the changes in write
 * order; it opens no transaction and appends nothing (the caller does both).
 *
 * @since 0.1.0
 * @category services
 */
export class Mutator extends Context.Tag("@mizu/sync/Mutator")<Mutator, {
  readonly apply: (input: Input) => Effect.Effect<ReadonlyArray<ChangeInput>, MutationFailed | StorageError>
  /** The names this mutator knows. */
  readonly names: ReadonlyArray<string>
  /**
   * The app versions whose mutations it takes (`Registry.version` and
   * `minVersion`): a push outside them is refused whole (`version_too_old`,
   * `version_too_new`). Absent: every version.
   */
  readonly versions?: { readonly version: number; readonly minVersion: number }
}>() {}

/**
 * Build a `Mutator` from a registry of mutation definitions.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: (registry: Mutation.Registry) => Effect.Effect<Mutator["Type"], never, Store> = internal.make

/**
 * The `Mutator` layer for a registry.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (registry: Mutation.Registry): Layer.Layer<Mutator, never, Store> =>
  Layer.effect(Mutator, make(registry))
