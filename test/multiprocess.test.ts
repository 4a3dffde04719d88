/**
 * Several server processes on one PostgreSQL database, pub/sub through Redis
 * and then through Postgres LISTEN/NOTIFY: a push on process A pokes a
 * subscriber on process B; broadcasts and presence cross processes; a client
 * that goes away leaves the presence of the other process; a process killed
 * with SIGKILL has its presence expire on the others.
 */
import { assert, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { Protocol } from "mizu-sync-live"
import { freshScope } from "./suites/util.js"
import { describePostgres, PgDatabase } from "./support/Postgres.js"
import * as Redis from "./support/Redis.js"
import * as ServerProcess from "./support/ServerProcess.js"
import { decodeAs, post } from "./support/TestServer.js"
import { connect, is, join, keyOf, request, T } from "./support/WsClient.js"

const pubsubs = [
  ...(Redis.unavailable === undefined ? [{ name: "Redis", env: () => ({ PUBSUB_URL: Redis.url }) }] : []),
  { name: "Postgres NOTIFY", env: () => ({ PUBSUB_URL: "postgres" }) }
]

describePostgres("two server processes", ({ database }) => {
  for (const pubsub of pubsubs) {
    layer(database, { excludeTestServices: true, timeout: 180_000 })(`pub/sub through ${pubsub.name}`, (it) => {
      it.effect("pokes, broadcasts and presence cross processes; a dead process's presence expires", () =>
        Effect.gen(function*() {
          const db = yield* PgDatabase
          const env = { DATABASE_URL: db.url, ...pubsub.env(), PRESENCE_TTL_MS: "1500", PRESENCE_RENEW_MS: "300" }
          const [a, b, c] = yield* Effect.all([ServerProcess.start(env), ServerProcess.start(env), ServerProcess.start(env)], {
            concurrency: "unbounded"
          })
          const scope = freshScope("mp")
          const onA = yield* connect(a.url)
          const onB = yield* connect(b.url)
          yield* join(onA, { scopes: [scope] })
          const jb = yield* join(onB, { scopes: [scope] })

          // a push on A pokes the subscriber on B
          const pushed = yield* post(`${a.url}/_sync/push`, JSON.stringify({ mutations: [{ name: "todo/create", scope, args: { id: "x", title: "x" } }] }))
          assert.deepStrictEqual(decodeAs(Protocol.PushResponse, pushed.json).results, [{ ok: true, cursor: 1 }])
          const poke = yield* onB.waitFor(is(T.POKE, (f) => f.payload.scope === scope), 10_000)
          assert.deepStrictEqual(poke.payload, { scope, cursor: 1 })
          // and B serves the change: one database
          const pulled = decodeAs(Protocol.PullResponse, (yield* post(`${b.url}/_sync/pull`, JSON.stringify({ scope, cursor: 0 }))).json)
          assert.strictEqual(pulled.changes.length, 1)

          // broadcast from B reaches A
          // (`from` and presence keys are the sender's opaque handle on the topic, never its session id)
          const bob = keyOf(yield* request(onB, { type: T.EVENT, topic: scope, payload: { name: "typing", values: { who: "bob" } } }))
          assert.notStrictEqual(bob, jb.session_id)
          const got = yield* onA.waitFor(is(T.BROADCAST), 10_000)
          assert.deepStrictEqual(got.payload, { topic: scope, event: "typing", payload: { who: "bob" }, from: bob })

          // presence crosses both ways, under the same handles
          const ann = keyOf(yield* request(onA, { type: T.EVENT, topic: scope, payload: { name: "presence", values: { user: "ann" } } }))
          assert.strictEqual(keyOf(yield* request(onB, { type: T.EVENT, topic: scope, payload: { name: "presence", values: { user: "bob" } } })), bob)
          yield* onB.waitFor(is(T.PRESENCE, (f) => f.payload.joins?.[ann] !== undefined), 10_000)
          yield* onA.waitFor(is(T.PRESENCE, (f) => f.payload.joins?.[bob] !== undefined), 10_000)

          // B's client goes away: A sees it leave
          onB.ws.terminate()
          const left = yield* onA.waitFor(is(T.PRESENCE, (f) => f.payload.leaves?.[bob] !== undefined), 10_000)
          assert.deepStrictEqual(left.payload.leaves, { [bob]: { user: "bob" } })

          // a client of C is present; C is killed with SIGKILL (no goodbye): its presence expires on A
          const onC = yield* connect(c.url)
          yield* join(onC, { scopes: [scope] })
          const cat = keyOf(yield* request(onC, { type: T.EVENT, topic: scope, payload: { name: "presence", values: { user: "cat" } } }))
          yield* onA.waitFor(is(T.PRESENCE, (f) => f.payload.joins?.[cat] !== undefined), 10_000)
          yield* c.kill("SIGKILL")
          const expired = yield* onA.waitFor(is(T.PRESENCE, (f) => f.payload.leaves?.[cat] !== undefined), 15_000)
          assert.deepStrictEqual(expired.payload.leaves, { [cat]: { user: "cat" } })
        }).pipe(Effect.scoped), 180_000)
    })
  }
})
