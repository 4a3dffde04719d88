/**
 * Conformance suite of the `Operator` view, run on every storage family
 * with one line: `operatorSuite("memory", SyncStorage.layerMemory)`.
 *
 * The layer is shared by the block's tests (and, on Postgres, the database
 * by the file), so each test writes under a key prefix of its own and reads
 * from `after: prefix`, stopping at the first key outside it.
 */
import { assert, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import type * as Admin from "../../src/protocol/Admin.js"
import * as Checksum from "../../src/protocol/Checksum.js"
import { ChangeLog } from "../../src/sync/ChangeLog.js"
import { Clients } from "../../src/sync/Clients.js"
import { Operator } from "../../src/sync/Operator.js"
import { Store } from "../../src/sync/Store.js"
import { SyncStorage } from "../../src/sync/SyncStorage.js"
import type * as SyncStorageModule from "../../src/sync/SyncStorage.js"
import { freshScope } from "./util.js"

/** Write (or, with `undefined`, delete) one row as a mutation does: the row, and its change with the checksum delta, in one transaction. */
const write = (scope: string, entity: string, id: string, data: unknown) =>
  Effect.gen(function*() {
    const store = yield* Store
    const log = yield* ChangeLog
    const before = yield* store.get(scope, entity, id)
    const old = Option.isSome(before) ? { value: before.value } : undefined
    const checksumDelta = Checksum.delta(entity, id, old, data === undefined ? undefined : { value: data })
    if (data === undefined) {
      yield* store.delete(scope, entity, id)
      yield* log.append(scope, [{ entity, id, op: "delete", checksumDelta }])
    } else {
      yield* store.put(scope, entity, id, data)
      yield* log.append(scope, [{ entity, id, op: old === undefined ? "create" : "update", data, checksumDelta }])
    }
  }).pipe((unit) => Effect.flatMap(SyncStorage, (storage) => storage.transaction(unit)))

/** UTF-8 byte order, what the listings promise. */
const bytewise = (a: string, b: string) => Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"))

type Listing<A> = (page: { readonly after?: string; readonly limit: number }) => Effect.Effect<{ readonly entries: ReadonlyArray<A>; readonly next?: string | undefined }, unknown>

/** Walk a listing from `prefix` with pages of `limit`, keeping the entries under the prefix; stops at the first key outside it. */
const walk = <A>(list: Listing<A>, keyOf: (a: A) => string, prefix: string, limit: number) =>
  Effect.gen(function*() {
    const seen: Array<A> = []
    let after: string | undefined = prefix
    let pages = 0
    while (after !== undefined) {
      const page: { readonly entries: ReadonlyArray<A>; readonly next?: string | undefined } = yield* list({ after, limit })
      pages++
      assert.isAtMost(page.entries.length, limit)
      const inside = page.entries.filter((e) => keyOf(e).startsWith(prefix))
      seen.push(...inside)
      if (inside.length < page.entries.length) break
      if (page.next !== undefined) assert.strictEqual(page.next, keyOf(page.entries[page.entries.length - 1]), "next is the page's last key")
      after = page.next
    }
    return { seen, pages }
  })

const scopesOf = (operator: Operator["Type"]): Listing<Admin.ScopeInfo> => (page) =>
  Effect.map(operator.scopes(page), (r) => ({ entries: r.scopes, next: r.next }))
const clientsOf = (operator: Operator["Type"]): Listing<Admin.ClientInfo> => (page) =>
  Effect.map(operator.clients(page), (r) => ({ entries: r.clients, next: r.next }))

export const operatorSuite = (name: string, storage: Layer.Layer<SyncStorageModule.Services | Operator, unknown>) =>
  layer(storage, { timeout: 60_000 })(`Operator (${name})`, (it) => {
    it.effect("scopes: head, floor, live rows and checksum (= Checksum.ofRows of the snapshot), read together", () =>
      Effect.gen(function*() {
        const operator = yield* Operator
        const store = yield* Store
        const log = yield* ChangeLog
        const prefix = `${freshScope("op")}/`
        const a = `${prefix}a`
        const b = `${prefix}b`
        yield* write(a, "todo", "1", { title: "one", done: false })
        yield* write(a, "todo", "2", { title: "two", tags: ["x", "y"] })
        yield* write(a, "note", "1", "text")
        yield* write(a, "todo", "1", { title: "one", done: true })
        yield* write(a, "todo", "2", undefined)
        yield* write(b, "todo", "9", 9)
        yield* log.trim(a, 2)
        const { seen } = yield* walk(scopesOf(operator), (s) => s.scope, prefix, 10)
        const snapshotA = yield* store.snapshot(a)
        assert.deepStrictEqual(seen, [
          { scope: a, head: 5, floor: 2, rows: 2, checksum: Checksum.ofRows(snapshotA), compacted: 0, compacted_at: null },
          { scope: b, head: 1, floor: 0, rows: 1, checksum: Checksum.ofRows(yield* store.snapshot(b)), compacted: 0, compacted_at: null }
        ])
        assert.strictEqual(seen[0].checksum, yield* log.checksum(a))
        // a scope whose rows are all deleted is still listed, with 0 rows and checksum 0
        yield* write(b, "todo", "9", undefined)
        const after = yield* operator.scopes({ after: a, limit: 1 })
        assert.deepStrictEqual(after.scopes, [{ scope: b, head: 2, floor: 0, rows: 0, checksum: 0, compacted: 0, compacted_at: null }])
      }))

    it.effect("scopes: bytewise order, every scope exactly once when walked with limit 2, next only while more follow", () =>
      Effect.gen(function*() {
        const operator = yield* Operator
        const prefix = `${freshScope("op")}/`
        // uppercase before lowercase, punctuation by byte, U+FFFD before an astral character (UTF-16 order would swap them)
        const names = ["a", "B", "_x", "0", "a.b", "a/b", "a-b", "\uFFFD", "\u{1F600}"].map((n) => `${prefix}${n}`)
        for (const scope of names) yield* write(scope, "t", "1", scope)
        const expected = [...names].sort(bytewise)
        const { pages, seen } = yield* walk(scopesOf(operator), (s) => s.scope, prefix, 2)
        assert.deepStrictEqual(seen.map((s) => s.scope), expected)
        assert.isAtLeast(pages, Math.ceil(expected.length / 2))
        // a page that reaches the end has no next
        const last = yield* operator.scopes({ after: expected[expected.length - 2], limit: 1 })
        assert.deepStrictEqual(last.scopes.map((s) => s.scope), [expected[expected.length - 1]])
        const end = yield* operator.scopes({ after: expected[expected.length - 1], limit: 1000 })
        assert.isTrue(end.scopes.every((s) => bytewise(s.scope, expected[expected.length - 1]) > 0))
        // limits out of range are clamped, never an error
        assert.strictEqual((yield* operator.scopes({ after: prefix, limit: 0 })).scopes.length, 1)
      }))

    it.effect("clients: owner, last id, seen, scope count; tombstones flagged expired; a returning client listed once by its record", () =>
      Effect.gen(function*() {
        const operator = yield* Operator
        const clients = yield* Clients
        const storage = yield* SyncStorage
        const prefix = `${freshScope("op")}-`
        const [owned, anon, gone, back] = ["a", "b", "c", "d"].map((n) => `${prefix}${n}`)
        const t1 = 1_700_000_000_000
        yield* TestClock.setTime(t1)
        yield* clients.claim(owned, "alice")
        yield* clients.recordAll(owned, [{ id: 1, scope: "s1" }, { id: 2, scope: "s2" }, { id: 3, scope: "s1" }])
        yield* clients.recordAll(anon, [{ id: 7, scope: "s1" }])
        yield* clients.claim(gone, "bob")
        yield* clients.recordAll(gone, [{ id: 4, scope: "s3" }])
        yield* clients.claim(back, undefined)
        yield* clients.recordAll(back, [{ id: 5, scope: "s3" }])
        const t2 = t1 + 60_000
        yield* TestClock.setTime(t2)
        // expires every client claimed before t2 (other tests' too, which do not read theirs afterwards)
        yield* storage.transaction(clients.expire(t2, 100_000, t2))
        const t3 = t2 + 60_000
        yield* TestClock.setTime(t3)
        yield* clients.claim(back, "carol")
        const { seen } = yield* walk(clientsOf(operator), (c) => c.client_id, prefix, 2)
        const iso = (ms: number) => new Date(ms).toISOString()
        // `owned` was claimed at t1, so it expired too; `anon` was never claimed (no seen): it stays
        assert.deepStrictEqual(seen, [
          { client_id: owned, owner: "alice", last_id: 3, seen: null, expired: true, expired_at: iso(t2) },
          { client_id: anon, last_id: 7, seen: null, scopes: 1 },
          { client_id: gone, owner: "bob", last_id: 4, seen: null, expired: true, expired_at: iso(t2) },
          { client_id: back, owner: "carol", last_id: 5, seen: iso(t3), scopes: 0 }
        ])
      }))

    it.effect("clients: a live record shows its owner, last id, seen and how many scopes it pushed to", () =>
      Effect.gen(function*() {
        const operator = yield* Operator
        const clients = yield* Clients
        const prefix = `${freshScope("op")}-`
        const c = `${prefix}x`
        const t = 1_800_000_000_000
        yield* TestClock.setTime(t)
        yield* clients.claim(c, "dana")
        yield* clients.recordAll(c, [{ id: 1, scope: "s1" }, { id: 2, scope: "s2" }, { id: 3, scope: "s1" }])
        const page = yield* operator.clients({ after: prefix, limit: 1 })
        assert.deepStrictEqual(page.clients, [{ client_id: c, owner: "dana", last_id: 3, seen: new Date(t).toISOString(), scopes: 2 }])
      }))

    it.effect("totals count scopes, live rows, kept changes, client records and tombstones", () =>
      Effect.gen(function*() {
        const operator = yield* Operator
        const clients = yield* Clients
        const log = yield* ChangeLog
        const before = yield* operator.totals
        const prefix = `${freshScope("op")}/`
        yield* write(`${prefix}a`, "t", "1", 1)
        yield* write(`${prefix}a`, "t", "2", 2)
        yield* write(`${prefix}a`, "t", "1", undefined)
        yield* write(`${prefix}b`, "t", "1", 1)
        yield* log.trim(`${prefix}a`, 1)
        yield* clients.recordAll(`${prefix}c`, [{ id: 1, scope: "s" }])
        const after = yield* operator.totals
        assert.deepStrictEqual(
          {
            scopes: after.scopes - before.scopes,
            rows: after.rows - before.rows,
            changes: after.changes - before.changes,
            clients: after.clients - before.clients,
            expired: after.expired - before.expired
          },
          { scopes: 2, rows: 2, changes: 3, clients: 1, expired: 0 }
        )
      }))
  })
