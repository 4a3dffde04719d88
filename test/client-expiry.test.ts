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
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import { Authorizer, ClientExpiry, Clients, LivePubSub, SyncStorage } from "mizu-sync-live"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { SqlStorage } from "mizu-sync-live"
import { registry, waitUntil } from "./fixtures/outage.js"
import { freshScope } from "./suites/util.js"
import { describePostgres, PgDatabase } from "./support/Postgres.js"
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
        // memory composes the pull from `Clients.lastIdForScope`; the SQL pull's one statement reads the tombstone itself
        assert.strictEqual(pulledA.last_mutation_id, 2)
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

describePostgres("client expiry racing a push (postgres)", ({ database, storage }) => {
  const deps = Layer.mergeAll(storage(), LivePubSub.layerMemory, Authorizer.layerAllowAll)
  layer(Layer.merge(layerServer({ registry, clientExpiry: false }, deps), database), { timeout: 60_000, excludeTestServices: true })(
    "an expiry in flight while the client pushes again (postgres)",
    (it) => {
      it.scoped("the push waits for it and still finds ids 1-2 processed: duplicates, not applied twice; id 3 applies once", () =>
        Effect.gen(function*() {
          const db = yield* PgDatabase
          const sql = yield* Effect.provide(SqlClient.SqlClient, yield* Layer.build(PgClient.layer(db.config)))
          const scope = freshScope()
          const client = `race-${scope}`
          const first = yield* push(client, [{ id: 1, scope, note: "a" }, { id: 2, scope, note: "b" }])
          assert.deepStrictEqual(first.map((r) => r.ok), [true, true])
          // an expiry job's transaction, held open after it removed the record and wrote the tombstone
          const removed = yield* Deferred.make<void>()
          const commit = yield* Deferred.make<void>()
          const expiry = yield* Effect.fork(sql.withTransaction(Effect.gen(function*() {
            yield* sql`DELETE FROM mizu_client_scopes WHERE client_id = ${client}`
            yield* sql`DELETE FROM mizu_client_failures WHERE client_id = ${client}`
            yield* sql`INSERT INTO mizu_expired_clients (client_id, last, owner, expired)
              SELECT client_id, last, owner, ${Date.now()} FROM mizu_clients WHERE client_id = ${client}`
            yield* sql`DELETE FROM mizu_clients WHERE client_id = ${client}`
            yield* Deferred.succeed(removed, undefined)
            yield* Deferred.await(commit)
          })))
          yield* Deferred.await(removed)
          // the client never heard back about 1-2 and sends its whole queue again, with a new id 3
          const again = yield* Effect.fork(push(client, [{ id: 1, scope, note: "a" }, { id: 2, scope, note: "b" }, { id: 3, scope, note: "c" }]))
          // wait until the push's claim is blocked on the removed record's lock
          yield* waitUntil(
            "the push to wait on the expiry's row lock",
            Effect.map(
              sql<{ readonly n: number | string }>`SELECT count(*) AS n FROM pg_stat_activity
                WHERE datname = current_database() AND wait_event_type = 'Lock'`,
              (rows) => Number(rows[0]?.n ?? 0) > 0
            )
          )
          yield* Deferred.succeed(commit, undefined)
          yield* Fiber.join(expiry)
          const results = yield* Fiber.join(again)
          assert.deepStrictEqual(results.map((r) => [r.id, r.ok, r.duplicate === true]), [[1, true, true], [2, true, true], [3, true, false]])
          const changes = (yield* read("pull", { scope, cursor: 0 })).changes ?? []
          assert.strictEqual(changes.length, 3, "notes a, b and c, each written once")
        }))
    }
  )
})
