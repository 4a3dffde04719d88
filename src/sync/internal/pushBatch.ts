/**
 * What one attempt at a push with `client_id` accumulates, mutation by
 * mutation, before anything is appended: the client's last id as it moves,
 * the changes per scope, the processed ids and failures to record, and one
 * slot per result whose cursor is known only once the changes are appended.
 *
 * Pure bookkeeping, owned by one attempt (a new batch per attempt), so a
 * rolled-back attempt leaves nothing behind.
 *
 * @internal
 */
import * as Protocol from "../../protocol/Sync.js"
import type { ChangeInput } from "../ChangeLog.js"
import * as Clients from "../Clients.js"
import type { MutationFailed } from "../Mutator.js"

/** A result whose cursor is the scope's head once the changes of the push up to it are counted. */
export interface Slot {
  readonly scope: string
  /** How many of the push's changes to `scope` come before this result (included). */
  readonly upTo: number
  readonly result: (cursor: number) => Protocol.MutationResult
}

/** The state of one attempt. */
export interface Batch {
  /** The client's last processed id, as the attempt processes mutations. */
  last: number
  /** The remembered failures among the duplicates, and those of this request (for a mutation repeated in it). */
  readonly failed: Map<number, Clients.Failure>
  /** Per scope, the changes to append, in mutation order. */
  readonly pending: Map<string, Array<ChangeInput>>
  readonly processed: Array<Clients.Processed>
  readonly slots: Array<Slot>
}

/** A batch starting after the client's `last` id, knowing the remembered failures among its duplicates. */
export const make = (last: number, failed: ReadonlyMap<number, Clients.Failure>): Batch => ({
  last,
  failed: new Map(failed),
  pending: new Map(),
  processed: [],
  slots: []
})

/** The scope a mutation targets. */
export const scopeOf = (mutation: Protocol.Mutation): string => mutation.scope ?? Protocol.DEFAULT_SCOPE

/** The scopes of a request's mutations, sorted and unique: the order every writer locks them in. */
export const scopesOf = (mutations: ReadonlyArray<Protocol.Mutation>): ReadonlyArray<string> => {
  if (mutations.length === 1) return [scopeOf(mutations[0])]
  return [...new Set(mutations.map(scopeOf))].sort()
}

/** The ids of the request at or below the client's last id: the duplicates. */
export const duplicateIds = (mutations: ReadonlyArray<Protocol.Mutation>, last: number): ReadonlyArray<number> => {
  const dupes: Array<number> = []
  for (const m of mutations) if (m.id !== undefined && m.id <= last) dupes.push(m.id)
  return dupes
}

const addSlot = (batch: Batch, scope: string, result: Slot["result"]): void => {
  batch.slots.push({ scope, upTo: batch.pending.get(scope)?.length ?? 0, result })
}

/** A duplicate: `ok` again, or the failure it first answered when that is remembered. */
export const addDuplicate = (batch: Batch, id: number, scope: string): void => {
  const remembered = batch.failed.get(id)
  addSlot(
    batch,
    scope,
    remembered === undefined
      ? (cursor) => ({ id, ok: true, duplicate: true, cursor })
      : (cursor) => ({ id, ok: false, duplicate: true, cursor, error: { code: remembered.code, message: remembered.message } })
  )
}

/** A gap in the ids: this mutation and every later one answer `out_of_order`, nothing of them is applied. */
export const addOutOfOrder = (batch: Batch, rest: ReadonlyArray<Protocol.Mutation>): void => {
  const expected = batch.last + 1
  for (const mutation of rest) {
    addSlot(batch, scopeOf(mutation), (cursor) => ({
      ...(mutation.id === undefined ? {} : { id: mutation.id }),
      ok: false,
      cursor,
      error: { code: "out_of_order", message: `expected mutation id ${expected}`, expected }
    }))
  }
}

/**
 * A processed mutation: its id is consumed either way; a failure (whose
 * writes were rolled back) is remembered, a success's changes are pending.
 */
export const addOutcome = (
  batch: Batch,
  id: number,
  scope: string,
  outcome: { readonly _tag: "Left"; readonly left: MutationFailed } | { readonly _tag: "Right"; readonly right: ReadonlyArray<ChangeInput> }
): void => {
  batch.last = id
  if (outcome._tag === "Left") {
    const error = { code: outcome.left.reason, message: outcome.left.message }
    const failure = Clients.failure(error.code, error.message)
    batch.processed.push({ id, scope, failure })
    batch.failed.set(id, failure)
    addSlot(batch, scope, (cursor) => ({ id, ok: false, cursor, error }))
    return
  }
  batch.processed.push({ id, scope })
  if (outcome.right.length > 0) {
    const list = batch.pending.get(scope)
    if (list === undefined) batch.pending.set(scope, [...outcome.right])
    else list.push(...outcome.right)
  }
  addSlot(batch, scope, (cursor) => ({ id, ok: true, cursor }))
}
