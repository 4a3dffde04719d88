/**
 * The README's code, as code that runs. Every ```ts block of README.md names
 * its file on its first line (`// server.ts`); this file writes the blocks to
 * test/.readme/ (inside the package, so `mizu-sync-live` resolves to this
 * package as it does in an app), then:
 *  - type-checks them all with tsc;
 *  - imports `mutations.test.ts`, so its tests run here;
 *  - runs `server.ts`, `app.ts` and `auth-server.ts` as processes on free
 *    ports and talks to them over HTTP and WebSocket;
 *  - runs `client.ts` against `auth-server.ts` (its `http://localhost:3000`
 *    is replaced with that server's address) and checks what it did;
 *  - serves `counter.ts`'s page and drives it over the socket;
 *  - runs `server-pg.ts` on a fresh Postgres database and Redis (skipped with
 *    a line when they are not there, a failure under CI=true).
 * A ```ts block without a file name fails the suite: the README shows no
 * code that is not run.
 */
import { assert, describe, it, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import { spawn, spawnSync } from "node:child_process"
import * as NodeFs from "node:fs"
import * as NodeNet from "node:net"
import * as NodePath from "node:path"
import { type Mutation, type Page } from "mizu-sync-live"
import { freshDatabase, required as pgRequired, server as pgServer } from "./support/Postgres.js"
import { unavailable as redisUnavailable } from "./support/Redis.js"
import { start } from "./support/ServerProcess.js"
import { BaseUrl, layerMemoryDeps, layerServer, post } from "./support/TestServer.js"
import { connect, is, join, request, T } from "./support/WsClient.js"

const root = NodePath.resolve(import.meta.dirname, "..")
const dir = NodePath.join(root, "test", ".readme")

/** A port nobody listens on now (for the server the client block talks to). */
const freePort = await new Promise<number>((resolve, reject) => {
  const probe = NodeNet.createServer()
  probe.once("error", reject)
  probe.listen(0, "127.0.0.1", () => {
    const address = probe.address()
    probe.close(() => (typeof address === "object" && address !== null ? resolve(address.port) : reject(new Error("no port"))))
  })
})
const authUrl = `http://127.0.0.1:${freePort}`

const readme = NodeFs.readFileSync(NodePath.join(root, "README.md"), "utf8")
const blocks = [...readme.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) => m[1])
const unnamed = blocks.filter((code) => !/^\/\/ [\w.-]+\.ts\n/.test(code))
const files = new Map(
  blocks.filter((code) => !unnamed.includes(code)).map((code) => {
    const name = /^\/\/ ([\w.-]+\.ts)\n/.exec(code)![1]
    return [name, code.replaceAll("http://localhost:3000", authUrl)] as const
  })
)

NodeFs.rmSync(dir, { recursive: true, force: true })
NodeFs.mkdirSync(dir, { recursive: true })
for (const [name, code] of files) NodeFs.writeFileSync(NodePath.join(dir, name), code)
NodeFs.writeFileSync(
  NodePath.join(dir, "tsconfig.json"),
  JSON.stringify({ extends: "../../tsconfig.json", compilerOptions: { noEmit: true }, include: ["*.ts"] })
)

const tsx = (script: string, env: Record<string, string> = {}) =>
  Effect.async<{ code: number | null; output: string }>((resume) => {
    let output = ""
    const child = spawn(process.execPath, ["--conditions=source", "--import", "tsx", script], {
      cwd: dir,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"]
    })
    child.stdout.on("data", (c: Buffer) => (output += c.toString()))
    child.stderr.on("data", (c: Buffer) => (output += c.toString()))
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000)
    child.once("exit", (code) => {
      clearTimeout(timer)
      resume(Effect.succeed({ code, output }))
    })
  })

const json = (url: string, init?: RequestInit) =>
  Effect.promise(async () => {
    const res = await fetch(url, init)
    return { status: res.status, body: await res.json() as unknown }
  })

const pushBody = (scope: string, id: string) =>
  JSON.stringify({ mutations: [{ name: "todo/create", scope, args: { id, title: `title ${id}` } }] })

describe("README", () => {
  it("every ts block names its file, and the tour has the files this test runs", () => {
    assert.deepStrictEqual(unnamed.map((code) => code.split("\n")[0]), [])
    for (const name of ["mutations.ts", "server.ts", "app.ts", "mutations.test.ts", "auth-server.ts", "client.ts", "counter.ts", "server-pg.ts"]) {
      assert.isTrue(files.has(name), `README has no block for ${name}`)
    }
  })

  it("the blocks type-check (strict, as in an app)", { timeout: 180_000 }, () => {
    const run = spawnSync(process.execPath, [NodePath.join(root, "node_modules/typescript/bin/tsc"), "-p", NodePath.join(dir, "tsconfig.json")], {
      cwd: root,
      encoding: "utf8"
    })
    assert.strictEqual(run.status, 0, run.stdout + run.stderr)
  })

  describe("mutations.test.ts", async () => {
    await import(/* @vite-ignore */ NodePath.join(dir, "mutations.test.ts"))
  })

  it.live("server.ts: push and pull on SQLite", () =>
    Effect.gen(function*() {
      const server = yield* start({}, "server.ts", dir)
      const pushed = yield* post(`${server.url}/_sync/push`, pushBody("readme:standalone", "s1"))
      assert.deepStrictEqual(pushed.json, { results: [{ ok: true, cursor: 1 }] })
      const pulled = yield* post(`${server.url}/_sync/pull`, JSON.stringify({ scope: "readme:standalone", cursor: 0 }))
      assert.deepStrictEqual((pulled.json as { changes: Array<{ id: string }> }).changes.map((c) => c.id), ["s1"])
      assert.isTrue(NodeFs.existsSync(NodePath.join(dir, "data", "app.db")), "the SQLite file is where the block says")
    }).pipe(Effect.scoped), 120_000)

  it.live("app.ts: the app's route and the mounted endpoints answer; SIGTERM drains the live session", () =>
    Effect.gen(function*() {
      const server = yield* start({}, "app.ts", dir)
      const health = yield* Effect.promise(() => fetch(`${server.url}/health`).then(async (r) => [r.status, await r.text()]))
      assert.deepStrictEqual(health, [200, "ok"])
      const client = yield* connect(server.url)
      const sub = yield* request(client, { type: T.JOIN, payload: { scopes: ["readme:mounted"] } })
      assert.deepStrictEqual(sub.cursors, { "readme:mounted": 0 })
      const pushed = yield* post(`${server.url}/_sync/push`, pushBody("readme:mounted", "m1"))
      assert.deepStrictEqual(pushed.json, { results: [{ ok: true, cursor: 1 }] })
      assert.deepStrictEqual((yield* client.waitFor(is(T.POKE))).payload, { scope: "readme:mounted", cursor: 1 })
      yield* server.kill("SIGTERM")
      const close = yield* client.waitFor(is(T.CLOSE))
      assert.strictEqual(close.payload.reason, "shutdown")
    }).pipe(Effect.scoped), 120_000)

  it.live("auth-server.ts + client.ts: tokens decide, the client syncs with its token and types its errors", () =>
    Effect.gen(function*() {
      yield* start({ PORT: String(freePort), HOST: "127.0.0.1" }, "auth-server.ts", dir)
      const scope = "user:ann:todos"
      const anonymous = yield* post(`${authUrl}/_sync/push`, pushBody(scope, "x"))
      assert.strictEqual(anonymous.status, 401)
      const bob = yield* post(`${authUrl}/_sync/push`, pushBody(scope, "x"), { "content-type": "application/json", authorization: "Bearer token-bob" })
      assert.strictEqual(bob.status, 403)

      const run = yield* tsx("client.ts")
      assert.strictEqual(run.code, 0, run.output)
      assert.include(run.output, "Buy milk")
      assert.include(run.output, "invalid_args")

      const pulled = yield* json(`${authUrl}/_sync/pull`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: "Bearer token-ann" },
        body: JSON.stringify({ scope, cursor: 0 })
      })
      assert.strictEqual(pulled.status, 200)
      const titles = (pulled.body as { changes: Array<{ data?: { title: string } }> }).changes.map((c) => c.data?.title)
      assert.deepStrictEqual(titles, ["Buy milk"])
    }).pipe(Effect.scoped), 120_000)

  describe("counter.ts", async () => {
    // written by this file at run time, so typed here by what the test uses
    const { Counter } = (await import(/* @vite-ignore */ NodePath.join(dir, "counter.ts"))) as { Counter: Page.Any }
    const { registry } = (await import(/* @vite-ignore */ NodePath.join(dir, "mutations.ts"))) as { registry: Mutation.Registry }
    layer(layerServer({ registry, pages: [Counter] }, layerMemoryDeps), { excludeTestServices: true })("a live page", (it) => {
      it.effect("GET renders the document; an event over the socket patches the count", () =>
        Effect.gen(function*() {
          const base = yield* BaseUrl
          const page = yield* Effect.promise(() => fetch(`${base}/counter`).then((r) => r.text()))
          assert.include(page, `mizu-click="inc"`)
          const c = yield* connect(base)
          const reply = yield* join(c, { url: "/counter" })
          assert.strictEqual(reply.status, "ok")
          yield* request(c, { type: T.EVENT, payload: { name: "inc" } })
          const patch = yield* c.waitFor(is(T.PATCH))
          assert.include(patch.payload.regions[0].html, ">1<")
        }).pipe(Effect.scoped))
    })
  })

  const pgReason = Either.isLeft(pgServer) ? pgServer.left : redisUnavailable
  const pgMissing = pgReason !== undefined && !pgRequired
  if (pgMissing) console.log(`skipping README server-pg.ts run: ${pgReason} (set CI=true to make this a failure)`)
  // Skipped only without Postgres or Redis and without CI=true (the line above says which).
  it.live.skipIf(pgMissing)("server-pg.ts: push and pull on Postgres, pokes through Redis", () => // skipped only without Postgres or Redis and CI unset (reason printed above)
    Effect.gen(function*() {
      const database = yield* freshDatabase
      const server = yield* start({ DATABASE_URL: database.url }, "server-pg.ts", dir)
      const client = yield* connect(server.url)
      yield* join(client, { scopes: ["readme:pg"] })
      const pushed = yield* post(`${server.url}/_sync/push`, pushBody("readme:pg", "p1"))
      assert.deepStrictEqual(pushed.json, { results: [{ ok: true, cursor: 1 }] })
      assert.deepStrictEqual((yield* client.waitFor(is(T.POKE))).payload, { scope: "readme:pg", cursor: 1 })
    }).pipe(Effect.scoped), 120_000)
})
