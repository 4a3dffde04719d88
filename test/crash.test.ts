/**
 * Crash safety on SQLite: a server process under push load is killed with
 * SIGKILL and restarted on the same file. Every mutation that got an `ok`
 * result is present exactly once, cursors are gap-free, and the clients'
 * dedupe state survived (a retry of an acknowledged mutation is a duplicate).
 * Also what a new user does: a todo survives a plain restart.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { Protocol } from "mizu-sync-live"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
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
