/**
 * Data at the edges, end to end on every storage layer (memory, SQLite,
 * Postgres), through HTTP requests to a server on a free port and through
 * the client (memory, file and IndexedDB storage, and a restart):
 *
 * - entity ids that are names of `Object.prototype` (`__proto__`,
 *   `constructor`, `prototype`, …) round-trip through push, pull, snapshot
 *   (the server's and the client's decoding of it), client storage and a
 *   reload, as ids like any other;
 * - ids storage cannot keep (longer than `Entity.MAX_ID_LENGTH`, U+0000,
 *   an unpaired surrogate) are refused the same way everywhere: the
 *   mutation gets `invalid_args` (`ok: false`, the request is 200 and the
 *   rest of it applies), never `503 unavailable` (which clients retry
 *   forever), and the client refuses them before queuing;
 * - U+0000 inside data (values and keys) is stored and comes back;
 * - a value the database itself refuses (a `StorageError` with reason
 *   `invalid`) inside a mutator is that mutation's `invalid_args`.
 */
import { afterAll, assert, layer } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Ref from "effect/Ref"
import * as Schema from "effect/Schema"
import { Authorizer, Entity, LivePubSub, Mutation, Protocol, SqlStorage, Store, StorageError, SyncStorage } from "mizu-sync-live"
import { ClientStorage, IndexedDbStorage, SyncTransport } from "mizu-sync-live/client"
import { FileStorage } from "mizu-sync-live/client/node"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { freshClient, freshScope } from "./suites/util.js"
import { startStoppable } from "./support/clientHarness.js"
import { FakeIndexedDb, FakeKeyRange } from "./support/FakeIndexedDb.js"
import { describePostgres } from "./support/Postgres.js"
import { BaseUrl, decodeAs, layerServer, post } from "./support/TestServer.js"

const Note = Entity.make("note", Schema.Struct({ body: Schema.Unknown }))

/** Any string as the id: what the edge cases need (an app would bound it). */
const putNote = Mutation.make("note/put", {
  args: Schema.Struct({ id: Schema.String, body: Schema.Unknown }),
  handler: ({ body, id }, tx) => tx.put(Note, id, { body })
})
const deleteNote = Mutation.make("note/delete", {
  args: Schema.Struct({ id: Schema.String }),
  handler: ({ id }, tx) => tx.delete(Note, id)
})
/** Reads first (a get with the id), then writes. */
const touchNote = Mutation.make("note/touch", {
  args: Schema.Struct({ id: Schema.String }),
  handler: ({ id }, tx) => Effect.flatMap(tx.get(Note, id), () => tx.put(Note, id, { body: "touched" }))
})

const registry = Mutation.registry({ entities: [Note], mutations: [putNote, deleteNote, touchNote] })

/** Ids every plain object has as keys (or, `__proto__`, as its prototype). */
const objectNames = ["__proto__", "constructor", "prototype", "toString", "hasOwnProperty", "__defineGetter__", "valueOf"]

const longest = "x".repeat(Entity.MAX_ID_LENGTH)
const astral = "😀".repeat(Entity.MAX_ID_LENGTH / 2) // 256 UTF-16 code units, 512 bytes of UTF-8
/** Ids no layer may store: too long, U+0000, an unpaired surrogate. */
const unstorable = ["y".repeat(Entity.MAX_ID_LENGTH + 1), "a\u0000b", "\u0000", "lone \ud800 surrogate", "\udc00"]

const nulData = { text: "a\u0000b", nested: { "key\u0000": ["\u0000"] } }

const put = (id: number, note: string, scope: string, body: unknown = { note }) => ({ id, name: "note/put", scope, args: { id: note, body } })

const send = (path: "push" | "pull" | "snapshot", body: unknown) =>
  Effect.flatMap(BaseUrl, (base) => post(`${base}/_sync/${path}`, JSON.stringify(body)))

const ok200 = (r: { readonly status: number; readonly text: string }, what: string) => assert.strictEqual(r.status, 200, `${what}: ${r.text.slice(0, 300)}`)

const directory = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "mizu-data-edges-"))
afterAll(() => NodeFs.rmSync(directory, { recursive: true, force: true }))

const real = { excludeTestServices: true, timeout: 120_000 } as const

const scenarios = (name: string, storage: Layer.Layer<SyncStorage.Services, unknown>) =>
  layer(layerServer({ registry }, Layer.mergeAll(storage, LivePubSub.layerMemory, Authorizer.layerAllowAll)), real)(
    `data edges (${name})`,
    (it) => {
      it.effect("ids named like Object.prototype's keys round-trip through push, pull and snapshot; update and delete them", () =>
        Effect.gen(function*() {
          const scope = freshScope("edges")
          const c = freshClient()
          const ids = [...objectNames, longest, astral]
          const pushed = yield* send("push", { client_id: c, mutations: ids.map((note, i) => put(i + 1, note, scope)) })
          ok200(pushed, "push")
          const results = decodeAs(Protocol.PushResponse, pushed.json).results
          assert.deepStrictEqual(results.map((r) => [r.ok, r.error?.code]), ids.map(() => [true, undefined]))

          const pulled = decodeAs(Protocol.PullResponse, (yield* send("pull", { scope, cursor: 0, client_id: c })).json)
          assert.deepStrictEqual(pulled.changes.map((ch) => [ch.id, ch.op]), ids.map((id) => [id, "create"]))
          assert.deepStrictEqual(pulled.changes[0].data, { body: { note: "__proto__" } })
          assert.strictEqual(pulled.last_mutation_id, ids.length)

          // the snapshot: every id an own key, in the raw JSON and once decoded with the protocol Schema
          const snap = yield* send("snapshot", { scope, client_id: c })
          ok200(snap, "snapshot")
          const raw = JSON.parse(snap.text) as { data: { note: Record<string, unknown> } }
          assert.sameMembers(Object.keys(raw.data.note), ids)
          const decoded = decodeAs(Protocol.SnapshotResponse, JSON.parse(snap.text))
          const notes = decoded.data["note"] ?? {}
          assert.sameMembers(Object.keys(notes), ids)
          assert.strictEqual(Object.getPrototypeOf(notes), Object.prototype)
          for (const id of ids) assert.deepStrictEqual(Protocol.getOwn(notes, id), { body: { note: id } }, id)
          assert.strictEqual(decoded.last_mutation_id, ids.length)

          // update "__proto__", delete "constructor"
          const n = ids.length
          const again = yield* send("push", {
            client_id: c,
            mutations: [put(n + 1, "__proto__", scope, 2), { id: n + 2, name: "note/delete", scope, args: { id: "constructor" } }, { id: n + 3, name: "note/touch", scope, args: { id: "prototype" } }]
          })
          ok200(again, "push again")
          assert.isTrue(decodeAs(Protocol.PushResponse, again.json).results.every((r) => r.ok))
          const more = decodeAs(Protocol.PullResponse, (yield* send("pull", { scope, cursor: pulled.cursor })).json)
          assert.deepStrictEqual(more.changes.map((ch) => [ch.id, ch.op]), [["__proto__", "update"], ["constructor", "delete"], ["prototype", "update"]])
          const after = decodeAs(Protocol.SnapshotResponse, JSON.parse((yield* send("snapshot", { scope })).text)).data["note"] ?? {}
          assert.sameMembers(Object.keys(after), ids.filter((id) => id !== "constructor"))
          assert.deepStrictEqual(Protocol.getOwn(after, "__proto__"), { body: 2 })
          assert.deepStrictEqual(Protocol.getOwn(after, "prototype"), { body: "touched" })
          assert.isUndefined(Protocol.getOwn(after, "constructor"))
        }))

      it.effect("ids storage cannot keep are invalid_args (200, ok: false) for put, get and delete, with or without client_id; the rest applies", () =>
        Effect.gen(function*() {
          const scope = freshScope("bad-ids")
          const c = freshClient()
          const mutations = [
            put(1, "before", scope),
            ...unstorable.map((note, i) => put(i + 2, note, scope)),
            { id: unstorable.length + 2, name: "note/delete", scope, args: { id: "a\u0000b" } },
            { id: unstorable.length + 3, name: "note/touch", scope, args: { id: "\u0000" } },
            put(unstorable.length + 4, "after", scope)
          ]
          const pushed = yield* send("push", { client_id: c, mutations })
          ok200(pushed, "push")
          const results = decodeAs(Protocol.PushResponse, pushed.json).results
          assert.deepStrictEqual(
            results.map((r): string | undefined => (r.ok ? "ok" : r.error?.code)),
            ["ok", ...unstorable.map(() => "invalid_args"), "invalid_args", "invalid_args", "ok"]
          )
          assert.include(results[1].error?.message ?? "", `more than ${Entity.MAX_ID_LENGTH}`)
          assert.include(results[2].error?.message ?? "", "U+0000")
          // consumed, as any invalid_args: resending is a duplicate, the ids go on
          const pulled = decodeAs(Protocol.PullResponse, (yield* send("pull", { scope, cursor: 0, client_id: c })).json)
          assert.deepStrictEqual(pulled.changes.map((ch) => ch.id), ["before", "after"])
          assert.strictEqual(pulled.last_mutation_id, mutations.length)

          // without client_id: each its own step, the same answers
          const plain = yield* send("push", { mutations: [put(1, "\u0000", scope), put(2, "z".repeat(300), scope), put(3, "plain", scope)] })
          ok200(plain, "plain push")
          assert.deepStrictEqual(decodeAs(Protocol.PushResponse, plain.json).results.map((r) => (r.ok ? "ok" : r.error?.code)), ["invalid_args", "invalid_args", "ok"])
          const snap = decodeAs(Protocol.SnapshotResponse, (yield* send("snapshot", { scope })).json)
          assert.sameMembers(Object.keys(snap.data["note"] ?? {}), ["before", "after", "plain"])
        }))

      it.effect("U+0000 inside data (values and object keys) is stored and comes back as it was", () =>
        Effect.gen(function*() {
          const scope = freshScope("nul-data")
          const pushed = yield* send("push", { client_id: freshClient(), mutations: [put(1, "n", scope, nulData)] })
          ok200(pushed, "push")
          assert.isTrue(decodeAs(Protocol.PushResponse, pushed.json).results[0].ok)
          const pulled = decodeAs(Protocol.PullResponse, (yield* send("pull", { scope, cursor: 0 })).json)
          assert.deepStrictEqual(pulled.changes[0].data, { body: nulData })
          const snap = decodeAs(Protocol.SnapshotResponse, (yield* send("snapshot", { scope })).json)
          assert.deepStrictEqual(snap.data, { note: { n: { body: nulData } } })
        }))

      it.scoped("the client: such ids round-trip through its storage (memory, file, IndexedDB), a snapshot reset and a restart; bad ids are refused before queuing", () =>
        Effect.gen(function*() {
          const base = yield* BaseUrl
          const transport = SyncTransport.makeFetch({ baseUrl: base })
          const scope = freshScope("client-edges")
          const ids = ["__proto__", "constructor", "prototype", "toString"]
          const options = { registry, scopes: [scope], retryInitial: "5 millis", retryMax: "50 millis" } as const

          // a writer on file storage
          const dir = NodePath.join(directory, `client-${scope.replace(/[^a-z0-9]/gi, "_")}`)
          const fileStorage = FileStorage.layer({ directory: dir, fsync: false })
          const writer = yield* startStoppable(options, transport, fileStorage)
          for (const id of ids) yield* writer.client.mutate(putNote, { id, body: { id } }, { scope })
          for (const bad of unstorable) {
            const refused = yield* Effect.flip(writer.client.mutate(putNote, { id: bad, body: 1 }, { scope }))
            assert.strictEqual(refused.reason, "invalid_args", JSON.stringify(bad))
          }
          yield* writer.client.sync
          assert.strictEqual((yield* writer.client.pending).length, 0)
          const expectView = (view: Protocol.SnapshotData, what: string) => {
            const notes = Protocol.getOwn(view, "note") ?? {}
            assert.sameMembers(Object.keys(notes), ids, what)
            for (const id of ids) assert.deepStrictEqual(Protocol.getOwn(notes, id), { body: { id } }, `${what}: ${id}`)
          }
          expectView(yield* writer.client.view(scope), "writer")
          assert.sameMembers((yield* writer.client.query(scope, Note)).map(([id]) => id), ids)
          yield* writer.stop
          // restarted from its files, offline: the confirmed rows are there
          const offline = SyncTransport.SyncTransport.of({
            push: () => Effect.never,
            pull: () => Effect.never,
            snapshot: () => Effect.never
          })
          const reloaded = yield* startStoppable(options, offline, fileStorage)
          expectView(yield* reloaded.client.view(scope), "file storage, restarted")
          yield* reloaded.stop

          // readers that reset from a snapshot (one change per page, one page per pull: a backlog),
          // on memory and IndexedDB storage, each restarted after
          const ref = yield* Ref.make(ClientStorage.emptyState)
          const factory = new FakeIndexedDb()
          const stores: ReadonlyArray<readonly [string, Layer.Layer<ClientStorage.ClientStorage, ClientStorage.ClientStorageError>]> = [
            ["memory", ClientStorage.layerMemoryRef(ref)],
            ["IndexedDB", IndexedDbStorage.layer({ name: "edges", indexedDB: factory as unknown as IDBFactory, IDBKeyRange: FakeKeyRange as unknown as typeof IDBKeyRange })]
          ]
          for (const [what, store] of stores) {
            const reader = yield* startStoppable({ ...options, pullLimit: 1, maxPullPages: 1 }, transport, store)
            const events = yield* reader.client.subscribeEvents
            yield* reader.client.pull(scope)
            expectView(yield* reader.client.view(scope), `${what} reader`)
            assert.isTrue((yield* events.takeAll).pipe((all) => [...all].some((e) => e._tag === "Reset" && e.reason === "backlog")), `${what}: reset from a snapshot`)
            yield* reader.stop
            const again = yield* startStoppable(options, offline, store)
            expectView(yield* again.client.view(scope), `${what} reader, restarted`)
            yield* again.stop
          }
        }))
    }
  )

scenarios("memory", SyncStorage.layerMemory)
scenarios("sqlite", SqlStorage.layerSqlite({ filename: NodePath.join(directory, "edges.db") }))
/**
 * A storage family whose `Store.put` of the id `db-refuses` fails as a
 * database refusing a value would, after a first write: on Postgres for real
 * (it writes the id with a U+0000, below the Transaction's check: SQLSTATE
 * 22021, the transaction aborted until its savepoint is rolled back),
 * elsewhere with the `StorageError` such a refusal maps to. The path a value
 * no check foresaw would take.
 */
const refusing = (storage: Layer.Layer<SyncStorage.Services, unknown>, forReal: boolean): Layer.Layer<SyncStorage.Services, unknown> =>
  Layer.effectContext(Effect.gen(function*() {
    const services = yield* Effect.context<SyncStorage.Services>()
    const store = Context.get(services, Store.Store)
    const invalid = new StorageError({ reason: "invalid", message: "Store.put failed: the database cannot store a value (22021)" })
    return Context.add(services, Store.Store, Store.Store.of({
      ...store,
      put: (scope, entity, id, data) =>
        id === "db-refuses"
          ? Effect.zipRight(store.put(scope, entity, "half-written", data), forReal ? store.put(scope, entity, "db\u0000refuses", data) : Effect.fail(invalid))
          : store.put(scope, entity, id, data)
    }))
  })).pipe(Layer.provide(storage))

const refusals = (name: string, storage: Layer.Layer<SyncStorage.Services, unknown>) =>
  layer(layerServer({ registry }, Layer.mergeAll(storage, LivePubSub.layerMemory, Authorizer.layerAllowAll)), real)(`a value the database refuses (${name})`, (it) => {
    it.effect("inside a mutator it is that mutation's invalid_args, its writes rolled back; the request commits the rest (with and without client_id)", () =>
      Effect.gen(function*() {
        const scope = freshScope("refused")
        const withId = yield* send("push", { client_id: freshClient(), mutations: [put(1, "a", scope), put(2, "db-refuses", scope), put(3, "b", scope)] })
        ok200(withId, "push")
        const results = decodeAs(Protocol.PushResponse, withId.json).results
        assert.deepStrictEqual(results.map((r) => (r.ok ? "ok" : r.error?.code)), ["ok", "invalid_args", "ok"])
        const plain = yield* send("push", { mutations: [put(1, "db-refuses", scope), put(2, "c", scope)] })
        ok200(plain, "plain push")
        assert.deepStrictEqual(decodeAs(Protocol.PushResponse, plain.json).results.map((r) => (r.ok ? "ok" : r.error?.code)), ["invalid_args", "ok"])
        const snap = decodeAs(Protocol.SnapshotResponse, (yield* send("snapshot", { scope })).json)
        assert.sameMembers(Object.keys(snap.data["note"] ?? {}), ["a", "b", "c"])
      }))
  })

refusals("memory", refusing(SyncStorage.layerMemory, false))

describePostgres("on Postgres", ({ storage }) => {
  scenarios("postgres", storage())

  refusals("postgres", refusing(storage(), true))

  layer(storage(), real)("the database's own refusal", (it) => {
    it.effect("Postgres refuses U+0000 in a text key: a StorageError with reason invalid (what the engine maps to invalid_args), not unavailable", () =>
      Effect.gen(function*() {
        const store = yield* Store.Store
        const error = yield* Effect.flip(store.put(freshScope("raw"), "note", "a\u0000b", { body: 1 }))
        assert.strictEqual(error.reason, "invalid")
      }))
  })
})
