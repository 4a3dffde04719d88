/**
 * The `Mutator` over the `Store`: args decoded synchronously first (through
 * the Effect decoder only on failure or for an asynchronous Schema, whose
 * error is the one reported), the handler run over the shared `Transaction`
 * bound to the mutation's scope, and each failure mapped to its reason.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import { formatParseError } from "../../protocol/Sync.js"
import type * as Mutation from "../Mutation.js"
import { MutationFailed, Mutator } from "../Mutator.js"
import type { StorageError } from "../StorageError.js"
import { Store, type SyncView } from "../Store.js"
import * as Transaction from "../Transaction.js"
import * as Versions from "./versions.js"

/** The `Store`, for one scope, as what a `Transaction` reads and writes through (with the store's synchronous view, when it has one). */
const storeBackend = (store: Store["Type"], scope: string): Transaction.Backend => {
  const syncIn = store.syncIn
  // the store's view bound to the scope, made once per view (a group's writer gets one view throughout)
  let view: SyncView | undefined
  let bound: Transaction.SyncBackend | undefined
  return {
    get: (entity, id) => store.get(scope, entity, id),
    list: (entity) => store.list(scope, entity),
    put: (entity, id, data) => store.put(scope, entity, id, data),
    delete: (entity, id) => store.delete(scope, entity, id),
    sync: syncIn === undefined ? undefined : (context) => {
      const current = syncIn(context)
      if (current === undefined) return undefined
      if (current !== view) {
        const of = current
        view = of
        bound = {
          get: (entity, id) => of.get(scope, entity, id),
          put: (entity, id, data) => of.put(scope, entity, id, data),
          delete: (entity, id) => of.delete(scope, entity, id)
        }
      }
      return bound
    }
  }
}

/** How a handler's failure fails its mutation; `wrote`: the handler had written something first. */
const failureOf = (e: Mutation.HandlerError, wrote: boolean): Effect.Effect<never, MutationFailed | StorageError> => {
  switch (e._tag) {
    // every write of the handler records a change, so no change means no write
    case "Rejected":
      return Effect.fail(new MutationFailed({ reason: "rejected", message: e.message, wrote }))
    // An id storage cannot keep (too long, U+0000) comes from the args: invalid_args,
    // the same on every storage layer and in the client's optimistic run.
    // A stored value that no longer decodes, or an entity outside the registry, is a
    // bug of the app. It is deterministic, so retrying cannot help: the mutation is
    // consumed as rejected (and logged), never left to block the client's queue.
    case "EntityError":
      return e.reason === "invalid_id"
        ? Effect.fail(new MutationFailed({ reason: "invalid_args", message: e.message, wrote }))
        : Effect.zipRight(
          Effect.logError("mutation failed on an entity", e),
          Effect.fail(new MutationFailed({ reason: "rejected", message: e.message, wrote }))
        )
    // A value the database refused as such (not an outage): retrying cannot help either.
    // The statement may have failed half-way, so the mutation counts as having written
    // (its savepoint is rolled back).
    case "StorageError":
      return e.reason === "invalid"
        ? Effect.fail(new MutationFailed({ reason: "invalid_args", message: e.message, wrote: true }))
        : Effect.fail(e)
  }
}

/** See `Mutator.make`. */
export const make = (registry: Mutation.Registry): Effect.Effect<Mutator["Type"], never, Store> =>
  Effect.gen(function*() {
    const store = yield* Store
    const decoders = new Map([...registry.mutations.values()].map((m) => {
      // Synchronously first (no fiber steps); a failure, or a Schema that needs to run
      // asynchronously, goes through the Effect decoder, whose error is the one reported.
      const codec = {
        sync: Schema.decodeUnknownEither(m.args, { errors: "all" }),
        effect: Schema.decodeUnknown(m.args, { errors: "all" })
      }
      return [m.name, codec] as const
    }))
    // the last scope's backend, kept: a group's mutations mostly go to one scope, and a backend is a handful of closures
    let lastScope: string | undefined
    let lastBackend: Transaction.Backend | undefined
    const backendOf = (scope: string): Transaction.Backend => {
      if (lastBackend === undefined || lastScope !== scope) {
        lastScope = scope
        lastBackend = storeBackend(store, scope)
      }
      return lastBackend
    }
    return Mutator.of({
      names: [...registry.mutations.keys()],
      versions: { version: registry.version, minVersion: registry.minVersion },
      apply: (input) => {
        const run = (def: Mutation.Mutation, args: unknown) => {
          const { changes, tx } = Transaction.make(registry, input.scope, backendOf(input.scope))
          return Effect.matchEffect(def.handler(args, tx), {
            onSuccess: () => Effect.succeed(changes),
            onFailure: (e) => failureOf(e, changes.length > 0)
          })
        }
        // made under an older app version whose shape or name has changed since: through the upgrade chain
        if (Versions.needsUpgrade(registry, input.name, input.version)) {
          return Versions.resolve(registry, input.name, input.args, input.version ?? registry.version).pipe(
            Effect.mapError((e) => new MutationFailed({ ...e, wrote: false })),
            Effect.flatMap((resolved) => Effect.suspend(() => run(resolved.mutation, resolved.args)))
          )
        }
        const def = registry.mutations.get(input.name)
        const decode = decoders.get(input.name)
        if (def === undefined || decode === undefined) {
          return Effect.fail(
            new MutationFailed({ reason: "unknown_mutation", message: `unknown mutation ${input.name}`, wrote: false })
          )
        }
        const decoded = decode.sync(input.args)
        // suspended: a handler that throws before returning its Effect is a defect of this mutation, not of the caller
        if (Either.isRight(decoded)) return Effect.suspend(() => run(def, decoded.right))
        return decode.effect(input.args).pipe(
          Effect.mapError((e) => new MutationFailed({ reason: "invalid_args", message: formatParseError(e), wrote: false })),
          Effect.flatMap((args) => run(def, args))
        )
      }
    })
  })
