/**
 * The operator view over HTTP (issue #20 item 5), on real servers on free
 * ports: `GET /_sync/admin/scopes | clients`.
 *
 * - No operator token configured: both routes answer exactly as an unknown
 *   route does (status, body, content type), whatever the method or header.
 * - Token configured: missing, wrong, wrong-length, `Basic` and empty
 *   bearer tokens get one `401 unauthorized` body that reveals nothing; the
 *   right token lists the scopes pushed to (head, floor, rows and a checksum
 *   equal to `Checksum.ofRows` of the snapshot) and the clients (last id,
 *   scope count, seen), on memory and SQLite; a limit-2 walk via `next`
 *   visits every scope once; bad params (`limit=0`, `abc`, `5000`, `1.5`,
 *   repeated, `after` too long) get `400 invalid_request` naming the param;
 *   a method other than GET `405`; the admin token used as a sync bearer
 *   gets `401` and changes nothing; a storage without an `Operator` `404`.
 * - The storage gauges (`mizu_scopes`, `mizu_rows`, `mizu_log_changes`)
 *   show on `/_sync/metrics` after the job ran (waited for, not slept).
 * - `ADMIN_TOKEN` is read redacted; a blank value fails naming it.
 */
import * as HttpServer from "@effect/platform/HttpServer"
import { assert, describe, it, layer } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import {
  AdminHttp,
  AdminProtocol,
  Authorizer,
  Checksum,
  LivePubSub,
  Operator,
  Protocol,
  Server,
  SqlStorage,
  SyncStorage,
  TokenAuthorizer
} from "mizu-sync-live"
import { registry } from "../examples/todo/mutations.js"
import { waitUntil } from "./fixtures/outage.js"
import { freshScope } from "./suites/util.js"
import { BaseUrl, decodeAs, layerServer, post, request } from "./support/TestServer.js"

const ADMIN = "op-token-0123456789abcdef"
const USER = "user-token"
const tokens = { [USER]: ["*"] }

interface Reply {
  readonly status: number
  readonly json: unknown
  readonly text: string
  readonly headers: Headers
}

/** A request to the server under test (GET unless said otherwise). */
const call = (path: string, init: RequestInit = {}): Effect.Effect<Reply, never, BaseUrl> =>
  Effect.flatMap(BaseUrl, (base) => request(`${base}${path}`, init))

const bearer = (token: string) => ({ authorization: `Bearer ${token}` })
const asAdmin = { headers: bearer(ADMIN) }

const sync = (path: "push" | "pull" | "snapshot", body: unknown, token: string = USER) =>
  Effect.flatMap(BaseUrl, (base) =>
    post(`${base}/_sync/${path}`, JSON.stringify(body), { "content-type": "application/json", ...bearer(token) }))

const create = (id: number, scope: string, todo: string) => ({ id, name: "todo/create", scope, args: { id: todo, title: `title ${todo}` } })

const errorOf = (r: Reply) => decodeAs(Protocol.ErrorBody, r.json).error

/** The scopes under `prefix`, walked from `after: prefix` with pages of `limit`, following `next`; and how many pages it took. */
const walkScopes = (prefix: string, limit: number) =>
  Effect.gen(function*() {
    const seen: Array<AdminProtocol.ScopeInfo> = []
    let after: string | undefined = prefix
    let pages = 0
    while (after !== undefined && pages < 100) {
      const r: Reply = yield* call(`/_sync/admin/scopes?limit=${limit}&after=${encodeURIComponent(after)}`, asAdmin)
      assert.strictEqual(r.status, 200, r.text)
      const page = decodeAs(AdminProtocol.ScopesResponse, r.json)
      pages++
      assert.isAtMost(page.scopes.length, limit)
      const inside = page.scopes.filter((s) => s.scope.startsWith(prefix))
      seen.push(...inside)
      after = inside.length < page.scopes.length ? undefined : page.next
    }
    return { seen, pages }
  })

const memoryDeps = Layer.mergeAll(SyncStorage.layerMemory, LivePubSub.layerMemory, TokenAuthorizer.layer({ tokens }))
const quiet = { registry, clientExpiry: false, operatorMetrics: false } as const

describe("operator view: no token configured", () => {
  layer(layerServer(quiet, memoryDeps), { timeout: 60_000 })("hidden", (it) => {
    it.effect("both routes answer exactly as an unknown route does, whatever the method and headers", () =>
      Effect.gen(function*() {
        const unknown = yield* call("/_sync/no-such-route")
        assert.strictEqual(unknown.status, 404)
        for (const path of ["/_sync/admin/scopes", "/_sync/admin/clients", "/_sync/admin/scopes?limit=abc"]) {
          for (const init of [{}, asAdmin, { headers: bearer("") }, { method: "POST", body: "{}" }]) {
            const r = yield* call(path, init)
            assert.strictEqual(r.status, 404, `${path} ${JSON.stringify(init)}`)
            assert.strictEqual(r.text, unknown.text)
            assert.strictEqual(r.headers.get("content-type"), unknown.headers.get("content-type"))
            assert.isNull(r.headers.get("www-authenticate"))
          }
        }
        assert.deepStrictEqual(errorOf(unknown), { code: "not_found", message: "no such route" })
      }))
  })
})

const listingSuite = (name: string, storage: Layer.Layer<SyncStorage.Services | Operator.Operator, unknown>) => {
  const deps = Layer.mergeAll(storage, LivePubSub.layerMemory, TokenAuthorizer.layer({ tokens }))
  // the real clock: the server stamps `seen` with it
  layer(layerServer({ ...quiet, adminToken: ADMIN }, deps), { timeout: 60_000, excludeTestServices: true })(`operator view (${name})`, (it) => {
    it.effect("missing, wrong, wrong-length, Basic and empty tokens: 401 unauthorized, one body for all, nothing revealed", () =>
      Effect.gen(function*() {
        const scope = freshScope("adm")
        const pushed = yield* sync("push", { client_id: "c-secret-client", mutations: [create(1, scope, "t1")] })
        assert.strictEqual(pushed.status, 200, pushed.text)
        const wrongSameLength = ADMIN.slice(0, -1) + (ADMIN.endsWith("x") ? "y" : "x")
        const bad: ReadonlyArray<Record<string, string>> = [
          {},
          bearer(wrongSameLength),
          bearer(ADMIN.slice(0, 5)),
          bearer(`${ADMIN}${ADMIN}`),
          bearer(USER),
          { authorization: `Basic ${Buffer.from(`admin:${ADMIN}`).toString("base64")}` },
          { authorization: `Basic ${ADMIN}` },
          { authorization: ADMIN },
          { authorization: "Bearer" },
          { authorization: "Bearer    " }
        ]
        const bodies = new Set<string>()
        for (const path of ["/_sync/admin/scopes", "/_sync/admin/clients"]) {
          for (const headers of bad) {
            const r = yield* call(path, { headers })
            assert.strictEqual(r.status, 401, `${path} ${JSON.stringify(headers)}: ${r.text}`)
            assert.strictEqual(errorOf(r).code, "unauthorized")
            assert.strictEqual(r.headers.get("www-authenticate"), `Bearer realm="mizu-admin"`)
            for (const secret of [scope, "c-secret-client", ADMIN, USER]) assert.notInclude(r.text, secret)
            bodies.add(r.text)
          }
        }
        assert.strictEqual(bodies.size, 1, [...bodies].join("\n"))
        // the scheme is case-insensitive, surrounding spaces are ignored
        assert.strictEqual((yield* call("/_sync/admin/scopes", { headers: { authorization: `bearer   ${ADMIN}  ` } })).status, 200)
      }))

    it.effect("the right token: scopes with head, floor, rows and the snapshot's checksum; clients with last id, scopes and seen", () =>
      Effect.gen(function*() {
        const prefix = `${freshScope("adm")}/`
        const a = `${prefix}a`
        const b = `${prefix}b`
        const client = `c-${prefix.replace(/[^A-Za-z0-9]/g, "-")}`
        const before = Date.now()
        const pushed = yield* sync("push", {
          client_id: client,
          mutations: [
            create(1, a, "a1"),
            create(2, a, "a2"),
            create(3, b, "b1"),
            { id: 4, name: "todo/delete", scope: a, args: { id: "a2" } },
            create(5, `${prefix}c`, "c1")
          ]
        })
        assert.strictEqual(pushed.status, 200, pushed.text)
        assert.isTrue((pushed.json as { results: ReadonlyArray<{ ok: boolean }> }).results.every((r) => r.ok), pushed.text)

        const r = yield* call(`/_sync/admin/scopes?after=${encodeURIComponent(prefix)}&limit=2`, asAdmin)
        assert.strictEqual(r.status, 200, r.text)
        assert.strictEqual(r.headers.get("cache-control"), "no-store")
        const page = decodeAs(AdminProtocol.ScopesResponse, r.json)
        const snapshotOf = (scope: string) =>
          Effect.map(sync("snapshot", { scope }), (res) => decodeAs(Protocol.SnapshotResponse, res.json))
        const snapA = yield* snapshotOf(a)
        const snapB = yield* snapshotOf(b)
        assert.deepStrictEqual(page.scopes, [
          { scope: a, head: 3, floor: 0, rows: 1, checksum: Checksum.ofRows(snapA.data), compacted: 0, compacted_at: null },
          { scope: b, head: 1, floor: 0, rows: 1, checksum: Checksum.ofRows(snapB.data), compacted: 0, compacted_at: null }
        ])
        assert.strictEqual(page.next, b, "a third scope follows: next is the last one listed")
        assert.strictEqual(page.scopes[0].checksum, snapA.checksum)

        const c = yield* call(`/_sync/admin/clients?after=${encodeURIComponent(client.slice(0, -1))}&limit=1`, asAdmin)
        assert.strictEqual(c.status, 200, c.text)
        const [info] = decodeAs(AdminProtocol.ClientsResponse, c.json).clients
        assert.strictEqual(info.client_id, client)
        assert.strictEqual(info.last_id, 5)
        assert.strictEqual(info.scopes, 3)
        assert.isUndefined(info.expired)
        // owned by the pushing principal, which is not the token itself
        assert.isString(info.owner)
        assert.notStrictEqual(info.owner, USER)
        assert.isString(info.seen)
        const seen = Date.parse(info.seen ?? "")
        assert.isTrue(seen >= before - 1000 && seen <= Date.now() + 1000, info.seen ?? "null")
      }))

    it.effect("paging with limit=2 walks every scope exactly once, in bytewise order, via next", () =>
      Effect.gen(function*() {
        const prefix = `${freshScope("adm")}/`
        const names = ["e", "D", "_", "0", "c.x", "c-x", "c/x"].map((n) => `${prefix}${n}`)
        for (const [i, scope] of names.entries()) {
          const r = yield* sync("push", { mutations: [create(i + 1, scope, `t${i}`)].map(({ id: _, ...m }) => m) })
          assert.strictEqual(r.status, 200, r.text)
        }
        const { pages, seen } = yield* walkScopes(prefix, 2)
        const expected = [...names].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)))
        assert.deepStrictEqual(seen.map((s) => s.scope), expected)
        assert.isAtLeast(pages, 4)
        for (const s of seen) assert.deepStrictEqual([s.head, s.rows], [1, 1])
      }))

    it.effect("bad params: 400 invalid_request naming limit or after, on both routes; unknown params are ignored", () =>
      Effect.gen(function*() {
        const cases: ReadonlyArray<readonly [string, "limit" | "after"]> = [
          ["limit=0", "limit"],
          ["limit=abc", "limit"],
          [`limit=${"9".repeat(400)}x`, "limit"],
          ["limit=5000", "limit"],
          ["limit=1001", "limit"],
          ["limit=1.5", "limit"],
          ["limit=-1", "limit"],
          ["limit=", "limit"],
          ["limit=1&limit=2", "limit"],
          [`after=${"x".repeat(257)}`, "after"],
          ["after=a&after=b", "after"]
        ]
        const zero = errorOf(yield* call("/_sync/admin/scopes?limit=0", asAdmin))
        assert.strictEqual(zero.message, "query parameter limit: must be an integer between 1 and 1000")
        for (const route of ["scopes", "clients"]) {
          for (const [query, param] of cases) {
            const r = yield* call(`/_sync/admin/${route}?${query}`, asAdmin)
            assert.strictEqual(r.status, 400, `${route}?${query}: ${r.text}`)
            const error = errorOf(r)
            assert.strictEqual(error.code, "invalid_request")
            assert.match(error.message, new RegExp(`^query parameter ${param}: `), `${route}?${query}`)
            assert.isAtMost(error.message.length, 120, "the value is not echoed at length")
          }
          const ok = yield* call(`/_sync/admin/${route}?limit=1000&after=${"x".repeat(256)}&other=1`, asAdmin)
          assert.strictEqual(ok.status, 200, ok.text)
        }
      }))

    it.effect("GET only: another method with the right token is 405; without it 401", () =>
      Effect.gen(function*() {
        const r = yield* call("/_sync/admin/scopes", { method: "POST", headers: bearer(ADMIN), body: "{}" })
        assert.strictEqual(r.status, 405, r.text)
        assert.strictEqual(errorOf(r).code, "method_not_allowed")
        assert.strictEqual((yield* call("/_sync/admin/clients", { method: "DELETE" })).status, 401)
      }))

    it.effect("the admin token as a sync bearer gets no access: push, pull and snapshot are 401, nothing is written", () =>
      Effect.gen(function*() {
        const scope = freshScope("adm")
        const pushed = yield* sync("push", { client_id: "c-admin-as-user", mutations: [create(1, scope, "x")] }, ADMIN)
        assert.strictEqual(pushed.status, 401, pushed.text)
        assert.strictEqual((yield* sync("pull", { scope, cursor: 0 }, ADMIN)).status, 401)
        assert.strictEqual((yield* sync("snapshot", { scope }, ADMIN)).status, 401)
        const listed = decodeAs(
          AdminProtocol.ScopesResponse,
          (yield* call(`/_sync/admin/scopes?after=${encodeURIComponent(scope.slice(0, -1))}&limit=1000`, asAdmin)).json
        )
        assert.isFalse(listed.scopes.some((s) => s.scope === scope))
        const clients = decodeAs(AdminProtocol.ClientsResponse, (yield* call(`/_sync/admin/clients?after=c-admin-as&limit=5`, asAdmin)).json)
        assert.isFalse(clients.clients.some((c) => c.client_id === "c-admin-as-user"))
      }))
  })
}

listingSuite("memory", SyncStorage.layerMemory)
listingSuite("sqlite", SqlStorage.layerSqlite({ filename: ":memory:" }))

describe("operator view: a storage family without an Operator", () => {
  const withoutOperator = Layer.map(SyncStorage.layerMemory, (context) => Context.omit(Operator.Operator)(context))
  const deps = Layer.mergeAll(withoutOperator, LivePubSub.layerMemory, Authorizer.layerAllowAll)
  layer(layerServer({ ...quiet, adminToken: Redacted.make(ADMIN) }, deps), { timeout: 60_000 })("no operator", (it) => {
    it.effect("the right token gets 404 saying so; a wrong one still 401", () =>
      Effect.gen(function*() {
        const r = yield* call("/_sync/admin/scopes", asAdmin)
        assert.strictEqual(r.status, 404, r.text)
        assert.deepStrictEqual(errorOf(r), { code: "not_found", message: "this server's storage provides no operator view" })
        assert.strictEqual((yield* call("/_sync/admin/scopes", { headers: bearer("nope") })).status, 401)
      }))
  })
})

/** The value of an unlabelled series on the metrics page, if present. */
const gauge = (text: string, name: string): number | undefined => {
  const line = text.split("\n").find((l) => l.startsWith(`${name} `))
  return line === undefined ? undefined : Number(line.slice(name.length + 1))
}

describe("operator metrics", () => {
  const deps = Layer.mergeAll(SyncStorage.layerMemory, LivePubSub.layerMemory, Authorizer.layerAllowAll)
  const options = { registry, clientExpiry: false, operatorMetrics: { interval: "50 millis" } } as const
  // the job and the waiting run on the real clock
  layer(layerServer(options, deps), { timeout: 60_000, excludeTestServices: true })("gauges", (it) => {
    it.effect("mizu_scopes, mizu_rows and mizu_log_changes show the storage's totals after a run", () =>
      Effect.gen(function*() {
        const a = freshScope("met")
        const b = freshScope("met")
        const r = yield* sync("push", {
          mutations: [
            { name: "todo/create", scope: a, args: { id: "1", title: "one" } },
            { name: "todo/create", scope: a, args: { id: "2", title: "two" } },
            { name: "todo/create", scope: b, args: { id: "3", title: "three" } },
            { name: "todo/delete", scope: a, args: { id: "2" } }
          ]
        })
        assert.strictEqual(r.status, 200, r.text)
        let last = ""
        yield* waitUntil(
          () => `metrics never showed 2 scopes, 2 rows, 4 changes:\n${last}`,
          Effect.map(call("/_sync/metrics"), (m) => {
            last = m.text
            return gauge(m.text, "mizu_scopes") === 2 && gauge(m.text, "mizu_rows") === 2 && gauge(m.text, "mizu_log_changes") === 4
          }),
          20_000
        )
        assert.include(last, "# TYPE mizu_scopes gauge")
        assert.include(last, "# TYPE mizu_rows gauge")
        assert.include(last, "# TYPE mizu_log_changes gauge")
        // aggregates only: no series labelled by scope
        assert.notInclude(last, a)
      }))
  })
})

describe("ADMIN_TOKEN", () => {
  const read = (env: Record<string, string>) =>
    Effect.withConfigProvider(AdminHttp.tokenConfig, ConfigProvider.fromMap(new Map(Object.entries(env))))

  it.effect("is read redacted; unset is None; a blank value fails naming it", () =>
    Effect.gen(function*() {
      const set = yield* read({ ADMIN_TOKEN: ADMIN })
      assert.isTrue(Option.isSome(set))
      if (Option.isSome(set)) {
        assert.strictEqual(Redacted.value(set.value), ADMIN)
        assert.notInclude(String(set.value), ADMIN)
      }
      assert.isTrue(Option.isNone(yield* read({})))
      const blank = yield* Effect.exit(read({ ADMIN_TOKEN: "  " }))
      assert.isTrue(Exit.isFailure(blank))
      assert.include(String(Exit.isFailure(blank) ? blank.cause : ""), "ADMIN_TOKEN")
    }))

  it.live("Server.layerConfig reads it: the routes open with it and stay 401 without it", () =>
    Effect.gen(function*() {
      const context = yield* Layer.build(
        Server.layerConfig({ registry, authorizer: Authorizer.layerAllowAll, clientExpiry: false, operatorMetrics: false })
      )
      const address = Context.get(context, HttpServer.HttpServer).address
      const base = address._tag === "TcpAddress" ? `http://127.0.0.1:${address.port}` : "http://unix"
      const status = (headers: Record<string, string>) =>
        Effect.promise(() => fetch(`${base}/_sync/admin/clients`, { headers }).then((r) => r.status))
      assert.strictEqual(yield* status(bearer(ADMIN)), 200)
      assert.strictEqual(yield* status({}), 401)
    }).pipe(
      Effect.scoped,
      Effect.withConfigProvider(ConfigProvider.fromMap(new Map([
        ["ADMIN_TOKEN", ADMIN],
        ["DATABASE_URL", "memory"],
        ["PORT", "0"],
        ["HOST", "127.0.0.1"]
      ])))
    ))
})
