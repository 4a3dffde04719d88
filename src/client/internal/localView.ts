/**
 * `LocalView`'s steps: rows as maps, pulled changes applied, a handler run
 * over rows with its writes on top (through the shared `Transaction`),
 * replay and rebuild, diffs. Values are never mutated in place.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Order from "effect/Order"
import * as Schema from "effect/Schema"
import { type Change, setOwn, type SnapshotData } from "../../protocol/Sync.js"
import * as Entity from "../../sync/Entity.js"
import type * as Mutation from "../../sync/Mutation.js"
import * as Transaction from "../../sync/Transaction.js"
import type { LocalChange, LocalRejection, PendingMutation, Rows, Writes } from "../LocalView.js"

/** See `LocalView.emptyRows`. */
export const emptyRows = (): Rows => new Map()

/** See `LocalView.copyRows`. */
export const copyRows = (rows: Rows): Rows => {
  const out: Rows = new Map()
  for (const [entity, ids] of rows) out.set(entity, new Map(ids))
  return out
}

/** See `LocalView.fromSnapshot`. */
export const fromSnapshot = (data: SnapshotData): Rows => {
  const out: Rows = new Map()
  for (const [entity, ids] of Object.entries(data)) {
    const m = new Map(Object.entries(ids))
    if (m.size > 0) out.set(entity, m)
  }
  return out
}

/** See `LocalView.toSnapshot`. */
export const toSnapshot = (rows: Rows): SnapshotData => {
  const out: Record<string, Record<string, unknown>> = {}
  for (const [entity, ids] of [...rows].sort(([a], [b]) => Order.string(a, b))) {
    if (ids.size === 0) continue
    // own properties, so an entity or id named "__proto__" is a key like any other
    setOwn(out, entity, Object.fromEntries([...ids].sort(([a], [b]) => Entity.idOrder(a, b))))
  }
  return out
}

/**
 * Put or delete one row.
 */
const setRow = (rows: Rows, entity: string, id: string, value: Option.Option<unknown>): void => {
  if (Option.isSome(value)) {
    let ids = rows.get(entity)
    if (ids === undefined) {
      ids = new Map()
      rows.set(entity, ids)
    }
    ids.set(id, value.value)
  } else {
    const ids = rows.get(entity)
    if (ids === undefined) return
    ids.delete(id)
    if (ids.size === 0) rows.delete(entity)
  }
}

/** See `LocalView.getRow`. */
export const getRow = (rows: Rows, entity: string, id: string): Option.Option<unknown> => {
  const ids = rows.get(entity)
  return ids !== undefined && ids.has(id) ? Option.some(ids.get(id)) : Option.none()
}

/** See `LocalView.applyChanges`. */
export const applyChanges = (rows: Rows, changes: ReadonlyArray<Change>): void => {
  for (const c of changes) {
    setRow(rows, c.entity, c.id, c.op === "delete" ? Option.none() : Option.some(c.data ?? null))
  }
}

/**
 * Structural equality of JSON values (key order does not matter).
 */
const jsonEqual = (a: unknown, b: unknown): boolean => {
  if (a === b) return true
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false
    for (let i = 0; i < a.length; i++) if (!jsonEqual(a[i], b[i])) return false
    return true
  }
  if (Array.isArray(b)) return false
  const ka = Object.keys(a)
  const kb = Object.keys(b)
  if (ka.length !== kb.length) return false
  const rb = b as Record<string, unknown>
  const ra = a as Record<string, unknown>
  for (const k of ka) {
    if (!Object.prototype.hasOwnProperty.call(rb, k) || !jsonEqual(ra[k], rb[k])) return false
  }
  return true
}

/** See `LocalView.diff`. */
export const diff = (scope: string, before: Rows, after: Rows): Array<LocalChange> => {
  const out: Array<LocalChange> = []
  for (const [entity, ids] of after) {
    const old = before.get(entity)
    for (const [id, data] of ids) {
      if (old === undefined || !old.has(id)) out.push({ scope, entity, id, op: "create", data })
      else if (!jsonEqual(old.get(id), data)) out.push({ scope, entity, id, op: "update", data })
    }
  }
  for (const [entity, ids] of before) {
    const now = after.get(entity)
    for (const id of ids.keys()) {
      if (now === undefined || !now.has(id)) out.push({ scope, entity, id, op: "delete" })
    }
  }
  return out
}

/** See `LocalView.applyWrites`. */
export const applyWrites = (rows: Rows, writes: Writes): void => {
  for (const [entity, ids] of writes) {
    for (const [id, value] of ids) setRow(rows, entity, id, value)
  }
}

/** See `LocalView.writesToChanges`. */
export const writesToChanges = (scope: string, before: Rows, writes: Writes): Array<LocalChange> => {
  const out: Array<LocalChange> = []
  for (const [entity, ids] of writes) {
    for (const [id, value] of ids) {
      const had = Option.isSome(getRow(before, entity, id))
      if (Option.isSome(value)) {
        const prev = getRow(before, entity, id)
        if (Option.isSome(prev) && jsonEqual(prev.value, value.value)) continue
        out.push({ scope, entity, id, op: had ? "update" : "create", data: value.value })
      } else if (had) {
        out.push({ scope, entity, id, op: "delete" })
      }
    }
  }
  return out
}

/**
 * `base` with a run's writes on top, as a `Transaction` backend: writes go to
 * `writes`, `base` is never changed, reads see the writes first.
 */
const overlay = (base: Rows, writes: Writes): Transaction.Backend => {
  const read = (entity: string, id: string): Option.Option<unknown> => {
    const w = writes.get(entity)?.get(id)
    return w !== undefined ? w : getRow(base, entity, id)
  }
  const write = (entity: string, id: string, value: Option.Option<unknown>) => {
    let ids = writes.get(entity)
    if (ids === undefined) {
      ids = new Map()
      writes.set(entity, ids)
    }
    ids.set(id, value)
  }
  return {
    get: (entity, id) => Effect.sync(() => read(entity, id)),
    list: (entity) =>
      Effect.sync(() => {
        const ids = new Set<string>(base.get(entity)?.keys() ?? [])
        for (const id of writes.get(entity)?.keys() ?? []) ids.add(id)
        const rows: Array<readonly [string, unknown]> = []
        for (const id of [...ids].sort(Entity.idOrder)) {
          const v = read(entity, id)
          if (Option.isSome(v)) rows.push([id, v.value])
        }
        return rows
      }),
    put: (entity, id, data) => Effect.sync(() => write(entity, id, Option.some(data))),
    delete: (entity, id) =>
      Effect.sync(() => {
        const existed = Option.isSome(read(entity, id))
        write(entity, id, Option.none())
        return existed
      })
  }
}

/** See `LocalView.runHandler`. */
export const runHandler = <A, I>(
  registry: Mutation.Registry | undefined,
  definition: Mutation.Mutation<string, A, I>,
  scope: string,
  args: A,
  base: Rows
): Effect.Effect<Either.Either<Writes, LocalRejection>> => {
  const writes: Writes = new Map()
  const { tx } = Transaction.make(registry, scope, overlay(base, writes))
  return definition.handler(args, tx).pipe(
    Effect.as(Either.right(writes)),
    Effect.catchAll((e) =>
      Effect.succeed(Either.left<LocalRejection>({
        reason: e._tag === "EntityError" && e.reason === "invalid_id" ? "invalid_args" : "rejected",
        message: e.message
      }))
    ),
    Effect.catchAllDefect((defect) => Effect.succeed(Either.left<LocalRejection>({ reason: "rejected", message: `the handler died: ${String(defect)}` })))
  )
}

/** See `LocalView.replay`. */
export const replay = (
  registry: Mutation.Registry | undefined,
  mutation: PendingMutation,
  base: Rows
): Effect.Effect<void> => {
  if (registry === undefined) return Effect.void
  const definition = registry.mutations.get(mutation.name)
  if (definition === undefined) return Effect.void
  return Schema.decodeUnknown(definition.args)(mutation.args).pipe(
    Effect.flatMap((args) => runHandler(registry, definition, mutation.scope, args, base)),
    Effect.map(Either.map((writes) => applyWrites(base, writes))),
    Effect.catchAll(() => Effect.void)
  )
}

/** See `LocalView.rebuild`. */
export const rebuild = (
  registry: Mutation.Registry | undefined,
  scope: string,
  confirmed: Rows,
  pending: ReadonlyArray<PendingMutation>
): Effect.Effect<Rows> =>
  Effect.suspend(() => {
    const view = copyRows(confirmed)
    return Effect.as(
      Effect.forEach(pending, (m) => (m.scope === scope ? replay(registry, m, view) : Effect.void), { discard: true }),
      view
    )
  })
