/**
 * The client storage conformance suite, run on every layer: memory (over a
 * `Ref`, so a restart is a rebuild), the Node file storage, and IndexedDB
 * (on an in-memory fake). Random batches are checked against the reference
 * `ClientStorage.applyBatch` after a restart; then what is specific to each:
 * torn journal lines, compaction, an aborted IndexedDB transaction.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Ref from "effect/Ref"
import * as Scope from "effect/Scope"
import { Protocol } from "mizu-sync-live"
import { ClientStorage, IndexedDbStorage, type LocalView } from "mizu-sync-live/client"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { FileStorage } from "mizu-sync-live/client/node"
import { prng } from "./support/clientHarness.js"
import { FakeIndexedDb, FakeKeyRange } from "./support/FakeIndexedDb.js"

type StorageLayer = Layer.Layer<ClientStorage.ClientStorage, ClientStorage.ClientStorageError>

/** Open the storage, run `f` with it, close it (a process that starts and stops). */
const withStorage = <A, E>(layer: StorageLayer, f: (s: ClientStorage.ClientStorage["Type"]) => Effect.Effect<A, E>) =>
  Effect.scoped(Effect.flatMap(Layer.build(layer), (ctx) => f(Context.get(ctx, ClientStorage.ClientStorage))))

const tempDir = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "mizu-client-storage-"))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

/** Names that are keys of every plain object (or set its prototype): scopes, entities and ids like any other. */
const objectNames = ["__proto__", "constructor", "prototype", "toString", "hasOwnProperty"]
const entities = ["todo", "note", ...objectNames]
const ids = ["1", "2", "3", "x y", ...objectNames]

/** A random batch over a few scopes, entities, ids and mutation ids. */
const randomBatch = (random: () => number, nextId: { value: number }): ClientStorage.Batch => {
  const pick = <A>(xs: ReadonlyArray<A>): A => xs[Math.floor(random() * xs.length)] as A
  const scopes: Array<ClientStorage.ScopeWrite> = []
  const n = Math.floor(random() * 3)
  for (let i = 0; i < n; i++) {
    scopes.push({
      scope: pick(["s:a", "s:b", "user/1@x", "__proto__", "constructor"]),
      cursor: Math.floor(random() * 100),
      reset: random() < 0.15,
      put: Array.from({ length: Math.floor(random() * 4) }, () => [pick(entities), pick(ids), { v: random(), nested: [1, { deep: "é" }] }] as const),
      delete: Array.from({ length: Math.floor(random() * 2) }, () => [pick(entities), pick(ids)] as const)
    })
  }
  const mutation = (): LocalView.PendingMutation => ({ id: nextId.value++, name: pick(["todo/create", "todo/toggle"]), scope: pick(["s:a", "s:b"]), args: { id: "1", title: "t" } })
  const roll = random()
  return {
    ...(random() < 0.5 ? { meta: { clientId: "c-1", nextId: nextId.value } } : {}),
    scopes,
    ...(roll < 0.1 ? { pendingReplace: [mutation(), mutation()] } : {}),
    ...(roll >= 0.1 && roll < 0.5 ? { pendingDelete: [Math.floor(random() * nextId.value)] } : {}),
    ...(roll >= 0.3 ? { pendingPut: [mutation()] } : {})
  }
}

/** The conformance suite: `open()` gives a layer over the same backing store each time it is called. */
const suite = (name: string, open: Effect.Effect<() => StorageLayer, never, import("effect/Scope").Scope>) =>
  describe(`ClientStorage (${name})`, () => {
    it.scopedLive("a new store is empty; commits survive a restart, as applyBatch says", () =>
      Effect.gen(function*() {
        const layer = yield* open
        assert.deepStrictEqual(yield* withStorage(layer(), (s) => s.load), ClientStorage.emptyState)
        const random = prng(42)
        const nextId = { value: 1 }
        let expected = ClientStorage.emptyState
        for (let round = 0; round < 5; round++) {
          yield* withStorage(layer(), (s) =>
            Effect.gen(function*() {
              assert.deepStrictEqual(yield* s.load, expected, `after restart ${round}`)
              for (let i = 0; i < 20; i++) {
                const batch = randomBatch(random, nextId)
                yield* s.commit(batch)
                expected = ClientStorage.applyBatch(expected, batch)
              }
              assert.deepStrictEqual(yield* s.load, expected)
            }))
        }
        assert.deepStrictEqual(yield* withStorage(layer(), (s) => s.load), expected)
      }))

    it.scopedLive("scopes, entities and ids named __proto__, constructor, prototype … are kept as they are, across restarts", () =>
      Effect.gen(function*() {
        const layer = yield* open
        const row = (id: string) => ({ id, note: `row ${id}` })
        yield* withStorage(layer(), (s) =>
          Effect.gen(function*() {
            yield* s.commit({
              scopes: [
                { scope: "s", cursor: 5, put: objectNames.map((id) => ["todo", id, row(id)] as const) },
                { scope: "__proto__", cursor: 2, put: [["__proto__", "__proto__", row("p")], ["constructor", "constructor", row("c")]] },
                { scope: "constructor", cursor: 1, put: [["todo", "prototype", row("x")]] }
              ]
            })
          }))
        const loaded = yield* withStorage(layer(), (s) => s.load)
        // an object literal with a "__proto__" key would set the prototype: the expected values are parsed
        const expected: ClientStorage.StoredState["scopes"] = JSON.parse(JSON.stringify({
          s: { cursor: 5, rows: { todo: Object.fromEntries(objectNames.map((id) => [id, row(id)])) } },
          constructor: { cursor: 1, rows: { todo: Object.fromEntries([["prototype", row("x")]]) } }
        }))
        Object.defineProperty(expected, "__proto__", {
          value: JSON.parse(`{"cursor":2,"rows":{"__proto__":{"__proto__":${JSON.stringify(row("p"))}},"constructor":{"constructor":${JSON.stringify(row("c"))}}}}`),
          enumerable: true,
          writable: true,
          configurable: true
        })
        assert.deepStrictEqual(loaded.scopes, expected)
        assert.sameMembers(Object.keys(loaded.scopes), ["s", "__proto__", "constructor"])
        assert.sameMembers(Object.keys(Protocol.getOwn(loaded.scopes, "s")?.rows["todo"] ?? {}), objectNames)
        assert.strictEqual(Object.getPrototypeOf(loaded.scopes), Object.prototype)
        assert.strictEqual(Object.getPrototypeOf(Protocol.getOwn(loaded.scopes, "s")?.rows["todo"]), Object.prototype)

        // delete some of them; a reset of "__proto__" drops its rows only
        yield* withStorage(layer(), (s) =>
          s.commit({
            scopes: [
              { scope: "s", cursor: 6, delete: [["todo", "__proto__"], ["todo", "constructor"]] },
              { scope: "__proto__", cursor: 3, reset: true, put: [["todo", "toString", row("t")]] }
            ]
          }))
        const after = yield* withStorage(layer(), (s) => s.load)
        assert.sameMembers(Object.keys(Protocol.getOwn(after.scopes, "s")?.rows["todo"] ?? {}), ["prototype", "toString", "hasOwnProperty"])
        assert.deepStrictEqual(Protocol.getOwn(after.scopes, "__proto__"), { cursor: 3, rows: { todo: { toString: row("t") } } })
        assert.strictEqual(Protocol.getOwn(after.scopes, "constructor")?.cursor, 1)
        // nothing leaked onto shared prototypes
        assert.isUndefined((Object.prototype as Record<string, unknown>)["note"])
        assert.isFalse(Object.prototype.hasOwnProperty.call(Object, "todo"))
      }))

    it.scopedLive("a scope reset drops its rows only; pending mutations stay ordered by id", () =>
      Effect.gen(function*() {
        const layer = yield* open
        const m = (id: number): LocalView.PendingMutation => ({ id, name: "n", scope: "a", args: null })
        yield* withStorage(layer(), (s) =>
          Effect.gen(function*() {
            yield* s.commit({ scopes: [{ scope: "a", cursor: 3, put: [["todo", "1", 1], ["todo", "2", 2]] }, { scope: "a:b", cursor: 1, put: [["todo", "1", "other"]] }] })
            yield* s.commit({ pendingPut: [m(3), m(1), m(2)] })
            yield* s.commit({ scopes: [{ scope: "a", cursor: 7, reset: true, put: [["note", "9", true]] }], pendingDelete: [2] })
          }))
        const state = yield* withStorage(layer(), (s) => s.load)
        assert.deepStrictEqual(state.scopes, {
          a: { cursor: 7, rows: { note: { "9": true } } },
          "a:b": { cursor: 1, rows: { todo: { "1": "other" } } }
        })
        assert.deepStrictEqual(state.pending.map((p) => p.id), [1, 3])
      }))
  })

suite("memory", Effect.map(Ref.make(ClientStorage.emptyState), (ref) => () => ClientStorage.layerMemoryRef(ref)))
suite("file", Effect.map(tempDir, (dir) => () => FileStorage.layer({ directory: dir, compactAfter: 7 })))
suite("IndexedDB (fake)", Effect.sync(() => {
  const factory = new FakeIndexedDb()
  return () => IndexedDbStorage.layer({ name: "test", indexedDB: factory as unknown as IDBFactory, IDBKeyRange: FakeKeyRange as unknown as typeof IDBKeyRange })
}))

describe("FileStorage", () => {
  it.scopedLive("a torn last line (a crash mid-write) is ignored and cut off; later commits are kept", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const layer = FileStorage.layer({ directory: dir })
      yield* withStorage(layer, (s) => s.commit({ meta: { clientId: "c", nextId: 2 }, pendingPut: [{ id: 1, name: "n", scope: "a", args: 1 }] }))
      Fs.appendFileSync(Path.join(dir, "journal.jsonl"), "{\"seq\":2,\"batch\":{\"pendingPut\":[{\"id\":2")
      const state = yield* withStorage(layer, (s) =>
        Effect.gen(function*() {
          const loaded = yield* s.load
          yield* s.commit({ pendingPut: [{ id: 2, name: "n", scope: "a", args: 2 }] })
          return loaded
        }))
      assert.deepStrictEqual(state.pending.map((m) => m.id), [1])
      assert.deepStrictEqual((yield* withStorage(layer, (s) => s.load)).pending.map((m) => m.id), [1, 2])
    }))

  it.scopedLive("compaction writes the state file and empties the journal; a crash before the truncation does not apply a batch twice", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const layer = FileStorage.layer({ directory: dir, compactAfter: 3 })
      const batches: Array<ClientStorage.Batch> = [1, 2, 3, 4].map((id) => ({ pendingPut: [{ id, name: "n", scope: "a", args: id }], meta: { clientId: "c", nextId: id + 1 } }))
      yield* withStorage(layer, (s) => Effect.forEach(batches.slice(0, 3), s.commit))
      assert.isTrue(Fs.existsSync(Path.join(dir, "state.json")))
      assert.strictEqual(Fs.readFileSync(Path.join(dir, "journal.jsonl"), "utf8"), "")
      // the crash: the journal still holds lines the state file already includes
      const journal = batches.map((batch, i) => JSON.stringify({ seq: i + 1, batch })).join("\n") + "\n"
      Fs.writeFileSync(Path.join(dir, "journal.jsonl"), journal)
      const state = yield* withStorage(layer, (s) => s.load)
      assert.deepStrictEqual(state.pending.map((m) => m.id), [1, 2, 3, 4])
      assert.strictEqual(state.nextId, 5)
    }))

  it.scopedLive("a state file that is not a client state fails to open with corrupt", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      Fs.writeFileSync(Path.join(dir, "state.json"), "{\"hello\":1}")
      const error = yield* Effect.flip(withStorage(FileStorage.layer({ directory: dir }), (s) => s.load))
      assert.strictEqual(error.reason, "corrupt")
    }))
})

describe("IndexedDbStorage", () => {
  it.scopedLive("an aborted transaction fails the commit and changes nothing", () =>
    Effect.gen(function*() {
      const factory = new FakeIndexedDb()
      const layer = IndexedDbStorage.layer({ name: "db", indexedDB: factory as unknown as IDBFactory, IDBKeyRange: FakeKeyRange as unknown as typeof IDBKeyRange })
      yield* withStorage(layer, (s) =>
        Effect.gen(function*() {
          yield* s.commit({ meta: { clientId: "c", nextId: 2 }, scopes: [{ scope: "a", cursor: 1, put: [["todo", "1", 1]] }] })
          factory.failNextCommit("db")
          const error = yield* Effect.flip(s.commit({ meta: { clientId: "c", nextId: 3 }, scopes: [{ scope: "a", cursor: 2, reset: true }] }))
          assert.strictEqual(error._tag, "ClientStorageError")
        }))
      const state = yield* withStorage(layer, (s) => s.load)
      assert.strictEqual(state.nextId, 2)
      assert.deepStrictEqual(state.scopes, { a: { cursor: 1, rows: { todo: { "1": 1 } } } })
    }))

  it.scopedLive("two tabs never share a store: the second takes the next free slot; a later tab takes over a free one", () =>
    Effect.gen(function*() {
      const factory = new FakeIndexedDb()
      const held = new Set<string>()
      // the Web Locks API, as far as the storage uses it
      const locks = {
        request: (name: string, options: { ifAvailable?: boolean }, callback: (lock: { name: string } | null) => unknown) => {
          if (held.has(name) && options.ifAvailable === true) return Promise.resolve(callback(null))
          held.add(name)
          return Promise.resolve(callback({ name })).finally(() => held.delete(name))
        }
      } as unknown as Pick<LockManager, "request">
      const layer = IndexedDbStorage.layer({ name: "todos", indexedDB: factory as unknown as IDBFactory, IDBKeyRange: FakeKeyRange as unknown as typeof IDBKeyRange, locks })
      const open = Effect.gen(function*() {
        const scope = yield* Scope.make()
        const storage = Context.get(yield* Layer.buildWithScope(layer, scope), ClientStorage.ClientStorage)
        return { storage, close: Scope.close(scope, Exit.void) }
      })
      const tabA = yield* open
      yield* tabA.storage.commit({ meta: { clientId: "a", nextId: 2 }, pendingPut: [{ id: 1, name: "n", scope: "s", args: null }] })
      const tabB = yield* open
      assert.deepStrictEqual(yield* tabB.storage.load, ClientStorage.emptyState)
      yield* tabB.storage.commit({ meta: { clientId: "b", nextId: 1 } })
      assert.deepStrictEqual([...held].sort(), ["mizu-sync:todos", "mizu-sync:todos#1"])
      yield* tabA.close
      yield* Effect.sleep("10 millis") // locks are released asynchronously, as in browsers
      const tabC = yield* open
      const took = yield* tabC.storage.load
      assert.strictEqual(took.clientId, "a")
      assert.deepStrictEqual(took.pending.map((m) => m.id), [1])
      yield* tabB.close
      yield* tabC.close
      yield* Effect.sleep("10 millis")
      assert.deepStrictEqual([...held], [])
    }))

  it.scopedLive("without IndexedDB the layer fails with a typed error", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Layer.build(IndexedDbStorage.layer({})))
      assert.strictEqual(error._tag, "ClientStorageError")
    }))
})
