/**
 * `Query`'s read transaction: reads over one snapshot of the views, each
 * read recorded (exact rows, and ranges for lists and scans) so that a
 * change can be tested against what a run read.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Order from "effect/Order"
import * as Entity from "../../sync/Entity.js"
import type * as Mutation from "../../sync/Mutation.js"
import * as Transaction from "../../sync/Transaction.js"
import type { Rows } from "../LocalView.js"
import type { OnUnreadable, PlainReadTransaction, ReadSet, ReadTransaction, ScanRow } from "../Query.js"

const key = (scope: string, entity: string, id: string) => `${scope}\u0000${entity}\u0000${id}`

/** A range read: an entity's rows in scopes equal to (or starting with) `scope`, with ids starting with `idPrefix`. */
interface Range {
  readonly entity: string
  readonly scope: string
  readonly exactScope: boolean
  readonly idPrefix: string
}

/** One stored row read as `entity`: its value, or (with `onUnreadable`, a row that does not decode) none, reported. */
export const readRowWith = (onUnreadable: OnUnreadable | undefined) =>
<A, I>(entity: Entity.Entity<A, I>, scope: string, id: string, json: unknown): Effect.Effect<Option.Option<A>, Entity.EntityError> =>
  onUnreadable === undefined
    ? Effect.asSome(Entity.decode(entity, json))
    : Effect.catchIf(
      Effect.asSome(Entity.decode(entity, json)),
      (e) => e.reason === "decode",
      (e) => Effect.as(onUnreadable(scope, entity.name, id, e), Option.none())
    )

/** See `Query.makeReadTransaction`. */
export const makeReadTransaction = (
  registry: Mutation.Registry | undefined,
  views: ReadonlyMap<string, Rows>,
  onUnreadable?: OnUnreadable
): { readonly tx: ReadTransaction; readonly reads: ReadSet } => {
  const exact = new Set<string>()
  const ranges: Array<Range> = []
  const known = <A, I>(entity: Entity.Entity<A, I>) => Transaction.checkEntity(registry, entity)
  const readRow = readRowWith(onUnreadable)
  const decodeRows = <A, I>(entity: Entity.Entity<A, I>, rows: ReadonlyArray<readonly [string, string, unknown]>) =>
    Effect.map(
      Effect.forEach(rows, ([scope, id, json]) => Effect.map(readRow(entity, scope, id, json), Option.map((value): ScanRow<A> => ({ scope, id, value })))),
      (found) => found.flatMap((r) => Option.isSome(r) ? [r.value] : [])
    )

  const tx: ReadTransaction = {
    get: (scope, entity, id) =>
      Effect.zipRight(
        known(entity),
        Effect.suspend(() => {
          exact.add(key(scope, entity.name, id))
          const ids = views.get(scope)?.get(entity.name)
          return ids !== undefined && ids.has(id) ? readRow(entity, scope, id, ids.get(id)) : Effect.succeedNone
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

/** See `Query.plain`. */
export const plain = (tx: ReadTransaction, onError: (error: Entity.EntityError) => unknown): PlainReadTransaction => {
  const run = <A>(effect: Effect.Effect<A, Entity.EntityError>): A =>
    Either.getOrThrowWith(Effect.runSync(Effect.either(effect)), onError)
  return {
    get: (scope, entity, id) => Option.getOrUndefined(run(tx.get(scope, entity, id))),
    list: (scope, entity) => run(tx.list(scope, entity)),
    scan: (entity, options) => run(tx.scan(entity, options))
  }
}
