/**
 * Checksums and incremental repair (issue #20, parts 1-2), over a real
 * server on a free port, on memory, SQLite and Postgres storage:
 *
 * - the server's ranges cover the scope with no gap or overlap, their counts
 *   and checksums add up to the snapshot's, and every checksum is the one a
 *   client computes (`Checksum`) from the snapshot's rows;
 * - a client whose stored rows drifted (one row's data changed, one row
 *   removed, one row the server never had added) notices at the next pull
 *   that reaches the head, fetches only the rows of the ranges that differ
 *   (counted at the transport: a few dozen of 300, no snapshot), and then
 *   holds exactly the server's snapshot, with its pending mutation kept;
 * - without the repair endpoints the client resets the scope from a
 *   snapshot (`Reset` with reason `checksum`) and converges the same;
 * - hostile bodies on `/_sync/ranges` and `/_sync/rows` (parts 0 and 65, a
 *   key that is not an object, an id over 256 characters, a bad scope, not
 *   JSON) get `400 invalid_request` naming the field, and change nothing.
 */
import { assert, describe, layer } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Ref from "effect/Ref"
import { Authorizer, Checksum, LivePubSub, Protocol, SqlStorage, SyncStorage } from "mizu-sync-live"
import { ClientStorage, SyncTransport } from "mizu-sync-live/client"
import type { SyncClient } from "mizu-sync-live/client"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { registry } from "./fixtures/outage.js"
import { freshScope, range } from "./suites/util.js"
import { gated, startStoppable, syncedStore, takeUntil } from "./support/clientHarness.js"
import { describePostgres } from "./support/Postgres.js"
import { BaseUrl, decodeAs, layerServer, post } from "./support/TestServer.js"

const ROWS = 300

/** Seed `ROWS` notes into `scope` over plain HTTP, 100 per push. */
const seed = (base: string, scope: string) =>
  Effect.forEach(range(ROWS / 100), (batch) =>
    Effect.flatMap(
      post(`${base}/_sync/push`, JSON.stringify({
        mutations: range(100).map((i) => {
          const id = `n${String((batch - 1) * 100 + i).padStart(4, "0")}`
          return { name: "note/put", scope, args: { id, text: `text of ${id}` } }
        })
      })),
      (res) => Effect.sync(() => assert.strictEqual(res.status, 200, res.text))
    ), { discard: true })

const snapshotOf = (base: string, scope: string) =>
  Effect.map(post(`${base}/_sync/snapshot`, JSON.stringify({ scope })), (res) => decodeAs(Protocol.SnapshotResponse, res.json))

/** What went over the wire: requests per endpoint and the rows the repair fetched. */
interface Counted {
  readonly transport: SyncTransport.SyncTransport["Type"]
  readonly calls: Record<string, number>
  readonly rowsFetched: { value: number }
}

const counting = (inner: SyncTransport.SyncTransport["Type"], repair: boolean): Counted => {
  const calls: Record<string, number> = {}
  const rowsFetched = { value: 0 }
  const count = (name: string) => Effect.sync(() => (calls[name] = (calls[name] ?? 0) + 1))
  const { ranges, rows } = inner
  const transport: SyncTransport.SyncTransport["Type"] = {
    push: (r) => Effect.zipRight(count("push"), inner.push(r)),
    pull: (r) => Effect.zipRight(count("pull"), inner.pull(r)),
    snapshot: (r) => Effect.zipRight(count("snapshot"), inner.snapshot(r)),
    ...(repair && ranges !== undefined && rows !== undefined
      ? {
        ranges: (r: Protocol.RangesRequest) => Effect.zipRight(count("ranges"), ranges(r)),
        rows: (r: Protocol.RowsRequest) =>
          Effect.tap(Effect.zipRight(count("rows"), rows(r)), (answer) => Effect.sync(() => (rowsFetched.value += answer.rows.length)))
      }
      : {})
  }
  return { transport, calls, rowsFetched }
}

/** Change the stored rows of `scope` behind the client's back: one row's text, one row gone, one row added. */
const corrupt = (ref: Ref.Ref<ClientStorage.StoredState>, scope: string) =>
  Ref.update(ref, (state) => {
    const stored = state.scopes[scope]
    const notes = { ...(stored.rows["note"] ?? {}) }
    notes["n0150"] = { id: "n0150", text: "flipped bits" }
    delete notes["n0007"]
    notes["zz-ghost"] = { id: "zz-ghost", text: "never on the server" }
    return { ...state, scopes: { ...state.scopes, [scope]: { ...stored, rows: { ...stored.rows, note: notes } } } }
  })

/** A scope of `ROWS` notes on the server, a client's store of it synced, then drifted (`corrupt`) while the client was away. */
const drifted = Effect.gen(function*() {
  const base = yield* BaseUrl
  const scope = freshScope()
  yield* seed(base, scope)
  const { fetch, ref, storage } = yield* syncedStore(base, { registry, scopes: [scope] })
  yield* corrupt(ref, scope)
  return { base, fetch, ref, scope, storage }
})

const viewEquals = (client: SyncClient.SyncClient["Type"], scope: string, data: Protocol.SnapshotData) =>
  Effect.map(client.view(scope), (view) => assert.deepStrictEqual(view, data))

const suite = (name: string, storage: Layer.Layer<SyncStorage.Services, unknown>) => {
  const deps = Layer.mergeAll(storage, LivePubSub.layerMemory, Authorizer.layerAllowAll)
  layer(layerServer({ registry }, deps), { timeout: 60_000, excludeTestServices: true })(`checksums and repair (${name})`, (it) => {
    it.effect("the ranges partition the scope; their counts and checksums add up to the snapshot's, as a client computes them", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const scope = freshScope()
        yield* seed(base, scope)
        const snap = yield* snapshotOf(base, scope)
        assert.strictEqual(snap.checksum, Checksum.ofRows(snap.data), "the stored checksum is the rows' checksum")
        const res = yield* post(`${base}/_sync/ranges`, JSON.stringify({ scope, parts: 7 }))
        assert.strictEqual(res.status, 200, res.text)
        const answer = decodeAs(Protocol.RangesResponse, res.json)
        assert.strictEqual(answer.cursor, snap.cursor)
        assert.strictEqual(answer.checksum, snap.checksum)
        assert.strictEqual(answer.ranges.length, 7)
        assert.isUndefined(answer.ranges[0].from)
        assert.isUndefined(answer.ranges[6].to)
        const all = Checksum.rowsIn(snap.data, undefined, undefined)
        let total = 0
        for (const [i, r] of answer.ranges.entries()) {
          if (i > 0) assert.deepStrictEqual(r.from, answer.ranges[i - 1].to, "contiguous")
          assert.deepStrictEqual({ count: r.count, checksum: r.checksum }, Checksum.summarize(Checksum.rowsIn(snap.data, r.from, r.to)))
          total += r.count
        }
        assert.strictEqual(total, all.length)
        // one inner range's rows, exactly
        const third = answer.ranges[2]
        const rows = decodeAs(Protocol.RowsResponse, (yield* post(`${base}/_sync/rows`, JSON.stringify({ scope, from: third.from, to: third.to }))).json)
        assert.strictEqual(rows.rows.length, third.count)
        assert.isFalse(rows.has_more)
        assert.strictEqual(Checksum.summarize(rows.rows).checksum, third.checksum)
      }))

    it.scoped("a drifted local store is found at the next pull and repaired from only the rows of the ranges that differ", () =>
      Effect.gen(function*() {
        const { base, fetch, ref, scope, storage } = yield* drifted
        // pushes wait until the repair is done, so the log stands still meanwhile and the count is of one repair
        const release = yield* Deferred.make<void>()
        const counted = counting(gated(fetch, release), true)
        const second = yield* startStoppable({ registry, scopes: [scope], pullInterval: "1 hour" }, counted.transport, storage)
        const events = yield* second.client.subscribeEvents
        // a pending mutation of its own stays through the repair
        yield* second.client.mutate("note/put", { id: "local-1", text: "mine" }, { scope })
        const repaired = yield* takeUntil(events, (e): e is Extract<SyncClient.SyncEvent, { _tag: "Repaired" }> => e._tag === "Repaired")
        assert.strictEqual(repaired.scope, scope)
        assert.deepStrictEqual((yield* second.client.pending).map((m) => m.args), [{ id: "local-1", text: "mine" }])
        yield* Deferred.succeed(release, undefined)
        yield* second.client.sync
        const snap = yield* snapshotOf(base, scope)
        // the server has the pending mutation now, and the client holds exactly the server's rows, stored too
        assert.deepStrictEqual(snap.data["note"]?.["local-1"], { id: "local-1", text: "mine" })
        yield* viewEquals(second.client, scope, snap.data)
        assert.deepStrictEqual((yield* Ref.get(ref)).scopes[scope].rows, snap.data, "the stored rows are repaired too")
        assert.strictEqual(Checksum.ofRows(snap.data), snap.checksum)
        assert.isUndefined(counted.calls["snapshot"], "no snapshot")
        assert.isAbove(counted.calls["ranges"] ?? 0, 0)
        // three rows differ: each sits in a leaf of at most 64 rows of the server's 300
        assert.isAtMost(counted.rowsFetched.value, 3 * 64)
        assert.isBelow(counted.rowsFetched.value, ROWS / 2)
        assert.isAtLeast(counted.rowsFetched.value, 2, "the rows of n0150's and n0007's ranges came")
        assert.strictEqual(repaired.rows, counted.rowsFetched.value)
        yield* second.stop
      }))

    it.scoped("without the repair endpoints a drifted scope is reset from a snapshot (reason checksum)", () =>
      Effect.gen(function*() {
        const { base, fetch, scope, storage } = yield* drifted
        const counted = counting(fetch, false)
        const second = yield* startStoppable({ registry, scopes: [scope], pullInterval: "1 hour" }, counted.transport, storage)
        const events = yield* second.client.subscribeEvents
        const reset = yield* takeUntil(events, (e): e is Extract<SyncClient.SyncEvent, { _tag: "Reset" }> => e._tag === "Reset")
        assert.strictEqual(reset.reason, "checksum")
        yield* second.client.sync
        const snap = yield* snapshotOf(base, scope)
        yield* viewEquals(second.client, scope, snap.data)
        assert.strictEqual(counted.calls["snapshot"], 1)
        yield* second.stop
      }))

    it.effect("hostile bodies on ranges and rows: 400 invalid_request naming the field, nothing changed", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const scope = freshScope()
        yield* seed(base, scope)
        const before = yield* snapshotOf(base, scope)
        const cases: ReadonlyArray<readonly ["ranges" | "rows", string, string]> = [
          ["ranges", JSON.stringify({ scope, parts: 0 }), "parts"],
          ["ranges", JSON.stringify({ scope, parts: 65 }), "parts"],
          ["ranges", JSON.stringify({ scope, from: "n0001" }), "from"],
          ["ranges", JSON.stringify({ scope, to: { entity: "note", id: "x".repeat(257) } }), "to.id"],
          ["rows", JSON.stringify({ scope: "no spaces allowed" }), "scope"],
          ["rows", JSON.stringify({ scope, from: { entity: 1, id: "a" } }), "from.entity"],
          ["rows", "{not json", "JSON"]
        ]
        for (const [path, body, names] of cases) {
          const res = yield* post(`${base}/_sync/${path}`, body)
          assert.strictEqual(res.status, 400, `${path} ${body}: ${res.text}`)
          const error = decodeAs(Protocol.ErrorBody, res.json).error
          assert.strictEqual(error.code, "invalid_request")
          assert.include(error.message, names, `${path} ${body}`)
        }
        assert.deepStrictEqual(yield* snapshotOf(base, scope), before)
      }))
  })
}

describe("checksums and repair", () => {
  suite("memory", SyncStorage.layerMemory)
  suite("sqlite", SqlStorage.layerSqlite({ filename: NodePath.join(NodeOs.tmpdir(), `mizu-repair-${process.pid}-${Date.now()}.db`) }))
})

describePostgres("checksums and repair (postgres)", ({ storage }) => {
  suite("postgres", storage())
})
