/**
 * Deploys while clients are offline (app versions): one todo app at three
 * versions (test/fixtures/versionedTodos.ts), servers started and
 * redeployed over one shared storage, clients over one persistent store.
 *
 * Shown:
 * - a v1 client's offline mutations apply on a server redeployed at v2,
 *   through the upgrade; a v2 client sees v2-shaped rows;
 * - at v3 (oldest accepted v2) the same client gets `version_too_old`:
 *   nothing is lost, `UpdateNeeded` fires and pushing stops; reloaded on v3
 *   code it upgrades its stored mutations (one is retired and replaced) and
 *   pushes them, each applied exactly once;
 * - an old client pulls an entity (and fields) its code does not know: no
 *   error, its queries unchanged;
 * - a rolling deploy: a client newer than one of two servers gets
 *   `version_too_new` from it, succeeds on the other, nothing rejected;
 * - the registry refuses versions that cannot be right at definition time,
 *   and an upgrade chain that does not compose does not type-check.
 *
 * Bad input tried: `app_version` as a string, 0, 1.5 and null (400
 * `invalid_request`), a version above the server's (409 `version_too_new`)
 * and below its oldest (409 `version_too_old` with `details.min`): none of
 * them changed state.
 */
import { assert, describe, it, layer } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import { Entity, Mutation } from "mizu-sync-live"
import { ClientStorage, type SyncClient, SyncTransport } from "mizu-sync-live/client"
import { freshScope } from "./suites/util.js"
import { startStoppable, switchable, takeUntil, unplugged } from "./support/clientHarness.js"
import { BaseUrl, type Deps, layerMemoryDeps, layerServer, post } from "./support/TestServer.js"
import { TodoEntity, TodoV1Entity, v1, v2, v3 } from "./fixtures/versionedTodos.js"

type Transport = SyncTransport.SyncTransport["Type"]

const fast = { retryInitial: "5 millis", retryMax: "50 millis" } as const

/** A server of `registry` over `deps` (shared by every server of a test: one database), in its own scope. */
const serverAt = (registry: Mutation.Registry, deps: Context.Context<Deps>) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const context = yield* Layer.buildWithScope(layerServer({ registry, live: { drainPeriod: "10 millis" } }, Layer.succeedContext(deps)), scope)
    return { base: Context.get(context, BaseUrl), stop: Scope.close(scope, Exit.void) }
  })

const fetchTo = (base: string): Transport => SyncTransport.makeFetch({ baseUrl: base })
const snapshot = (base: string, scope: string) => Effect.map(Effect.orDie(fetchTo(base).snapshot({ scope })), (s) => s.data)
const changesOf = (base: string, scope: string) => Effect.map(Effect.orDie(fetchTo(base).pull({ scope, cursor: 0, limit: 1000 })), (p) => p.changes)

/** Every mutation id the server processed (a result that is not a duplicate), with how many times. */
const counting = (inner: Transport, processed: Map<number, number>): Transport =>
  SyncTransport.SyncTransport.of({
    ...inner,
    push: (r) =>
      Effect.tap(inner.push(r), (response) =>
        Effect.sync(() =>
          response.results.forEach((result, i) => {
            const id = r.mutations[i]?.id
            if (id !== undefined && result.ok && result.duplicate !== true) processed.set(id, (processed.get(id) ?? 0) + 1)
          })
        ))
  })

const newStore = Ref.make(ClientStorage.emptyState)

describe("app versions", () => {
  it.scopedLive("a v1 client's offline mutations apply on a server redeployed at v2; v2 clients see v2-shaped rows", () =>
    Effect.gen(function*() {
      const deps = yield* Layer.build(layerMemoryDeps)
      const scope = freshScope("todos")
      const serverV1 = yield* serverAt(v1, deps)
      const down = { value: true }
      const line = switchable(fetchTo(serverV1.base))
      const store = yield* newStore
      const old = yield* startStoppable({ ...fast, registry: v1, scopes: [scope] }, unplugged(line.transport, down), ClientStorage.layerMemoryRef(store))
      yield* old.client.mutate("todo/create", { id: "a", title: "milk" }, { scope })
      yield* old.client.mutate("todo/rename", { id: "a", title: "oat milk" }, { scope })
      assert.deepStrictEqual((yield* old.client.pending).map((m) => m.version), [1, 1])
      // redeployed at v2 while the client was offline; the client comes back on v1 code
      yield* serverV1.stop
      const serverV2 = yield* serverAt(v2, deps)
      line.set(fetchTo(serverV2.base))
      down.value = false
      yield* old.client.sync
      assert.deepStrictEqual(yield* snapshot(serverV2.base, scope), { todo: { a: { id: "a", title: "oat milk", completed: false, due: null } } })
      // a v2 client sees the v2 shape; the v1 client still reads its own shape
      const fresh = yield* startStoppable({ ...fast, registry: v2, scopes: [scope] }, fetchTo(serverV2.base), ClientStorage.layerMemory)
      yield* fresh.client.sync
      assert.deepStrictEqual(Option.getOrThrow(yield* fresh.client.get(scope, TodoEntity, "a")), { id: "a", title: "oat milk", completed: false, due: null })
      assert.deepStrictEqual(Option.getOrThrow(yield* old.client.get(scope, TodoV1Entity, "a")), { id: "a", title: "oat milk", completed: false })
      yield* fresh.stop
      yield* old.stop
      yield* serverV2.stop
    }), { timeout: 30_000 })

  it.scopedLive("too old for v3: nothing lost, UpdateNeeded, pushing stops; reloaded on v3 code the queue is upgraded and applied exactly once", () =>
    Effect.gen(function*() {
      const deps = yield* Layer.build(layerMemoryDeps)
      const scope = freshScope("todos")
      const serverV1 = yield* serverAt(v1, deps)
      const down = { value: true }
      const line = switchable(fetchTo(serverV1.base))
      const store = yield* newStore
      const old = yield* startStoppable({ ...fast, registry: v1, scopes: [scope] }, unplugged(line.transport, down), ClientStorage.layerMemoryRef(store))
      const events = yield* old.client.subscribeEvents
      yield* old.client.mutate("todo/create", { id: "b", title: "bread" }, { scope })
      yield* old.client.mutate("todo/rename", { id: "b", title: "rye bread" }, { scope })
      yield* serverV1.stop
      const serverV3 = yield* serverAt(v3, deps)
      line.set(fetchTo(serverV3.base))
      down.value = false
      const needed = yield* takeUntil(events, (e): e is Extract<SyncClient.SyncEvent, { _tag: "UpdateNeeded" }> => e._tag === "UpdateNeeded")
      assert.strictEqual(needed.min, 2)
      assert.strictEqual(needed.version, 1)
      assert.deepStrictEqual((yield* old.client.status).updateNeeded, { min: 2 })
      const refused = yield* Effect.flip(old.client.push)
      assert.strictEqual(refused._tag === "SyncError" ? refused.reason : refused._tag, "update_needed")
      assert.strictEqual((yield* old.client.pending).length, 2) // kept, not rejected
      assert.deepStrictEqual(yield* snapshot(serverV3.base, scope), {})
      yield* old.stop
      // the app reloads on v3 code over the same store: the stored v1 mutations are upgraded, then pushed
      const processed = new Map<number, number>()
      const reloaded = yield* startStoppable({ ...fast, registry: v3, scopes: [scope] }, counting(fetchTo(serverV3.base), processed), ClientStorage.layerMemoryRef(store))
      const upgraded = (yield* Ref.get(store)).pending
      assert.deepStrictEqual(upgraded.map((m) => [m.name, m.version, m.args]), [
        ["todo/create", 3, { id: "b", title: "bread", due: null, priority: 0 }],
        ["todo/edit", 3, { id: "b", title: "rye bread" }] // todo/rename was retired in v3, replaced by todo/edit
      ])
      yield* reloaded.client.sync
      assert.deepStrictEqual(yield* snapshot(serverV3.base, scope), {
        todo: { b: { id: "b", title: "rye bread", completed: false, due: null, priority: 0 } }
      })
      assert.deepStrictEqual([...processed].sort(), [[1, 1], [2, 1]])
      assert.deepStrictEqual((yield* changesOf(serverV3.base, scope)).map((c) => c.op), ["create", "update"])
      yield* reloaded.stop
      yield* serverV3.stop
    }), { timeout: 30_000 })

  it.scopedLive("an old client pulls an entity and fields its code does not know: no error, its queries unchanged", () =>
    Effect.gen(function*() {
      const deps = yield* Layer.build(layerMemoryDeps)
      const scope = freshScope("todos")
      const server = yield* serverAt(v3, deps)
      const newer = yield* startStoppable({ ...fast, registry: v3, scopes: [scope] }, fetchTo(server.base), ClientStorage.layerMemory)
      yield* newer.client.mutate("todo/create", { id: "t", title: "tea", due: "2026-12-24", priority: 2 }, { scope })
      yield* newer.client.mutate("note/add", { id: "n", text: "an entity v2 does not know" }, { scope })
      yield* newer.client.sync
      const older = yield* startStoppable({ ...fast, registry: v2, scopes: [scope] }, fetchTo(server.base), ClientStorage.layerMemory)
      const events = yield* older.client.subscribeEvents
      yield* older.client.sync
      // its query of todos is what it always was; the unknown field is ignored by its decoder
      assert.deepStrictEqual(yield* older.client.query(scope, TodoEntity), [["t", { id: "t", title: "tea", completed: false, due: "2026-12-24", priority: 2 }]])
      assert.deepStrictEqual(yield* older.client.query(scope, TodoV1Entity), [["t", { id: "t", title: "tea", completed: false }]])
      // the note is kept as raw data, untouched
      assert.deepStrictEqual((yield* older.client.view(scope))["note"], { n: { id: "n", text: "an entity v2 does not know" } })
      assert.strictEqual((yield* older.client.status).lastError, undefined)
      // and it still pushes to v3 (its oldest accepted is v2): upgraded on the server
      yield* older.client.mutate("todo/create", { id: "u", title: "sugar", due: null }, { scope })
      yield* older.client.sync
      assert.deepStrictEqual((yield* snapshot(server.base, scope))["todo"]?.["u"], { id: "u", title: "sugar", completed: false, due: null, priority: 0 })
      const seen = yield* events.takeAll
      assert.isFalse([...seen].some((e) => e._tag === "Error" || e._tag === "Rejected"), "no error, nothing rejected")
      yield* older.stop
      yield* newer.stop
      yield* server.stop
    }), { timeout: 30_000 })

  it.scopedLive("a rolling deploy: version_too_new from the server still on v2, success on the one on v3, nothing rejected", () =>
    Effect.gen(function*() {
      const deps = yield* Layer.build(layerMemoryDeps)
      const scope = freshScope("todos")
      const behind = yield* serverAt(v2, deps)
      const ahead = yield* serverAt(v3, deps)
      const line = switchable(fetchTo(behind.base))
      const client = yield* startStoppable({ ...fast, registry: v3, scopes: [scope] }, line.transport, ClientStorage.layerMemory)
      const events = yield* client.client.subscribeEvents
      yield* client.client.mutate("todo/create", { id: "r", title: "rice", due: null, priority: 1 }, { scope })
      const error = yield* takeUntil(events, (e): e is Extract<SyncClient.SyncEvent, { _tag: "Error" }> => e._tag === "Error" && e.during === "push")
      assert.strictEqual(error.error._tag === "ProtocolError" ? error.error.code : error.error._tag, "version_too_new")
      assert.strictEqual((yield* client.client.pending).length, 1)
      assert.deepStrictEqual(yield* snapshot(ahead.base, scope), {})
      // the load balancer sends the next attempt to the upgraded process
      line.set(fetchTo(ahead.base))
      yield* client.client.sync
      assert.deepStrictEqual(yield* snapshot(ahead.base, scope), { todo: { r: { id: "r", title: "rice", completed: false, due: null, priority: 1 } } })
      assert.strictEqual((yield* changesOf(ahead.base, scope)).length, 1)
      const seen = yield* events.takeAll
      assert.isFalse([...seen].some((e) => e._tag === "Rejected"), "nothing was rejected")
      yield* client.stop
      yield* behind.stop
      yield* ahead.stop
    }), { timeout: 30_000 })

  layer(layerServer({ registry: v3 }, layerMemoryDeps), { excludeTestServices: true })("the push body's app_version", (it) => {
    it.effect("a bad app_version is 400 invalid_request; outside the server's versions 409; nothing changes", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const scope = freshScope("todos")
        const body = (version: unknown) =>
          JSON.stringify({ app_version: version, client_id: "c-v", mutations: [{ id: 1, name: "todo/create", scope, args: { id: "x", title: "x", due: null, priority: 0 } }] })
        for (const bad of ["2", 0, 1.5, null]) {
          const res = yield* post(`${base}/_sync/push`, body(bad))
          assert.strictEqual(res.status, 400, `app_version ${JSON.stringify(bad)}`)
          assert.strictEqual((res.json as { error: { code: string } }).error.code, "invalid_request")
        }
        const tooNew = yield* post(`${base}/_sync/push`, body(4))
        assert.strictEqual(tooNew.status, 409)
        assert.deepStrictEqual((tooNew.json as { error: unknown }).error, { code: "version_too_new", message: "app version 4 is newer than this server's 3; retry later", details: { max: 3 } })
        const tooOld = yield* post(`${base}/_sync/push`, body(1))
        assert.strictEqual(tooOld.status, 409)
        const old = (tooOld.json as { error: { code: string; details: unknown } }).error
        assert.strictEqual(old.code, "version_too_old")
        assert.deepStrictEqual(old.details, { min: 2, version: 3 })
        assert.deepStrictEqual(yield* snapshot(base, scope), {})
        // and the same body at an accepted version applies
        const ok = yield* post(`${base}/_sync/push`, body(3))
        assert.strictEqual(ok.status, 200)
        assert.deepStrictEqual(yield* snapshot(base, scope), { todo: { x: { id: "x", title: "x", completed: false, due: null, priority: 0 } } })
      }))
  })

  it("the registry refuses versions that cannot be right, at definition time", () => {
    const A = Schema.Struct({ a: Schema.String })
    const B = Schema.Struct({ a: Schema.String, b: Schema.Number })
    assert.throws(() => Mutation.registry({ version: 1, minVersion: 2, entities: [], mutations: [] }), /minVersion/)
    const changedIn3 = Mutation.make("m", { args: Mutation.versioned(A).changedIn(3, B, (a) => ({ ...a, b: 0 })), handler: () => Effect.void })
    assert.throws(() => Mutation.registry({ version: 2, entities: [], mutations: [changedIn3] }), /changed in version 3/)
    assert.throws(() => Mutation.versioned(A).changedIn(2, B, (a) => ({ ...a, b: 0 })).changedIn(2, B, (b) => b), /increasing/)
    const m = Mutation.make("m", { args: A, handler: () => Effect.void })
    assert.throws(() => Mutation.registry({ entities: [], mutations: [m], retired: [Mutation.retire(m, { removedIn: 1, reason: "x" })] }), /both defined and retired/)
    // @ts-expect-error an upgrade that does not give the next shape does not type-check
    Mutation.versioned(A).changedIn(2, B, (a) => ({ ...a, b: "not a number" }))
    // @ts-expect-error nor one that takes something other than the shape before it
    Mutation.versioned(A).changedIn(2, B, (a: { readonly z: number }) => ({ a: String(a.z), b: 1 }))
  })
})

describe("entity shapes across versions, on the client", () => {
  layer(layerServer({ registry: v2 }, layerMemoryDeps), { excludeTestServices: true, timeout: 30_000 })("a v2 server", (it) => {
    it.scoped("a stored row of an older shape is read through the entity's migration; one no code can read is left out and its scope reset from a snapshot, never a crash", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const scope = freshScope("todos")
        // the server has one todo; the client's store has it in a shape of long ago (`name`, `done`) and one it cannot read at all
        yield* Effect.orDie(fetchTo(base).push({ mutations: [{ name: "todo/create", scope, args: { id: "k", title: "kept", due: null } }] }))
        const head = (yield* Effect.orDie(fetchTo(base).pull({ scope, cursor: 0 }))).cursor
        const store = yield* Ref.make<ClientStorage.StoredState>({
          ...ClientStorage.emptyState,
          clientId: "c-shapes",
          scopes: { [scope]: { cursor: head, rows: { todo: { k: { id: "k", title: "kept", completed: false, due: null }, o: { id: "o", name: "old shape", done: true }, z: { id: "z", broken: 1 } } } } }
        })
        const Old = Schema.Struct({ id: Schema.String, name: Schema.String, done: Schema.Boolean })
        const Migrated = Entity.make("todo", TodoEntity.schema, {
          migrate: Schema.transform(Old, Schema.typeSchema(TodoEntity.schema), {
            strict: true,
            decode: (old) => ({ id: old.id, title: old.name, completed: old.done }),
            encode: (todo) => ({ id: todo.id, name: todo.title, done: todo.completed })
          })
        })
        const client = yield* startStoppable({ ...fast, registry: v2 }, fetchTo(base), ClientStorage.layerMemoryRef(store))
        const events = yield* client.client.subscribeEvents
        // "o" reads through the migration; "z" (no shape reads it) is left out, not thrown
        assert.deepStrictEqual((yield* client.client.query(scope, Migrated)).map(([id]) => id), ["k", "o"])
        assert.deepStrictEqual(Option.getOrThrow(yield* client.client.get(scope, Migrated, "o")), { id: "o", title: "old shape", completed: true })
        // and the scope is reset from the server's snapshot, which has what the server has
        const reset = yield* takeUntil(events, (e): e is Extract<SyncClient.SyncEvent, { _tag: "Reset" }> => e._tag === "Reset")
        assert.deepStrictEqual(reset, { _tag: "Reset", scope, reason: "schema" })
        assert.deepStrictEqual((yield* client.client.query(scope, TodoEntity)).map(([id]) => id), ["k"])
        yield* client.stop
      }))
  })
})
