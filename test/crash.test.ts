/**
 * Crash safety on SQLite: a server process under push load is killed with
 * SIGKILL and restarted on the same file. Every mutation that got an `ok`
 * result is present exactly once, cursors are gap-free, and the clients'
 * dedupe state survived (a retry of an acknowledged mutation is a duplicate).
 * Also under group commit: 32 clients in flight, pushes of several mutations
 * over two or three scopes, SIGKILL after a few hundred acknowledgements
 * with pushes in flight: nothing acknowledged is lost (at its acknowledged
 * cursor, once), every push that was in flight is there whole or not at all,
 * and the ledger agrees with the log on retry.
 * Also what a new user does: a todo survives a plain restart.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { Protocol } from "mizu-sync-live"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import * as PushGroups from "./fixtures/pushGroups.js"
import { range } from "./suites/util.js"
import * as ServerProcess from "./support/ServerProcess.js"
import { decodeAs, post } from "./support/TestServer.js"

const pullAll = (url: string, scope: string) =>
  Effect.gen(function*() {
    const changes: Array<Protocol.Change> = []
    let cursor = 0
    for (;;) {
      const page = decodeAs(Protocol.PullResponse, (yield* post(`${url}/_sync/pull`, JSON.stringify({ scope, cursor, limit: 1000 }))).json)
      changes.push(...page.changes)
      cursor = page.cursor
      if (!page.has_more) return changes
    }
  })

describe("crash safety on SQLite", () => {
  it.live("SIGKILL under push load: every acknowledged mutation is there exactly once, cursors gap-free", () =>
    Effect.gen(function*() {
      const dir = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "mizu-crash-"))
      const env = { DATABASE_URL: NodePath.join(dir, "crash.db") }
      const scope = "crash:scope"
      const first = yield* ServerProcess.start(env)
      // 8 clients, each pushing its own numbered mutations as fast as it can, until the server dies
      const acked = new Map<string, Set<number>>()
      let killed = false
      const client = (c: number) =>
        Effect.gen(function*() {
          const clientId = `crash-client-${c}`
          const mine = new Set<number>()
          acked.set(clientId, mine)
          for (let id = 1; !killed; id++) {
            const body = JSON.stringify({
              client_id: clientId,
              mutations: [{ id, name: "todo/create", scope, args: { id: `${clientId}-${id}`, title: `t${id}` } }]
            })
            const res = yield* Effect.either(Effect.tryPromise(() =>
              fetch(`${first.url}/_sync/push`, { method: "POST", headers: { "content-type": "application/json" }, body })
                .then(async (r) => ({ status: r.status, json: await r.json() as unknown }))
            ))
            if (res._tag === "Left" || res.right.status !== 200) return
            const result = decodeAs(Protocol.PushResponse, res.right.json).results[0]
            if (result.ok) mine.add(id)
          }
        })
      const load = yield* Effect.forEach(range(8), client, { concurrency: "unbounded", discard: true }).pipe(Effect.fork)
      // kill it mid-load: once a good number of pushes were acknowledged (bounded in time)
      const ackedSoFar = () => [...acked.values()].reduce((n, s) => n + s.size, 0)
      for (let waited = 0; ackedSoFar() < 100 && waited < 20_000; waited += 100) yield* Effect.sleep("100 millis")
      killed = true
      yield* first.kill("SIGKILL")
      yield* load.await

      const second = yield* ServerProcess.start(env)
      const changes = yield* pullAll(second.url, scope)
      const ackedCount = [...acked.values()].reduce((n, s) => n + s.size, 0)
      assert.isAtLeast(ackedCount, 20, "the load produced acknowledged mutations")
      // gap-free, starting at 1
      assert.deepStrictEqual(changes.map((c) => c.cursor), range(changes.length))
      // every acknowledged mutation exactly once
      const seen = new Map<string, number>()
      for (const c of changes) seen.set(c.id, (seen.get(c.id) ?? 0) + 1)
      for (const [clientId, ids] of acked) {
        for (const id of ids) assert.strictEqual(seen.get(`${clientId}-${id}`), 1, `${clientId} #${id}`)
      }
      for (const count of seen.values()) assert.strictEqual(count, 1)
      // the dedupe ledger survived: retrying an acknowledged mutation is a duplicate
      const [someClient, someIds] = [...acked].find(([, ids]) => ids.size > 0) ?? ["", new Set<number>()]
      const retryId = Math.max(...someIds)
      const retry = yield* post(`${second.url}/_sync/push`, JSON.stringify({
        client_id: someClient,
        mutations: [{ id: retryId, name: "todo/create", scope, args: { id: `${someClient}-${retryId}`, title: "again" } }]
      }))
      assert.strictEqual(decodeAs(Protocol.PushResponse, retry.json).results[0].duplicate, true)
      yield* second.kill("SIGTERM")
      NodeFs.rmSync(dir, { recursive: true, force: true })
    }).pipe(Effect.scoped), 120_000)

  it.live("SIGKILL in the middle of groups: acknowledged pushes survive whole at their cursors, in-flight ones all or nothing", () =>
    Effect.gen(function*() {
      const dir = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "mizu-crash-groups-"))
      const env = { DATABASE_URL: NodePath.join(dir, "crash.db") }
      const scopes = ["crash:g:a", "crash:g:b", "crash:g:c"] as const
      const first = yield* ServerProcess.start(env)
      // 32 clients, each sending its pushes one after the other as fast as it can, until the server dies. Push k of
      // client c has 1 to 4 todo/create mutations spread over 1 to 3 scopes (a fixed pattern, no randomness needed).
      interface Sent {
        readonly clientId: string
        readonly mutations: ReadonlyArray<Protocol.Mutation>
      }
      const acked: Array<{ readonly push: Sent; readonly results: ReadonlyArray<Protocol.MutationResult> }> = []
      const unanswered: Array<Sent> = []
      let killed = false
      const pushOf = (c: number, k: number, firstId: number): Sent => {
        const clientId = `groups-client-${c}`
        const spread = 1 + ((c * 3 + k) % 3)
        // every sixth push is a big one (30 mutations): while the writer works on it, other pushes queue up for it
        const n = (c + k) % 6 === 5 ? 30 : Math.max(spread, 1 + ((c + 2 * k) % 4))
        const mutations = range(n).map((i): Protocol.Mutation => {
          const id = firstId + i - 1
          return { id, name: "todo/create", scope: scopes[(c + k + (i % spread)) % scopes.length], args: { id: `${clientId}-${id}`, title: `t${id}` } }
        })
        return { clientId, mutations }
      }
      const client = (c: number) =>
        Effect.gen(function*() {
          let next = 1
          for (let k = 0; !killed; k++) {
            const push = pushOf(c, k, next)
            next += push.mutations.length
            const body = JSON.stringify({ client_id: push.clientId, mutations: push.mutations })
            const res = yield* Effect.either(Effect.tryPromise(() =>
              fetch(`${first.url}/_sync/push`, { method: "POST", headers: { "content-type": "application/json" }, body })
                .then(async (r) => ({ status: r.status, json: await r.json() as unknown }))
            ))
            if (res._tag === "Left" || res.right.status !== 200) {
              unanswered.push(push)
              return
            }
            acked.push({ push, results: decodeAs(Protocol.PushResponse, res.right.json).results })
          }
        })
      const load = yield* Effect.forEach(range(32), client, { concurrency: "unbounded", discard: true }).pipe(Effect.fork)
      // kill it mid-load, once a few hundred pushes were acknowledged (bounded in time); every client has one in flight
      for (let waited = 0; acked.length < 300 && waited < 30_000; waited += 50) yield* Effect.sleep("50 millis")
      const metrics = yield* Effect.promise(() => fetch(`${first.url}/_sync/metrics`).then((r) => r.text()))
      killed = true
      yield* first.kill("SIGKILL")
      yield* load.await
      assert.isAtLeast(acked.length, 100, "the load produced acknowledged pushes")
      assert.isAtLeast(unanswered.length, 1, "pushes were in flight when the server died")
      assert.isAtLeast(acked.filter((a) => new Set(a.push.mutations.map((m) => m.scope)).size > 1).length, 20, "acknowledged pushes over several scopes")

      const second = yield* ServerProcess.start(env)
      const logs = yield* Effect.forEach(scopes, (scope) => pullAll(second.url, scope))
      const where = new Map<string, Array<{ scope: string; cursor: number }>>()
      logs.forEach((changes, i) => {
        // gap-free, starting at 1, in each scope
        assert.deepStrictEqual(changes.map((c) => c.cursor), range(changes.length), scopes[i])
        for (const c of changes) where.set(c.id, [...(where.get(c.id) ?? []), { scope: scopes[i], cursor: c.cursor }])
      })
      // every acknowledged mutation once, in its scope, at the cursor its result gave
      for (const { push, results } of acked) {
        push.mutations.forEach((m, i) => {
          const todo = `${push.clientId}-${m.id}`
          assert.isTrue(results[i].ok && results[i].duplicate === undefined, `${todo} was applied when acknowledged`)
          assert.deepStrictEqual(where.get(todo), [{ scope: m.scope, cursor: results[i].cursor }], todo)
        })
      }
      // a push that was in flight is there whole or not at all (its mutations committed together)
      const present = unanswered.map((push) => push.mutations.filter((m) => where.has(`${push.clientId}-${m.id}`)).length)
      unanswered.forEach((push, i) => {
        assert.include([0, push.mutations.length], present[i], `${push.clientId} #${push.mutations[0].id}..: ${present[i]} of ${push.mutations.length}`)
        for (const m of push.mutations) assert.isAtMost(where.get(`${push.clientId}-${m.id}`)?.length ?? 0, 1)
      })
      // nothing else is in the logs
      const sent = new Set([...acked.map((a) => a.push), ...unanswered].flatMap((p) => p.mutations.map((m) => `${p.clientId}-${m.id}`)))
      for (const id of where.keys()) assert.isTrue(sent.has(id), `${id} was sent`)

      // the ledger agrees: a retry of every acknowledged push is all duplicate; of an in-flight one, all duplicate
      // when its changes are there, else it applies now, whole
      const retry = (push: Sent) =>
        Effect.map(
          post(`${second.url}/_sync/push`, JSON.stringify({ client_id: push.clientId, mutations: push.mutations })),
          (res) => decodeAs(Protocol.PushResponse, res.json).results
        )
      const ackedRetries = yield* Effect.forEach(acked, ({ push }) => retry(push), { concurrency: 8 })
      ackedRetries.forEach((results, i) => {
        for (const r of results) assert.isTrue(r.ok && r.duplicate === true, `retry of ${acked[i].push.clientId} #${r.id}: ${JSON.stringify(r)}`)
      })
      const flightRetries = yield* Effect.forEach(unanswered, retry, { concurrency: 8 })
      flightRetries.forEach((results, i) => {
        const wasThere = present[i] > 0
        for (const r of results) {
          assert.isTrue(r.ok, JSON.stringify(r))
          assert.strictEqual(r.duplicate === true, wasThere, `retry of in-flight ${unanswered[i].clientId} #${r.id}: ${JSON.stringify(r)}`)
        }
      })
      yield* second.kill("SIGTERM")
      NodeFs.rmSync(dir, { recursive: true, force: true })
      // Last, so that the checks above run first: under this load, read just before the kill, some committed group
      // held more than one push, so the kill came in the middle of real groups.
      const groups = PushGroups.parse(metrics)
      assert.isDefined(groups, "mizu_push_group_size is on /metrics")
      if (groups !== undefined) {
        assert.isAbove(groups.sum, groups.count, `some group held more than one push (${groups.sum} pushes in ${groups.count} groups)`)
      }
    }).pipe(Effect.scoped), 120_000)

  it.live("npm start's server on SQLite: a todo survives a restart", () =>
    Effect.gen(function*() {
      const dir = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "mizu-restart-"))
      const env = { DATABASE_URL: `sqlite:${NodePath.join(dir, "todos.db")}` }
      const scope = "user:demo:todos"
      const first = yield* ServerProcess.start(env)
      yield* post(`${first.url}/_sync/push`, JSON.stringify({ mutations: [{ name: "todo/create", scope, args: { id: "milk", title: "Buy milk" } }] }))
      yield* first.kill("SIGTERM")
      const second = yield* ServerProcess.start(env)
      const snap = decodeAs(Protocol.SnapshotResponse, (yield* post(`${second.url}/_sync/snapshot`, JSON.stringify({ scope }))).json)
      assert.deepStrictEqual(snap.data, { todo: { milk: { id: "milk", title: "Buy milk", completed: false } } })
      const page = yield* Effect.promise(() => fetch(`${second.url}/`).then((r) => r.text()))
      assert.include(page, "<title>Mizu todos</title>")
      yield* second.kill("SIGTERM")
      NodeFs.rmSync(dir, { recursive: true, force: true })
    }).pipe(Effect.scoped), 120_000)
})
