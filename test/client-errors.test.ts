/**
 * The Promise API (`MizuSync`, `MizuLive`) rejects with the `MizuError`
 * classes, never with an Effect `FiberFailure`: `code`, `reason`, `message`
 * and the Effect API's tagged error as `cause`. Against a real server with a
 * token table where the failure comes from the server (401, a refused
 * SUBSCRIBE), with no server where it is local.
 */
import { assert, describe, it, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { LivePubSub, SyncStorage, TokenAuthorizer } from "mizu-sync-live"
import {
  ClientStorage,
  ClientStorageError,
  LiveClient,
  LiveError,
  MizuError,
  MizuLive,
  MizuSync,
  type MizuSyncOptions,
  MutateError,
  Protocol,
  SyncClient,
  SyncError,
  SyncTransport
} from "mizu-sync-live/client"
import { nodeLiveOptions } from "mizu-sync-live/client/node"
import { createTodo, registry, toggleTodo } from "../examples/todo/mutations.js"
import { freshScope } from "./suites/util.js"
import { unplugged } from "./support/clientHarness.js"
import { BaseUrl, layerServer } from "./support/TestServer.js"

/** The rejection of a Promise (the test fails if it resolves). */
const rejection = (promise: () => Promise<unknown>) =>
  Effect.flatMap(
    Effect.promise(() => promise().then(() => undefined, (e: unknown) => ({ e }))),
    (r) => r === undefined ? Effect.dieMessage("expected a rejection") : Effect.succeed(r.e)
  )

/** A `MizuSync` of the todo registry, in memory, closed with the test's scope. */
const open = (options: Omit<MizuSyncOptions, "registry">) =>
  Effect.acquireRelease(
    Effect.promise(() => MizuSync.open({ registry, storage: "memory", retryInitial: "5 millis", retryMax: "50 millis", ...options })),
    (client) => Effect.promise(() => client.close())
  )

const offline = Layer.succeed(
  SyncTransport.SyncTransport,
  unplugged(SyncTransport.makeFetch({ baseUrl: "http://127.0.0.1:1" }), { value: true })
)

const tokens = { "token-a": ["user:a:*"] }
const deps = Layer.mergeAll(SyncStorage.layerMemory, LivePubSub.layerMemory, TokenAuthorizer.layer({ tokens }))

describe("Promise API errors", () => {
  it.scoped("mutate rejects with a MutateError: reason, message, and the Effect error as cause", () =>
    Effect.gen(function*() {
      const sync = yield* open({ transport: offline })
      const scope = freshScope("todos")
      const refused = [
        [() => sync.mutate("todo/create", { id: "", title: "x" }, { scope }), "invalid_args"],
        [() => sync.mutateUnknown("todo/nope", {}, { scope }), "unknown_mutation"],
        [() => sync.mutate(toggleTodo, { id: "ghost" }, { scope }), "rejected"], // "todo ghost not found", by the handler
        [() => sync.mutate(createTodo, { id: "a", title: "a" }, { scope: "has space" }), "invalid_scope"]
      ] as const
      for (const [call, reason] of refused) {
        const e = yield* rejection(call)
        assert.instanceOf(e, MutateError)
        assert.instanceOf(e, MizuError)
        assert.instanceOf(e, Error)
        assert.strictEqual(e.name, "MutateError")
        assert.strictEqual(e.code, "mutate")
        assert.strictEqual(e.reason, reason)
        assert.instanceOf(e.cause, SyncClient.MutateError)
        assert.strictEqual(e.cause.reason, reason)
        assert.strictEqual(e.message, e.cause.message)
      }
      assert.deepStrictEqual(sync.pending, [])
    }))

  it.scoped("a push that reaches no server rejects with a SyncError (network)", () =>
    Effect.gen(function*() {
      const sync = yield* open({ baseUrl: "http://127.0.0.1:1", timeout: "2 seconds" })
      const scope = freshScope("todos")
      yield* Effect.promise(() => sync.mutate(createTodo, { id: "a", title: "a" }, { scope }))
      const e = yield* rejection(() => sync.push())
      assert.instanceOf(e, SyncError)
      assert.strictEqual(e.code, "sync")
      assert.strictEqual(e.reason, "network")
      assert.instanceOf(e.cause, SyncTransport.TransportError)
      // the mutation stays queued
      assert.strictEqual(sync.pending.length, 1)
    }))

  it.scoped("open rejects with a ClientStorageError when the storage cannot be opened", () =>
    Effect.gen(function*() {
      const failure = new ClientStorage.ClientStorageError({ reason: "unavailable", message: "no disk here" })
      const storage = Layer.fail(failure)
      const e = yield* rejection(() => MizuSync.open({ registry, storage, transport: offline }))
      assert.instanceOf(e, ClientStorageError)
      assert.strictEqual(e.code, "storage")
      assert.strictEqual(e.reason, "unavailable")
      assert.strictEqual(e.message, "no disk here")
      assert.strictEqual(e.cause, failure)
    }))

  it.scoped("a defect rejects with a MizuError (defect) carrying it; a closed client rejects with `closed`", () =>
    Effect.gen(function*() {
      const bug = new Error("a bug in the transport")
      const transport = Layer.succeed(SyncTransport.SyncTransport, SyncTransport.SyncTransport.of({ ...SyncTransport.makeFetch({ baseUrl: "" }), push: () => Effect.die(bug) }))
      const sync = yield* open({ transport })
      yield* Effect.promise(() => sync.mutate(createTodo, { id: "a", title: "a" }, { scope: freshScope("todos") }))
      const e = yield* rejection(() => sync.push())
      assert.instanceOf(e, MizuError)
      assert.notInstanceOf(e, SyncError)
      assert.strictEqual(e.code, "defect")
      assert.strictEqual(e.cause, bug)
      assert.include(e.message, "a bug in the transport")
      yield* Effect.promise(() => sync.close())
      const closed = yield* rejection(() => sync.mutate(createTodo, { id: "b", title: "b" }))
      assert.instanceOf(closed, MizuError)
      assert.strictEqual(closed.code, "closed")
    }))

  layer(layerServer({ registry, live: { drainPeriod: "10 millis" } }, deps), { timeout: 60_000, excludeTestServices: true })("against a server", (it) => {
    it.scoped("the server's refusal rejects sync and pull with a SyncError: its code as reason, the HTTP status, the ProtocolError as cause", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const scope = freshScope("user:a:todos")
        const stranger = yield* open({ baseUrl: base, token: "not-a-token" })
        yield* Effect.promise(() => stranger.mutate(createTodo, { id: "a", title: "a" }, { scope }))
        for (const call of [() => stranger.sync(), () => stranger.pull(scope)]) {
          const e = yield* rejection(call)
          assert.instanceOf(e, SyncError)
          assert.strictEqual(e.reason, "unauthorized")
          assert.strictEqual(e.status, 401)
          assert.instanceOf(e.cause, Protocol.ProtocolError)
          assert.strictEqual(e.cause.code, "unauthorized")
        }
        // with the token, the same client state syncs
        const member = yield* open({ baseUrl: base, token: "token-a" })
        yield* Effect.promise(() => member.mutate(createTodo, { id: "b", title: "b" }, { scope }))
        yield* Effect.promise(() => member.sync())
        assert.deepStrictEqual(member.pending, [])
      }))

    it.scoped("MizuLive rejects with a LiveError: invalid locally, refused by the server", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const live = new MizuLive(nodeLiveOptions({ endpoint: LiveClient.websocketUrl(base), token: "token-a", reconnectInitial: "10 millis" }))
        yield* Effect.addFinalizer(() => Effect.promise(() => live.close()))
        const invalid = yield* rejection(() => live.subscribe("has space"))
        assert.instanceOf(invalid, LiveError)
        assert.strictEqual(invalid.code, "live")
        assert.strictEqual(invalid.reason, "invalid")
        assert.instanceOf(invalid.cause, LiveClient.LiveError)
        const refused = yield* rejection(() => live.subscribe("user:b:todos"))
        assert.instanceOf(refused, LiveError)
        assert.strictEqual(refused.reason, "refused")
        assert.include(refused.message, "forbidden")
        const mine = freshScope("user:a:todos")
        assert.deepStrictEqual(yield* Effect.promise(() => live.subscribe(mine)), { [mine]: 0 })
        yield* Effect.promise(() => live.close())
        const closed = yield* rejection(() => live.subscribe(mine))
        assert.instanceOf(closed, MizuError)
        assert.strictEqual(closed.code, "closed")
      }))
  })
})
