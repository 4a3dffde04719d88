/**
 * Log compaction (issue #20, part 4) on memory, SQLite and Postgres, over a
 * real server on a free port:
 *
 * - `ChangeLog.compact` keeps the latest change of each row (deletes too),
 *   drops the ones before it up to the mark, leaves head, floor and checksum
 *   as they were, stops after `maxScan` cursors (a partial mark, the rest at
 *   the next run), does nothing the second time, and rolls back with its
 *   transaction;
 * - the property (fast-check, fixed seed in the name): any sequence of
 *   pushes (puts and deletes over a few ids) with compactions and trims
 *   interleaved, and readers that stopped along the way: each reader at or
 *   above the floor that pulls to the head (small pages, the client's
 *   continuity rule: skipped cursors only at or below `compacted_through`)
 *   holds exactly the snapshot's rows, and the last page's checksum is the
 *   snapshot's, which is `Checksum.ofRows` of its rows; a reader below the
 *   floor gets `cursor_too_old`;
 * - a sync client far behind a compacted log catches up with fewer changes
 *   than were written, and no snapshot;
 * - `LogCompaction.runOnce` compacts the scopes over the threshold only.
 * No wire input is new here but `compacted_through`, which the client reads
 * (its hostile shapes are the pull response's Schema).
 */
import { assert, describe, it, layer } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as fc from "fast-check"
import { Authorizer, ChangeLog, Checksum, Entity, LivePubSub, LogCompaction, Mutation, Protocol, SqlStorage, SyncStorage } from "mizu-sync-live"
import type { SyncTransport } from "mizu-sync-live/client"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { freshScope, range } from "./suites/util.js"
import { startStoppable, syncedStore } from "./support/clientHarness.js"
import { describePostgres } from "./support/Postgres.js"
import { BaseUrl, decodeAs, layerServer, post } from "./support/TestServer.js"

const SEED = 20_261_202

const Note = Entity.make("note", Schema.Struct({ id: Schema.String, text: Schema.String }))
const put = Mutation.make("note/put", {
  args: Schema.Struct({ id: Schema.String, text: Schema.String }),
  handler: ({ id, text }, tx) => tx.put(Note, id, { id, text })
})
const del = Mutation.make("note/delete", {
  args: Schema.Struct({ id: Schema.String }),
  handler: ({ id }, tx) => tx.delete(Note, id)
})
const registry = Mutation.registry({ entities: [Note], mutations: [put, del] })

type Rows = Record<string, Record<string, unknown>>

const pushAll = (base: string, scope: string, mutations: ReadonlyArray<{ readonly name: string; readonly args: unknown }>) =>
  Effect.flatMap(
    post(`${base}/_sync/push`, JSON.stringify({ mutations: mutations.map((m) => ({ ...m, scope })) })),
    (res) => Effect.sync(() => assert.strictEqual(res.status, 200, res.text))
  )

const snapshotOf = (base: string, scope: string) =>
  Effect.map(post(`${base}/_sync/snapshot`, JSON.stringify({ scope })), (res) => decodeAs(Protocol.SnapshotResponse, res.json))

/** Apply a page's changes to `rows` as a client does. */
const apply = (rows: Rows, changes: ReadonlyArray<Protocol.Change>) => {
  for (const c of changes) {
    const ids = rows[c.entity] ?? (rows[c.entity] = {})
    if (c.op === "delete") {
      delete ids[c.id]
      if (Object.keys(ids).length === 0) delete rows[c.entity]
    } else ids[c.id] = c.data
  }
}

/**
 * Pull from `cursor` to the head in pages of `limit`, checking each page as
 * the client does; the rows, the last page's checksum and how many changes came.
 */
const pullToHead = (base: string, scope: string, cursor: number, start: Rows, limit = 3) =>
  Effect.gen(function*() {
    const rows: Rows = structuredClone(start)
    let at = cursor
    let received = 0
    for (let page = 0; page < 10_000; page++) {
      const res = yield* post(`${base}/_sync/pull`, JSON.stringify({ scope, cursor: at, limit }))
      if (res.status !== 200) return { status: res.status, json: res.json } as const
      const r = decodeAs(Protocol.PullResponse, res.json)
      const mark = r.compacted_through ?? 0
      let previous = at
      for (const c of r.changes) {
        assert.isAbove(c.cursor, previous, "ascending")
        if (c.cursor !== previous + 1) assert.isAtMost(c.cursor - 1, mark, `cursors skipped only at or below the mark (${mark})`)
        previous = c.cursor
      }
      apply(rows, r.changes)
      received += r.changes.length
      at = r.cursor
      if (!r.has_more) return { status: 200, rows, cursor: at, checksum: r.checksum, received } as const
    }
    throw new Error("no end")
  })

const ids = ["a", "b", "c", "d", "e"] as const

type Step =
  | { readonly _tag: "push"; readonly ops: ReadonlyArray<{ readonly id: string; readonly del: boolean; readonly text: string }> }
  /** `at`: where, in percent of the head. */
  | { readonly _tag: "compact"; readonly at: number; readonly scan: number }
  | { readonly _tag: "trim"; readonly at: number }
  | { readonly _tag: "reader" }

const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 6, arbitrary: fc.record({
    _tag: fc.constant("push" as const),
    ops: fc.array(fc.record({ id: fc.constantFrom(...ids), del: fc.boolean(), text: fc.string({ maxLength: 6 }) }), { minLength: 1, maxLength: 4 })
  }) },
  { weight: 2, arbitrary: fc.record({ _tag: fc.constant("compact" as const), at: fc.integer({ min: 0, max: 100 }), scan: fc.integer({ min: 1, max: 40 }) }) },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("trim" as const), at: fc.integer({ min: 0, max: 50 }) }) },
  { weight: 2, arbitrary: fc.constant({ _tag: "reader" as const }) }
)

const suite = (name: string, storage: Layer.Layer<SyncStorage.Services, unknown>, runs: number) => {
  const deps = Layer.mergeAll(storage, LivePubSub.layerMemory, Authorizer.layerAllowAll)
  layer(layerServer({ registry }, deps), { timeout: 120_000, excludeTestServices: true })(`log compaction (${name})`, (it) => {
    it.effect("compact keeps each row's latest change, deletes too; head, floor and checksum stay; bounded by maxScan; idempotent; rolls back", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const log = yield* ChangeLog.ChangeLog
        const storage = yield* SyncStorage.SyncStorage
        const scope = freshScope()
        // a: 3 puts, b: put then delete, c: 1 put, a again at the end
        yield* pushAll(base, scope, [
          { name: "note/put", args: { id: "a", text: "1" } },
          { name: "note/put", args: { id: "b", text: "1" } },
          { name: "note/put", args: { id: "a", text: "2" } },
          { name: "note/delete", args: { id: "b" } },
          { name: "note/put", args: { id: "c", text: "1" } },
          { name: "note/put", args: { id: "a", text: "3" } }
        ])
        const before = { head: yield* log.head(scope), floor: yield* log.floor(scope), checksum: yield* log.checksum(scope) }
        assert.strictEqual(before.head, 6)
        // rolled back with its transaction: nothing happened
        const failed = yield* Effect.exit(storage.transaction(Effect.zipRight(log.compact(scope, 6, 100), Effect.fail("abort" as const))))
        assert.isTrue(Exit.isFailure(failed))
        assert.strictEqual((yield* log.since(scope, 0, 100)).changes.length, 6)
        // bounded: 2 cursors looked at, the mark reaches 2 (cursors 1 and 2, a's and b's first puts, are superseded)
        const partial = yield* log.compact(scope, 6, 2)
        assert.deepStrictEqual(partial, { removed: 2, through: 2 })
        const done = yield* log.compact(scope, 6, 100)
        assert.deepStrictEqual(done, { removed: 1, through: 6 }, "the rest: a@3, superseded by a@6")
        const kept = (yield* log.since(scope, 0, 100)).changes.map((c) => [c.cursor, c.id, c.op])
        assert.deepStrictEqual(kept, [[4, "b", "delete"], [5, "c", "create"], [6, "a", "update"]])
        assert.deepStrictEqual({ head: yield* log.head(scope), floor: yield* log.floor(scope), checksum: yield* log.checksum(scope) }, before)
        assert.deepStrictEqual(yield* log.compact(scope, 6, 100), { removed: 0, through: 6 }, "nothing more to do")
        const snap = yield* snapshotOf(base, scope)
        const pulled = yield* pullToHead(base, scope, 0, {})
        assert.strictEqual(pulled.status, 200)
        if (pulled.status === 200) {
          assert.deepStrictEqual(pulled.rows, snap.data)
          assert.strictEqual(pulled.checksum, snap.checksum)
        }
      }))

    it.effect(`property (seed ${SEED}): pushes with compactions and trims interleaved; every reader at or above the floor pulls to the snapshot's rows and checksum`, () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const log = yield* ChangeLog.ChangeLog
        const property = fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 14 }), async (steps) => {
          await Effect.runPromise(Effect.gen(function*() {
            const scope = freshScope()
            const readers: Array<{ readonly cursor: number; readonly rows: Rows }> = [{ cursor: 0, rows: {} }]
            for (const s of steps) {
              const head = yield* log.head(scope)
              switch (s._tag) {
                case "push":
                  yield* pushAll(base, scope, s.ops.map((op) => op.del ? { name: "note/delete", args: { id: op.id } } : { name: "note/put", args: { id: op.id, text: op.text } }))
                  break
                case "compact":
                  yield* log.compact(scope, Math.floor((head * s.at) / 100), s.scan)
                  break
                case "trim":
                  yield* log.trim(scope, Math.floor((head * s.at) / 100))
                  break
                case "reader": {
                  const snap = yield* snapshotOf(base, scope)
                  readers.push({ cursor: snap.cursor, rows: structuredClone(snap.data) as Rows })
                  break
                }
              }
            }
            const snap = yield* snapshotOf(base, scope)
            assert.strictEqual(snap.checksum, Checksum.ofRows(snap.data))
            const floor = yield* log.floor(scope)
            for (const reader of readers) {
              const pulled = yield* pullToHead(base, scope, reader.cursor, reader.rows)
              if (reader.cursor < floor) {
                assert.strictEqual(pulled.status, 410, "below the floor")
                continue
              }
              assert.strictEqual(pulled.status, 200)
              if (pulled.status !== 200) continue
              assert.deepStrictEqual(pulled.rows, snap.data, `reader from ${reader.cursor}`)
              assert.strictEqual(pulled.cursor, snap.cursor)
              assert.strictEqual(pulled.checksum, snap.checksum, `the checksum at the head, from ${reader.cursor}`)
            }
          }))
        })
        yield* Effect.promise(() => fc.assert(property, { seed: SEED, numRuns: runs }))
      }))

    it.scoped("a client far behind a compacted log catches up with fewer changes than were written, and no snapshot", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const log = yield* ChangeLog.ChangeLog
        const scope = freshScope()
        yield* pushAll(base, scope, range(5).map((i) => ({ name: "note/put", args: { id: `n${i}`, text: "v0" } })))
        const { fetch, storage } = yield* syncedStore(base, { registry, scopes: [scope] })
        // 200 more changes to the same 5 rows while it was away, then compaction
        for (const round of range(40)) yield* pushAll(base, scope, range(5).map((i) => ({ name: "note/put", args: { id: `n${i}`, text: `v${round}` } })))
        const compacted = yield* LogCompaction.runOnce({ maxChanges: 20 })
        assert.deepStrictEqual(compacted.scopes, 1)
        assert.isAbove(compacted.removed, 150)
        const calls = { pull: 0, snapshot: 0, changes: 0 }
        const counted: SyncTransport.SyncTransport["Type"] = {
          ...fetch,
          pull: (r) => Effect.tap(fetch.pull(r), (page) => Effect.sync(() => {
            calls.pull++
            calls.changes += page.changes.length
          })),
          snapshot: (r) => Effect.zipRight(Effect.sync(() => calls.snapshot++), fetch.snapshot(r))
        }
        const second = yield* startStoppable({ registry, scopes: [scope], pullInterval: "1 hour" }, counted, storage)
        yield* second.client.sync
        const snap = yield* snapshotOf(base, scope)
        assert.deepStrictEqual(yield* second.client.view(scope), snap.data)
        assert.strictEqual(yield* second.client.cursor(scope), yield* log.head(scope))
        assert.strictEqual(calls.snapshot, 0, "no reset")
        assert.isBelow(calls.changes, 200, "fewer changes than were written")
        yield* second.stop
      }))

    it.effect("LogCompaction.runOnce compacts only the scopes over the threshold", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const log = yield* ChangeLog.ChangeLog
        const small = freshScope()
        const big = freshScope()
        yield* pushAll(base, small, range(5).map(() => ({ name: "note/put", args: { id: "x", text: "t" } })))
        yield* pushAll(base, big, range(50).map((i) => ({ name: "note/put", args: { id: "x", text: `t${i}` } })))
        yield* LogCompaction.runOnce({ maxChanges: 20, maxScopes: 1_000 })
        assert.strictEqual((yield* log.since(small, 0, 100)).changes.length, 5, "under the threshold: untouched")
        const bigChanges = (yield* log.since(big, 0, 100)).changes
        // kept: the newest 18 (90% of 20) as they were, one change of x for everything before them
        assert.strictEqual(bigChanges.length, 18)
        assert.strictEqual(bigChanges[bigChanges.length - 1].cursor, 50)
      }))
  })
}

describe("log compaction", () => {
  suite("memory", SyncStorage.layerMemory, 60)
  suite("sqlite", SqlStorage.layerSqlite({ filename: NodePath.join(NodeOs.tmpdir(), `mizu-compaction-${process.pid}-${Date.now()}.db`) }), 40)
})

describePostgres("log compaction (postgres)", ({ storage }) => {
  suite("postgres", storage(), 20)
})

describe("LogCompaction.layerConfig", () => {
  const build = (env: Record<string, string>) =>
    Layer.build(LogCompaction.layerConfig()).pipe(
      Effect.scoped,
      Effect.provide(Layer.mergeAll(SyncStorage.layerMemory, Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env)))))),
      Effect.exit
    )
  it.effect("RETENTION_MODE=compact without RETENTION_CHANGES fails naming it; a bad mode fails naming RETENTION_MODE; trim starts nothing", () =>
    Effect.gen(function*() {
      const missing = yield* build({ RETENTION_MODE: "compact" })
      assert.isTrue(Exit.isFailure(missing))
      assert.include(String(Exit.isFailure(missing) ? missing.cause : ""), "RETENTION_CHANGES")
      const bad = yield* build({ RETENTION_MODE: "fold" })
      assert.include(String(Exit.isFailure(bad) ? bad.cause : ""), "RETENTION_MODE")
      assert.isTrue(Exit.isSuccess(yield* build({ RETENTION_MODE: "trim" })))
      assert.isTrue(Exit.isSuccess(yield* build({ RETENTION_MODE: "compact", RETENTION_CHANGES: "100" })))
    }))
})
