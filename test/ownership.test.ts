/**
 * A `client_id` belongs to the principal that first used it, end to end:
 * HTTP requests with `TokenAuthorizer` tokens against a server on a free
 * port. The attack of issue #14 (another token advancing a victim's last id,
 * probing `duplicate` / `out_of_order` / `last_mutation_id`) gets 403 and
 * changes nothing; the victim's next mutation still applies; two tokens of
 * one subject share ids; principals racing for a fresh id: one wins; an open
 * (allow-all) server behaves as before; rows written before owners were
 * recorded (SQLite and Postgres, migrated from `0001_init`) are claimed by
 * the next principal that pushes with them.
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as Migrator from "@effect/sql/Migrator"
import * as SqlClient from "@effect/sql/SqlClient"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as PgMigrator from "@effect/sql-pg/PgMigrator"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as SqliteMigrator from "@effect/sql-sqlite-node/SqliteMigrator"
import { afterAll, assert, describe, it, layer } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { Authorizer, LivePubSub, Protocol, SqlStorage, SyncStorage, TokenAuthorizer } from "mizu-sync-live"
import * as SqlMigrations from "../src/sync/sql/Migrations.js"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { registry } from "../examples/todo/mutations.js"
import { freshClient, freshScope, range } from "./suites/util.js"
import { describePostgres, PgDatabase } from "./support/Postgres.js"
import { BaseUrl, decodeAs, layerServer, post } from "./support/TestServer.js"

const racers = range(8).map((i) => `token-racer-${i}`)

const tokens: Record<string, TokenAuthorizer.TokenEntry> = {
  "token-victim": ["shared:*", "user:victim:*"],
  "token-attacker": ["shared:*", "user:attacker:*"],
  "token-ann-laptop": { scopes: ["user:ann:*"], subject: "ann" },
  "token-ann-phone": { scopes: ["user:ann:*"], subject: "ann" },
  ...Object.fromEntries(racers.map((token) => [token, ["shared:*"]]))
}

const bearer = (token: string | undefined): Record<string, string> => (token === undefined ? {} : { authorization: `Bearer ${token}` })

const send = (path: "push" | "pull" | "snapshot", body: unknown, token: string | undefined) =>
  Effect.flatMap(BaseUrl, (base) =>
    post(`${base}/_sync/${path}`, JSON.stringify(body), { "content-type": "application/json", ...bearer(token) }))

const create = (id: number, todo: string, scope: string) => ({ id, name: "todo/create", scope, args: { id: todo, title: todo } })

/** Assert a 403 `forbidden` whose body mentions none of the victim's ids or answers. */
const assertForbidden = (r: { readonly status: number; readonly json: unknown; readonly text: string }, what: string) => {
  assert.strictEqual(r.status, 403, what)
  assert.strictEqual(decodeAs(Protocol.ErrorBody, r.json).error.code, "forbidden", what)
  assert.notMatch(r.text, /expected|duplicate|last_mutation_id|results|cursor/, what)
}

const real = { excludeTestServices: true } as const

const deps = (storage: Layer.Layer<SyncStorage.Services, unknown>) =>
  Layer.mergeAll(storage, LivePubSub.layerMemory, TokenAuthorizer.layer({ tokens }))

describe("client id ownership over HTTP (TokenAuthorizer)", () => {
  layer(layerServer({ registry }, deps(SyncStorage.layerMemory)), real)("memory", (it) => {
    it.effect("another token cannot advance, probe or read a victim's client id; the victim's next mutation still applies", () =>
      Effect.gen(function*() {
        const victim = freshClient()
        const scope = freshScope("shared")
        const mine = freshScope("user:attacker")
        const first = yield* send("push", { client_id: victim, mutations: [create(1, "v1", scope), create(2, "v2", scope)] }, "token-victim")
        assert.strictEqual(first.status, 200)

        // the attack of issue #14: push ids k … k+99 under the victim's client id (in a scope the attacker may push)
        const advance = yield* send("push", { client_id: victim, mutations: range(100).map((i) => create(i + 2, `x${i}`, mine)) }, "token-attacker")
        assertForbidden(advance, "advance")
        // probes that would answer duplicate / out_of_order (with expected) — in either scope
        for (const [ids, where] of [[[1], mine], [[2], scope], [[50], mine], [[3], scope]] as const) {
          assertForbidden(yield* send("push", { client_id: victim, mutations: ids.map((id) => create(id, `p${id}`, where)) }, "token-attacker"), `probe ${ids}`)
        }
        // reads naming the victim's id: 403, no last_mutation_id
        assertForbidden(yield* send("pull", { scope, cursor: 0, client_id: victim }, "token-attacker"), "pull")
        assertForbidden(yield* send("pull", { scope: mine, cursor: 0, client_id: victim }, "token-attacker"), "pull, own scope")
        assertForbidden(yield* send("snapshot", { scope, client_id: victim }, "token-attacker"), "snapshot")

        // nothing of the attacker's was applied
        const attackerView = decodeAs(Protocol.PullResponse, (yield* send("pull", { scope: mine, cursor: 0 }, "token-attacker")).json)
        assert.deepStrictEqual(attackerView.changes, [])

        // the victim's next mutation is fresh (not a silent duplicate) and applies
        const next = yield* send("push", { client_id: victim, mutations: [create(3, "v3", scope)] }, "token-victim")
        assert.strictEqual(next.status, 200)
        assert.deepStrictEqual(decodeAs(Protocol.PushResponse, next.json).results, [{ id: 3, ok: true, cursor: 3 }])
        const pulled = decodeAs(Protocol.PullResponse, (yield* send("pull", { scope, cursor: 0, client_id: victim }, "token-victim")).json)
        assert.strictEqual(pulled.last_mutation_id, 3)
        assert.deepStrictEqual(pulled.changes.map((c) => c.id), ["v1", "v2", "v3"])
      }))

    it.effect("two tokens of one subject share client ids; another subject's token does not", () =>
      Effect.gen(function*() {
        const c = freshClient()
        const scope = freshScope("user:ann")
        assert.strictEqual((yield* send("push", { client_id: c, mutations: [create(1, "a", scope)] }, "token-ann-laptop")).status, 200)
        const phone = yield* send("push", { client_id: c, mutations: [create(1, "a", scope), create(2, "b", scope)] }, "token-ann-phone")
        assert.strictEqual(phone.status, 200)
        assert.deepStrictEqual(
          decodeAs(Protocol.PushResponse, phone.json).results.map((r) => [r.id, r.ok, r.duplicate]),
          [[1, true, true], [2, true, undefined]]
        )
        const pulled = decodeAs(Protocol.PullResponse, (yield* send("pull", { scope, cursor: 0, client_id: c }, "token-ann-laptop")).json)
        assert.strictEqual(pulled.last_mutation_id, 2)
        const other = freshScope("shared")
        assertForbidden(yield* send("push", { client_id: c, mutations: [create(3, "c", other)] }, "token-victim"), "another subject")
      }))

    it.effect("eight tokens racing to push with one fresh client id (concurrent requests): exactly one wins", () =>
      Effect.gen(function*() {
        for (let round = 0; round < 3; round++) {
          const c = freshClient()
          const scope = freshScope("shared")
          const responses = yield* Effect.forEach(
            racers,
            (token) => send("push", { client_id: c, mutations: [create(1, token, scope)] }, token),
            { concurrency: "unbounded" }
          )
          const winners = racers.filter((_, i) => responses[i].status === 200)
          assert.strictEqual(winners.length, 1, `round ${round}: ${responses.map((r) => r.status)}`)
          for (const r of responses) if (r.status !== 200) assertForbidden(r, `round ${round}`)
          const snap = decodeAs(Protocol.SnapshotResponse, (yield* send("snapshot", { scope, client_id: c }, winners[0])).json)
          assert.deepStrictEqual(Object.keys(snap.data["todo"] ?? {}), [winners[0]])
          assert.strictEqual(snap.last_mutation_id, 1)
        }
      }))
  })

  layer(layerServer({ registry }, Layer.mergeAll(SyncStorage.layerMemory, LivePubSub.layerMemory, Authorizer.layerAllowAll)), real)(
    "allow-all",
    (it) => {
      it.effect("an open server is unchanged: every caller is anonymous and may use any client id", () =>
        Effect.gen(function*() {
          const c = freshClient()
          const scope = freshScope("open")
          assert.strictEqual((yield* send("push", { client_id: c, mutations: [create(1, "a", scope)] }, undefined)).status, 200)
          // another caller (another token, which allow-all ignores) continues the same client's ids
          const other = yield* send("push", { client_id: c, mutations: [create(2, "b", scope)] }, "someone-else")
          assert.deepStrictEqual(decodeAs(Protocol.PushResponse, other.json).results, [{ id: 2, ok: true, cursor: 2 }])
          const pulled = decodeAs(Protocol.PullResponse, (yield* send("pull", { scope, cursor: 0, client_id: c }, "a-third")).json)
          assert.strictEqual(pulled.last_mutation_id, 2)
        }))
    }
  )
})

/**
 * Rows of a database migrated before owners were recorded: the migrator runs
 * `0001_init` only, a client's row is written as the old code wrote it, then
 * a server starts on it (migrating to the latest) and the client's principal
 * and an attacker come.
 */
const legacyScenario = Effect.gen(function*() {
  const c = "c-legacy-client"
  const scope = "shared:legacy"
  // before anyone claims it, a pull naming it is answered as before the migration
  const before = yield* send("pull", { scope, cursor: 0, client_id: c }, "token-victim")
  assert.strictEqual(decodeAs(Protocol.PullResponse, before.json).last_mutation_id, 4)
  // the next principal to push with it claims it, and its ids carry on
  const next = yield* send("push", { client_id: c, mutations: [create(4, "dup", scope), create(5, "v5", scope)] }, "token-victim")
  assert.strictEqual(next.status, 200)
  assert.deepStrictEqual(decodeAs(Protocol.PushResponse, next.json).results.map((r) => [r.id, r.ok, r.duplicate]), [[4, true, true], [5, true, undefined]])
  assertForbidden(yield* send("push", { client_id: c, mutations: [create(6, "x", scope)] }, "token-attacker"), "push after the claim")
  assertForbidden(yield* send("pull", { scope, cursor: 0, client_id: c }, "token-attacker"), "pull after the claim")
})

/** The statements the pre-ownership code ran for a client that processed mutations 1 … 4 in `shared:legacy`. */
const writeLegacyRows = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`INSERT INTO mizu_clients (client_id, last) VALUES ('c-legacy-client', 4)`
  yield* sql`INSERT INTO mizu_client_scopes (client_id, scope, last) VALUES ('c-legacy-client', 'shared:legacy', 4)`
})

const onlyInit = Migrator.fromRecord({ "0001_init": SqlMigrations.migrations["0001_init"] })

/** Run `scenario` against a server over `storage`, built (and so migrated) now. */
const withServer = <E>(storage: Layer.Layer<SyncStorage.Services, E>, scenario: Effect.Effect<void, never, BaseUrl>) =>
  Effect.scoped(Effect.flatMap(Layer.build(layerServer({ registry }, deps(storage))), (context) =>
    Effect.provide(scenario, Context.pick(BaseUrl)(context))))

describe("client id ownership: rows from before the owner column (migration 0002_client_owner)", () => {
  const directory = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "mizu-ownership-"))
  afterAll(() => NodeFs.rmSync(directory, { recursive: true, force: true }))

  it.live("SQLite: an old row is claimed by the next principal that pushes with it", () =>
    Effect.gen(function*() {
      const filename = NodePath.join(directory, "legacy.db")
      yield* Effect.zipRight(
        SqliteMigrator.run({ loader: onlyInit, table: SqlMigrations.table }).pipe(Effect.provide(NodeContext.layer)),
        writeLegacyRows
      ).pipe(Effect.provide(SqliteClient.layer({ filename })))
      yield* withServer(SqlStorage.layerSqlite({ filename }), legacyScenario)
    }))
})

describePostgres("client id ownership: rows from before the owner column (Postgres)", ({ database }) => {
  layer(database, real)("migration", (it) => {
    it.effect("Postgres: an old row is claimed by the next principal that pushes with it", () =>
      Effect.gen(function*() {
        const db = yield* PgDatabase
        yield* Effect.zipRight(
          PgMigrator.run({ loader: onlyInit, table: SqlMigrations.table }).pipe(Effect.provide(NodeContext.layer)),
          writeLegacyRows
        ).pipe(Effect.provide(PgClient.layer(db.config)))
        yield* withServer(SqlStorage.layerPg(db.config), legacyScenario)
      }))
  })
})
