/**
 * The push policy against a real server (issue #15 items 1 and 3): one
 * mutation the server refuses as a request (413, 403, 401, a handler that
 * dies: 500) never wedges the queue. Each test checks what happens to the
 * bad mutation (rejected, or reported stuck and discarded) and that a later
 * good one reaches the server.
 */
import { assert, describe, it, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Schema from "effect/Schema"
import { Authorizer, Entity, LivePubSub, Mutation, SyncStorage, TokenAuthorizer } from "mizu-sync-live"
import { DiscardError, MizuSync, Protocol, PushPolicy, SyncClient, SyncTransport } from "mizu-sync-live/client"
import { FileStorage } from "mizu-sync-live/client/node"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { freshScope } from "./suites/util.js"
import { eventuallyTrue, startClient, startStoppable, takeUntil, unplugged } from "./support/clientHarness.js"
import { BaseUrl, layerServer } from "./support/TestServer.js"

// ---- a registry with big rows, a mutation the server's handler dies on, and one it rejects -----------------
const Blob = Schema.Struct({ id: Schema.String, data: Schema.String })
const BlobEntity = Entity.make("blob", Blob)
const BlobArgs = Schema.Struct({ id: Schema.String, data: Schema.String })
const IdArgs = Schema.Struct({ id: Schema.String })

const putBlob = Mutation.make("blob/put", { args: BlobArgs, handler: ({ data, id }, tx) => tx.put(BlobEntity, id, { id, data }) })
/** On the server, a handler bug: it throws every time (500). Locally it does nothing. */
const boomServer = Mutation.make("blob/boom", {
  args: IdArgs,
  handler: () =>
    Effect.sync(() => {
      throw new Error("a bug in the handler")
    })
})
const boomClient = Mutation.make("blob/boom", { args: IdArgs, handler: () => Effect.void })
/** On the server, a business rule that refuses it; locally it writes a row (the optimistic effect to roll back). */
const touchServer = Mutation.make("blob/touch", { args: IdArgs, handler: ({ id }) => Mutation.reject(`blob ${id} is locked`) })
const touchClient = Mutation.make("blob/touch", { args: IdArgs, handler: ({ id }, tx) => tx.put(BlobEntity, id, { id, data: "touched" }) })

const serverRegistry = Mutation.registry({ entities: [BlobEntity], mutations: [putBlob, boomServer, touchServer] })
const clientRegistry = Mutation.registry({ entities: [BlobEntity], mutations: [putBlob, boomClient, touchClient] })

const fast: SyncClient.Options = { registry: clientRegistry, retryInitial: "5 millis", retryMax: "50 millis" }

const fetchTo = (baseUrl: string, options: Partial<SyncTransport.FetchOptions> = {}) => SyncTransport.makeFetch({ baseUrl, ...options })

/** The server's rows of a scope (through an allowed token when given). */
const serverRows = (baseUrl: string, scope: string, token?: string) =>
  Effect.map(
    Effect.orDie(fetchTo(baseUrl, token === undefined ? {} : { token }).snapshot({ scope })),
    (s) => Object.keys(s.data["blob"] ?? {}).sort()
  )

/** A transport that records the HTTP status (or reason) of every push that failed. */
const recording = (inner: SyncTransport.SyncTransport["Type"]) => {
  const failures: Array<number | string> = []
  const pushes: Array<number> = []
  const transport = SyncTransport.SyncTransport.of({
    ...inner,
    push: (r) =>
      inner.push(r).pipe(
        Effect.tap(() => Effect.sync(() => pushes.push(r.mutations.length))),
        Effect.tapError((e) => Effect.sync(() => failures.push(e._tag === "ProtocolError" ? e.status : e.status ?? e.reason)))
      )
  })
  return { transport, failures, pushes }
}

const isRejected = (e: SyncClient.SyncEvent): e is Extract<SyncClient.SyncEvent, { _tag: "Rejected" }> => e._tag === "Rejected"
const isStuck = (e: SyncClient.SyncEvent): e is Extract<SyncClient.SyncEvent, { _tag: "Stuck" }> => e._tag === "Stuck"

const kib = (n: number, fill = "x") => fill.repeat(n * 1024)

describe("PushPolicy", () => {
  const m = (id: number, scope: string, name = "blob/put", args: unknown = { id: String(id), data: "x" }): SyncClient.PendingMutation => ({ id, name, scope, args })

  it("cuts requests by count and bytes, the head always in; placeholders ride in the next real mutation's scope, never at the tail", () => {
    const queue = [PushPolicy.placeholder(m(1, "forbidden")), m(2, "a"), PushPolicy.placeholder(m(3, "b")), m(4, "c"), PushPolicy.placeholder(m(5, "d"))]
    const all = PushPolicy.nextBatch(queue, { count: 100, bytes: 1 << 20 }, "c1")
    assert.deepStrictEqual(all.sent.map((x) => x.wire), [
      { id: 1, name: PushPolicy.DISCARDED, scope: "a" },
      { id: 2, name: "blob/put", scope: "a", args: { id: "2", data: "x" } },
      { id: 3, name: PushPolicy.DISCARDED, scope: "c" },
      { id: 4, name: "blob/put", scope: "c", args: { id: "4", data: "x" } }
    ])
    // the byte count is the body's, exactly
    const body = JSON.stringify({ protocol: Protocol.PROTOCOL_VERSION, client_id: "c1", mutations: all.sent.map((x) => x.wire) })
    assert.strictEqual(all.bytes, new TextEncoder().encode(body).length)
    assert.strictEqual(PushPolicy.nextBatch(queue, { count: 2, bytes: 1 << 20 }, "c1").sent.length, 2)
    const big = [m(1, "a", "blob/put", { data: "é".repeat(1000) }), m(2, "a")]
    assert.strictEqual(PushPolicy.nextBatch(big, { count: 100, bytes: 10 }, "c1").sent.length, 1)
    assert.deepStrictEqual(PushPolicy.nextBatch([PushPolicy.placeholder(m(1, "a"))], { count: 100, bytes: 1 << 20 }, "c1").sent, [])
  })

  it("classifies failed requests: 413 too large; 400/401/403/404 refused; the rest retried", () => {
    const protocol = (code: Protocol.ErrorCode) => new Protocol.ProtocolError({ code, message: code })
    const http = (status: number) => new SyncTransport.TransportError({ reason: "http", status, message: `HTTP ${status}` })
    assert.strictEqual(PushPolicy.classify(protocol("payload_too_large"))._tag, "TooLarge")
    assert.strictEqual(PushPolicy.classify(http(413))._tag, "TooLarge")
    for (const [error, code] of [[protocol("invalid_request"), "invalid_request"], [protocol("unauthorized"), "unauthorized"], [protocol("forbidden"), "forbidden"], [http(404), "not_found"]] as const) {
      assert.deepStrictEqual(PushPolicy.classify(error), { _tag: "Refused", code, message: error.message })
    }
    for (const error of [protocol("version_not_supported"), protocol("internal"), protocol("unavailable"), http(502), http(429), new SyncTransport.TransportError({ reason: "network", message: "down" })]) {
      assert.strictEqual(PushPolicy.classify(error)._tag, "Retry")
    }
  })
})

describe("push policy", () => {
  layer(layerServer({ registry: serverRegistry, live: { drainPeriod: "10 millis" } }, Layer.mergeAll(SyncStorage.layerMemory, LivePubSub.layerMemory, Authorizer.layerAllowAll)), {
    timeout: 60_000,
    excludeTestServices: true
  })("against a server with the default 1 MiB body limit", (it) => {
    it.scoped("100 mutations of 12 KiB are cut by bytes into requests under maxPushBytes: no 413, all of them reach the server", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const scope = freshScope("blobs")
        const rec = recording(fetchTo(base))
        const client = yield* startClient({ ...fast, scopes: [scope] }, rec.transport)
        for (let i = 0; i < 100; i++) yield* client.mutate(putBlob, { id: `b${String(i).padStart(3, "0")}`, data: kib(12) }, { scope })
        yield* client.mutate(putBlob, { id: "later", data: "good" }, { scope })
        yield* client.sync
        const rows = yield* serverRows(base, scope)
        assert.strictEqual(rows.length, 101)
        assert.isTrue(rows.includes("later"))
        assert.deepStrictEqual(rec.failures, [])
        assert.isAtLeast(rec.pushes.length, 2)
        assert.strictEqual(rec.pushes.reduce((a, b) => a + b, 0), 101)
      }))

    it.scoped("a client whose maxPushBytes is above the server's limit learns from the 413s: it splits the batch and everything arrives", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const scope = freshScope("blobs")
        const rec = recording(fetchTo(base))
        const client = yield* startClient({ ...fast, scopes: [scope], maxPushBytes: 8 * 1024 * 1024 }, rec.transport)
        const events = yield* client.subscribeEvents
        for (let i = 0; i < 100; i++) yield* client.mutate(putBlob, { id: `b${String(i).padStart(3, "0")}`, data: kib(12) }, { scope })
        yield* client.mutate(putBlob, { id: "later", data: "good" }, { scope })
        yield* client.sync
        assert.strictEqual((yield* serverRows(base, scope)).length, 101)
        assert.include(rec.failures, 413)
        assert.isFalse([...(yield* Queue.takeAll(events))].some((e) => e._tag === "Rejected"))
        assert.deepStrictEqual(yield* client.pending, [])
      }))

    it.scoped("a 1.1 MiB mutation: refused by mutate (too_large) within maxPushBytes; past it, rejected on the server's 413 as too_large; the next one goes through", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const scope = freshScope("blobs")
        const big = kib(1126)
        // default budget: refused at once, nothing queued, no id used
        const strict = yield* startClient({ ...fast, scopes: [scope] }, fetchTo(base))
        const refused = yield* Effect.flip(strict.mutate(putBlob, { id: "big", data: big }, { scope }))
        assert.strictEqual(refused.reason, "too_large")
        assert.deepStrictEqual(yield* strict.pending, [])
        assert.strictEqual((yield* strict.mutate(putBlob, { id: "small", data: "ok" }, { scope })).id, 1)
        yield* strict.sync
        assert.deepStrictEqual(yield* serverRows(base, scope), ["small"])

        // a budget above the server's limit: queued, sent, refused by the server, dropped
        const other = freshScope("blobs")
        const rec = recording(fetchTo(base))
        const lax = yield* startClient({ ...fast, scopes: [other], maxPushBytes: 8 * 1024 * 1024 }, rec.transport)
        const events = yield* lax.subscribeEvents
        const m = yield* lax.mutate(putBlob, { id: "big", data: big }, { scope: other })
        assert.isTrue(Option.isSome(yield* lax.get(other, BlobEntity, "big")))
        yield* lax.mutate(putBlob, { id: "after", data: "good" }, { scope: other })
        yield* lax.sync
        const rejected = yield* takeUntil(events, isRejected)
        assert.strictEqual(rejected.code, "too_large")
        assert.strictEqual(rejected.mutation.id, m.id)
        assert.deepStrictEqual(yield* serverRows(base, other), ["after"])
        assert.isTrue(Option.isNone(yield* lax.get(other, BlobEntity, "big")))
        assert.deepStrictEqual(yield* lax.view(other), { blob: { after: { id: "after", data: "good" } } })
        assert.deepStrictEqual(rec.failures.filter((f) => f !== 413), [])
        // ids go on without a gap the server would refuse
        assert.strictEqual((yield* lax.mutate(putBlob, { id: "third", data: "3" }, { scope: other })).id, 3)
        yield* lax.sync
        assert.deepStrictEqual(yield* serverRows(base, other), ["after", "third"])
      }))

    it.scoped("a handler that dies on the server (500 every time): stuck after `stuckAfter` attempts at that mutation; discard lets the next one through", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const scope = freshScope("blobs")
        const rec = recording(fetchTo(base))
        const client = yield* startClient({ ...fast, scopes: [scope], stuckAfter: 3 }, rec.transport)
        const events = yield* client.subscribeEvents
        const first = yield* client.mutate(putBlob, { id: "before", data: "1" }, { scope })
        const bad = yield* client.mutate(boomClient, { id: "x" }, { scope })
        yield* client.mutate(putBlob, { id: "after", data: "2" }, { scope })
        const stuck = yield* takeUntil(events, isStuck)
        assert.deepStrictEqual(stuck.mutation, bad)
        assert.strictEqual(stuck.attempts, 3)
        assert.strictEqual(stuck.error._tag === "ProtocolError" ? stuck.error.code : "", "internal")
        const status = yield* client.status
        assert.deepStrictEqual(status.stuck?.mutation, bad)
        // what came before it went through (the batch was halved down to it); nothing after it did
        assert.deepStrictEqual(yield* serverRows(base, scope), ["before"])
        assert.isAbove(first.id, 0)
        assert.include(rec.failures, 500)

        const dropped = yield* client.discard(bad.id)
        assert.deepStrictEqual(dropped, bad)
        assert.deepStrictEqual((yield* client.pending).map((m) => m.id).includes(bad.id), false)
        yield* eventuallyTrue("the later mutation reached the server", Effect.map(serverRows(base, scope), (r) => r.includes("after")))
        yield* eventuallyTrue("no longer stuck, nothing pending", Effect.map(client.status, (s) => s.stuck === undefined && s.pending === 0))
        // the server consumed the discarded id: the next id is accepted in order
        yield* client.mutate(putBlob, { id: "later", data: "3" }, { scope })
        yield* client.sync
        assert.deepStrictEqual(yield* serverRows(base, scope), ["after", "before", "later"])
        assert.deepStrictEqual(yield* client.view(scope), {
          blob: { after: { id: "after", data: "2" }, before: { id: "before", data: "1" }, later: { id: "later", data: "3" } }
        })
      }))

    it.scoped("a discard made offline survives a restart: its placeholder keeps the ids in order, and the later mutation reaches the server", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const scope = freshScope("blobs")
        const dir = yield* Effect.acquireRelease(
          Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "mizu-discard-"))),
          (d) => Effect.sync(() => Fs.rmSync(d, { recursive: true, force: true }))
        )
        const storage = FileStorage.layer({ directory: dir })
        const down = { value: true }
        const transport = unplugged(fetchTo(base), down)
        const first = yield* startStoppable({ ...fast, scopes: [scope] }, transport, storage)
        const a = yield* first.client.mutate(putBlob, { id: "a", data: "unwanted" }, { scope })
        yield* first.client.mutate(putBlob, { id: "b", data: "wanted" }, { scope })
        yield* first.client.discard(a.id)
        assert.deepStrictEqual((yield* first.client.pending).map((p) => p.id), [2])
        yield* first.stop
        down.value = false
        const second = yield* startStoppable({ ...fast, scopes: [scope] }, transport, storage)
        assert.deepStrictEqual((yield* second.client.pending).map((p) => p.id), [2])
        assert.deepStrictEqual(yield* second.client.view(scope), { blob: { b: { id: "b", data: "wanted" } } })
        yield* second.client.sync
        assert.deepStrictEqual(yield* serverRows(base, scope), ["b"])
        assert.strictEqual((yield* second.client.mutate(putBlob, { id: "c", data: "c" }, { scope })).id, 3)
        yield* second.client.sync
        assert.deepStrictEqual(yield* serverRows(base, scope), ["b", "c"])
        yield* second.stop
      }))

    it.scoped("discard refuses what it cannot drop: an unknown id, one the server already applied", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const scope = freshScope("blobs")
        const noPulls = SyncTransport.SyncTransport.of({
          ...fetchTo(base),
          pull: () => Effect.fail(new SyncTransport.TransportError({ reason: "network", message: "held" })),
          snapshot: () => Effect.fail(new SyncTransport.TransportError({ reason: "network", message: "held" }))
        })
        const client = yield* startClient({ ...fast, scopes: [scope] }, noPulls)
        assert.strictEqual((yield* Effect.flip(client.discard(42))).reason, "not_pending")
        const m = yield* client.mutate(putBlob, { id: "a", data: "a" }, { scope })
        yield* client.push
        // applied by the server, not yet confirmed by a pull
        assert.deepStrictEqual((yield* client.pending).map((p) => p.id), [m.id])
        assert.strictEqual((yield* Effect.flip(client.discard(m.id))).reason, "accepted")
      }))

    it.scoped("a duplicate whose answer carries the remembered rejection ({ok: false, duplicate: true, error}) is rejected and rolled back, not dropped silently", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const scope = freshScope("blobs")
        const real = fetchTo(base)
        // the first answer with a rejection is lost; the retry's duplicate answer carries that rejection (the server's answer to come)
        const remembered = new Map<number, { code: "rejected" | "unknown_mutation" | "invalid_args"; message: string }>()
        let lost = 0
        const transport = SyncTransport.SyncTransport.of({
          ...real,
          push: (r) =>
            Effect.gen(function*() {
              const response = yield* real.push(r)
              const fresh = response.results.filter((x) => !x.ok && x.error !== undefined && x.error.code !== "out_of_order" && x.duplicate !== true)
              if (fresh.length > 0 && lost === 0) {
                lost++
                for (const x of fresh) if (x.id !== undefined && x.error !== undefined && x.error.code !== "out_of_order") remembered.set(x.id, { code: x.error.code, message: x.error.message })
                return yield* new SyncTransport.TransportError({ reason: "network", message: "the answer was lost" })
              }
              return {
                results: response.results.map((x) => {
                  const error = x.id === undefined ? undefined : remembered.get(x.id)
                  return x.duplicate === true && error !== undefined ? { id: x.id, ok: false, duplicate: true as const, cursor: x.cursor, error } : x
                })
              }
            })
        })
        const client = yield* startClient({ ...fast, scopes: [scope] }, transport)
        const events = yield* client.subscribeEvents
        const m = yield* client.mutate(touchClient, { id: "t" }, { scope })
        assert.isTrue(Option.isSome(yield* client.get(scope, BlobEntity, "t")))
        yield* client.mutate(putBlob, { id: "good", data: "g" }, { scope })
        const rejected = yield* takeUntil(events, isRejected)
        assert.deepStrictEqual(rejected, { _tag: "Rejected", mutation: m, code: "rejected", message: "blob t is locked" })
        assert.strictEqual(lost, 1)
        yield* client.sync
        assert.isTrue(Option.isNone(yield* client.get(scope, BlobEntity, "t")))
        assert.deepStrictEqual(yield* serverRows(base, scope), ["good"])
        assert.deepStrictEqual(yield* client.view(scope), { blob: { good: { id: "good", data: "g" } } })
      }))

    it.scoped("a pull that confirms a mutation whose answer was lost does not forget it: the client asks again and reports the remembered rejection", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const scope = freshScope("blobs")
        const real = fetchTo(base)
        const held = { value: false }
        let lostOnce = false
        const asked: Array<ReadonlyArray<string>> = []
        // the first answer is lost (the server rejected the mutation); pushes are then held off while the client pulls;
        // the duplicate's answer carries the rejection, as the server will remember it
        const transport = SyncTransport.SyncTransport.of({
          ...real,
          push: (r) =>
            Effect.gen(function*() {
              if (held.value) return yield* new SyncTransport.TransportError({ reason: "network", message: "held" })
              asked.push(r.mutations.map((m) => m.name))
              const response = yield* real.push(r)
              if (!lostOnce) {
                lostOnce = true
                held.value = true
                return yield* new SyncTransport.TransportError({ reason: "network", message: "the answer was lost" })
              }
              return {
                results: response.results.map((x, i) =>
                  x.duplicate === true && r.mutations[i].name === PushPolicy.PROBE
                    ? { id: x.id, ok: false, duplicate: true as const, cursor: x.cursor, error: { code: "rejected" as const, message: "blob t is locked" } }
                    : x
                )
              }
            })
        })
        const client = yield* startClient({ ...fast, scopes: [scope] }, transport)
        const events = yield* client.subscribeEvents
        const m = yield* client.mutate(touchClient, { id: "t" }, { scope })
        yield* eventuallyTrue("the first push was answered (and the answer lost)", Effect.sync(() => held.value))
        // the server's rows (and last_mutation_id) now cover it: no longer pending, its effect gone
        yield* client.pull(scope)
        assert.deepStrictEqual(yield* client.pending, [])
        assert.isTrue(Option.isNone(yield* client.get(scope, BlobEntity, "t")))
        held.value = false
        const rejected = yield* takeUntil(events, isRejected)
        assert.deepStrictEqual(rejected, { _tag: "Rejected", mutation: m, code: "rejected", message: "blob t is locked" })
        assert.deepStrictEqual(asked[asked.length - 1], [PushPolicy.PROBE])
        yield* client.mutate(putBlob, { id: "good", data: "g" }, { scope })
        yield* client.sync
        assert.deepStrictEqual(yield* serverRows(base, scope), ["good"])
        assert.deepStrictEqual(yield* client.view(scope), { blob: { good: { id: "good", data: "g" } } })
      }))

    it.scoped("the Promise API: on('stuck'), status.stuck, discard(id) (a DiscardError when there is nothing to drop)", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const scope = freshScope("blobs")
        const sync = yield* Effect.acquireRelease(
          Effect.promise(() =>
            MizuSync.open({ baseUrl: base, registry: clientRegistry, storage: "memory", scopes: [scope], stuckAfter: 2, retryInitial: "5 millis", retryMax: "50 millis" })
          ),
          (c) => Effect.promise(() => c.close())
        )
        const stuck: Array<number> = []
        sync.on("stuck", (e) => stuck.push(e.mutation.id))
        const bad = yield* Effect.promise(() => sync.mutate("blob/boom", { id: "x" }, { scope }))
        yield* Effect.promise(() => sync.mutate("blob/put", { id: "after", data: "a" }, { scope }))
        yield* eventuallyTrue("reported stuck", Effect.sync(() => stuck.includes(bad.id) && sync.status.stuck?.mutation.id === bad.id))
        yield* Effect.promise(() => sync.discard(bad.id))
        yield* eventuallyTrue("the later mutation reached the server", Effect.map(serverRows(base, scope), (r) => r.includes("after")))
        const e = yield* Effect.promise(() => sync.discard(bad.id).then(() => undefined, (error: unknown) => error))
        assert.instanceOf(e, DiscardError)
        assert.strictEqual(e instanceof DiscardError ? e.reason : "", "not_pending")
        yield* eventuallyTrue("settled", Effect.sync(() => sync.status.pending === 0 && sync.status.stuck === undefined))
      }))
  })

  const tokens = TokenAuthorizer.layer({ tokens: { t: ["ok:*"] } })
  layer(layerServer({ registry: serverRegistry, live: { drainPeriod: "10 millis" } }, Layer.mergeAll(SyncStorage.layerMemory, LivePubSub.layerMemory, tokens)), {
    timeout: 60_000,
    excludeTestServices: true
  })("against a server with a token table (t may push ok:*)", (it) => {
    it.scoped("403: a mutation to a scope the token may not push is rejected (forbidden); a later one in an allowed scope reaches the server", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const denied = freshScope("nope")
        const allowed = freshScope("ok")
        const client = yield* startClient(fast, fetchTo(base, { token: "t" }))
        const events = yield* client.subscribeEvents
        yield* client.mutate(putBlob, { id: "a", data: "first" }, { scope: allowed })
        const bad = yield* client.mutate(putBlob, { id: "x", data: "no" }, { scope: denied })
        yield* client.mutate(putBlob, { id: "b", data: "later" }, { scope: allowed })
        const rejected = yield* takeUntil(events, isRejected)
        assert.strictEqual(rejected.code, "forbidden")
        assert.deepStrictEqual(rejected.mutation, bad)
        yield* eventuallyTrue("the later mutation reached the server", Effect.map(serverRows(base, allowed, "t"), (r) => r.length === 2))
        assert.deepStrictEqual(yield* serverRows(base, allowed, "t"), ["a", "b"])
        assert.isTrue(Option.isNone(yield* client.get(denied, BlobEntity, "x")))
        yield* eventuallyTrue("nothing pending", Effect.map(client.pending, (p) => p.length === 0))
      }))

    it.scoped("401: the token is refreshed once and the push retried with it", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const scope = freshScope("ok")
        let current = "stale"
        let refreshes = 0
        const transport = fetchTo(base, {
          token: () => current,
          refreshToken: () => {
            refreshes++
            current = "t"
            return undefined
          }
        })
        const client = yield* startClient(fast, transport)
        yield* client.mutate(putBlob, { id: "a", data: "a" }, { scope })
        yield* client.push
        assert.deepStrictEqual(yield* serverRows(base, scope, "t"), ["a"])
        assert.strictEqual(refreshes, 1)
      }))

    it.scoped("401 again after the refresh counts as 403: that mutation is rejected (unauthorized); with a good token the next one goes through", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const scope = freshScope("ok")
        let current = "revoked"
        let refreshes = 0
        const transport = fetchTo(base, {
          token: Effect.sync(() => current),
          refreshToken: Effect.sync(() => {
            refreshes++
            return undefined
          })
        })
        const client = yield* startClient(fast, transport)
        const events = yield* client.subscribeEvents
        const bad = yield* client.mutate(putBlob, { id: "a", data: "a" }, { scope })
        const rejected = yield* takeUntil(events, isRejected)
        assert.strictEqual(rejected.code, "unauthorized")
        assert.deepStrictEqual(rejected.mutation, bad)
        assert.isAtLeast(refreshes, 1)
        // the user signs in again
        current = "t"
        yield* client.mutate(putBlob, { id: "b", data: "b" }, { scope })
        yield* eventuallyTrue("the later mutation reached the server", Effect.map(serverRows(base, scope, "t"), (r) => r.includes("b")))
        assert.deepStrictEqual(yield* serverRows(base, scope, "t"), ["b"])
        assert.strictEqual(PushPolicy.DISCARDED, "$mizu/discarded")
      }))
  })
})
