/**
 * The bookkeeping of one push attempt (`src/sync/internal/pushBatch.ts`) as
 * pure functions: duplicates answer from the ledger, a gap answers
 * `out_of_order` for the rest, outcomes consume their ids, and each result's
 * cursor counts the push's changes to its scope up to it.
 *
 * Bad input tried: a duplicate of a failure remembered earlier and of one
 * made in the same request, a gap after a processed mutation, a mutation
 * without an id in the rest of a gap.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Either from "effect/Either"
import * as Clients from "../src/sync/Clients.js"
import * as PushBatch from "../src/sync/internal/pushBatch.js"
import { MutationFailed } from "../src/sync/Mutator.js"

const change = (id: string) => ({ entity: "todo", id, op: "create" as const, data: { id } })
const resultsAt = (batch: PushBatch.Batch, base: Record<string, number>) =>
  batch.slots.map((slot) => slot.result((base[slot.scope] ?? 0) + slot.upTo))

describe("PushBatch", () => {
  it("the duplicates are the ids at or below the client's last", () => {
    assert.deepStrictEqual(PushBatch.duplicateIds([{ id: 1, name: "m", args: {} }, { id: 3, name: "m", args: {} }, { name: "m", args: {} }], 2), [1])
  })

  it("outcomes consume ids, changes count towards each later result's cursor, per scope", () => {
    const batch = PushBatch.make(0, new Map())
    PushBatch.addOutcome(batch, 1, "a", Either.right([change("x"), change("y")]))
    PushBatch.addOutcome(batch, 2, "b", Either.right([change("z")]))
    PushBatch.addOutcome(batch, 3, "a", Either.left(new MutationFailed({ reason: "rejected", message: "no" })))
    PushBatch.addOutcome(batch, 4, "a", Either.right([]))
    assert.strictEqual(batch.last, 4)
    assert.deepStrictEqual([...batch.pending.keys()], ["a", "b"])
    assert.deepStrictEqual(batch.processed.map((p) => [p.id, p.failure?.code]), [[1, undefined], [2, undefined], [3, "rejected"], [4, undefined]])
    assert.deepStrictEqual(resultsAt(batch, { a: 10, b: 20 }), [
      { id: 1, ok: true, cursor: 12 },
      { id: 2, ok: true, cursor: 21 },
      { id: 3, ok: false, cursor: 12, error: { code: "rejected", message: "no" } },
      { id: 4, ok: true, cursor: 12 }
    ])
  })

  it("a duplicate answers ok, or the failure remembered before or in this request", () => {
    const batch = PushBatch.make(5, new Map([[4, Clients.failure("invalid_args", "bad")]]))
    PushBatch.addDuplicate(batch, 3, "a")
    PushBatch.addDuplicate(batch, 4, "a")
    PushBatch.addOutcome(batch, 6, "a", Either.left(new MutationFailed({ reason: "rejected", message: "later" })))
    PushBatch.addDuplicate(batch, 6, "a")
    assert.deepStrictEqual(resultsAt(batch, { a: 7 }), [
      { id: 3, ok: true, duplicate: true, cursor: 7 },
      { id: 4, ok: false, duplicate: true, cursor: 7, error: { code: "invalid_args", message: "bad" } },
      { id: 6, ok: false, cursor: 7, error: { code: "rejected", message: "later" } },
      { id: 6, ok: false, duplicate: true, cursor: 7, error: { code: "rejected", message: "later" } }
    ])
  })

  it("a gap answers out_of_order for the rest, with the expected id, applying nothing of it", () => {
    const batch = PushBatch.make(1, new Map())
    PushBatch.addOutcome(batch, 2, "a", Either.right([change("x")]))
    PushBatch.addOutOfOrder(batch, [{ id: 5, name: "m", args: {}, scope: "b" }, { name: "m", args: {} }])
    assert.strictEqual(batch.last, 2)
    const error = { code: "out_of_order" as const, message: "expected mutation id 3", expected: 3 }
    assert.deepStrictEqual(resultsAt(batch, { a: 0, b: 4, _default: 9 }), [
      { id: 2, ok: true, cursor: 1 },
      { id: 5, ok: false, cursor: 4, error },
      { ok: false, cursor: 9, error }
    ])
  })
})
