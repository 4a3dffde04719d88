/**
 * Client ids belong to principals, over a storage family (the engine's side
 * of it): a push, pull or snapshot naming a client id another principal owns
 * is `forbidden`, changes nothing and reveals none of that client's ids; of
 * principals racing for a fresh id exactly one wins; one subject's tokens
 * share ids; the anonymous principal owns nothing. Run by `engineSuite`.
 */
import { assert, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type * as Layer from "effect/Layer"
import { Authorizer, ChangeLog, Clients, type Mutation, type Protocol, Store, SyncEngine, type SyncStorage } from "mizu-sync-live"
import { layerEngine } from "mizu-sync-live/testing"
import { freshClient, freshScope, range } from "./util.js"

/**
 * Tokens → principals: `ann-laptop` and `ann-phone` are one subject; `bob`,
 * `mallory` and `racer-<n>` are each their own; no token is the anonymous
 * principal; `split` is a different principal on every scope (an authorizer
 * bug the engine must not trust).
 */
const authorizer = Authorizer.layerFunction((request) => {
  const token = request.token
  if (token === undefined) return Effect.void
  if (token === "split") return Effect.succeed({ id: `split:${request.scope}` })
  if (token.startsWith("ann-")) return Effect.succeed({ id: "subject:ann" })
  return Effect.succeed({ id: `subject:${token}` })
})

const as = (token: string | undefined): SyncEngine.Caller => ({ token, headers: {} })

const create = (id: number, todo: string, scope: string): Protocol.Mutation => ({
  id,
  name: "todo/create",
  scope,
  args: { id: todo, title: todo }
})

/** `registry` must have the todo mutations of `examples/todo`. */
export const ownershipSuite = (name: string, registry: Mutation.Registry, storage: Layer.Layer<SyncStorage.Services, unknown>) =>
  layer(layerEngine(registry, storage, { authorizer }), { timeout: 120_000 })(`client id ownership (${name})`, (it) => {
    const refused = <A>(self: Effect.Effect<A, Protocol.ProtocolError>) =>
      Effect.map(Effect.either(self), (result) => {
        assert.isTrue(Either.isLeft(result), "expected forbidden")
        return Either.isLeft(result) ? result.left : undefined
      })

    it.effect("another principal's client id: push (any ids), pull and snapshot are forbidden, change nothing, reveal no id", () =>
      Effect.gen(function*() {
        const engine = yield* SyncEngine.SyncEngine
        const store = yield* Store.Store
        const log = yield* ChangeLog.ChangeLog
        const clients = yield* Clients.Clients
        const victimScope = freshScope("victim")
        const attackerScope = freshScope("attacker")
        const victim = freshClient()
        const first = yield* engine.push({ client_id: victim, mutations: [create(1, "v1", victimScope), create(2, "v2", victimScope)] }, as("bob"))
        assert.isTrue(first.results.every((r) => r.ok && r.duplicate === undefined))

        // the attack: advance the victim's last id (k … k+99), probe for duplicate and out_of_order answers
        for (const ids of [range(100).map((i) => i + 2), [1], [2], [3], [50], range(5)]) {
          const e = yield* refused(engine.push({ client_id: victim, mutations: ids.map((id) => create(id, `x${id}`, attackerScope)) }, as("mallory")))
          assert.strictEqual(e?.code, "forbidden")
          assert.strictEqual(e?.status, 403)
          assert.notMatch(JSON.stringify(e?.toBody()), /expected|duplicate|last_mutation_id/)
        }
        // also in the victim's own scope, and with no token at all (the anonymous principal)
        assert.strictEqual((yield* refused(engine.push({ client_id: victim, mutations: [create(3, "x", victimScope)] }, as("mallory"))))?.code, "forbidden")
        assert.strictEqual((yield* refused(engine.push({ client_id: victim, mutations: [create(3, "x", victimScope)] }, as(undefined))))?.code, "forbidden")
        // nothing changed
        assert.strictEqual(yield* log.head(attackerScope), 0)
        assert.deepStrictEqual(yield* store.snapshot(attackerScope), {})
        assert.strictEqual(yield* log.head(victimScope), 2)
        assert.strictEqual(yield* clients.lastId(victim), 2)

        // reads naming the victim's id are refused before any id is read
        for (const caller of [as("mallory"), as(undefined)]) {
          const pull = yield* refused(engine.pull({ scope: victimScope, cursor: 0, client_id: victim }, caller))
          assert.strictEqual(pull?.code, "forbidden")
          const snap = yield* refused(engine.snapshot({ scope: victimScope, client_id: victim }, caller))
          assert.strictEqual(snap?.code, "forbidden")
          // cursor checks come after the owner check: no 409 either
          assert.strictEqual((yield* refused(engine.pull({ scope: victimScope, cursor: 99, client_id: victim }, caller)))?.code, "forbidden")
        }
        // without the victim's id the same reads are fine (the scope is not what is protected here)
        assert.strictEqual((yield* engine.pull({ scope: victimScope, cursor: 0 }, as("mallory"))).changes.length, 2)

        // the victim's next mutation still applies, exactly once
        const next = yield* engine.push({ client_id: victim, mutations: [create(3, "v3", victimScope)] }, as("bob"))
        assert.deepStrictEqual(next.results, [{ id: 3, ok: true, cursor: 3 }])
        const pulled = yield* engine.pull({ scope: victimScope, cursor: 0, client_id: victim }, as("bob"))
        assert.strictEqual(pulled.last_mutation_id, 3)
        assert.deepStrictEqual(pulled.changes.map((c) => c.id), ["v1", "v2", "v3"])
        assert.strictEqual((yield* engine.snapshot({ scope: victimScope, client_id: victim }, as("bob"))).last_mutation_id, 3)
      }))

    it.effect("one subject's tokens share client ids", () =>
      Effect.gen(function*() {
        const engine = yield* SyncEngine.SyncEngine
        const s = freshScope("ann")
        const c = freshClient()
        assert.isTrue((yield* engine.push({ client_id: c, mutations: [create(1, "a", s)] }, as("ann-laptop"))).results[0].ok)
        const phone = yield* engine.push({ client_id: c, mutations: [create(1, "a", s), create(2, "b", s)] }, as("ann-phone"))
        assert.deepStrictEqual(phone.results, [{ id: 1, ok: true, duplicate: true, cursor: 1 }, { id: 2, ok: true, cursor: 2 }])
        assert.strictEqual((yield* engine.pull({ scope: s, cursor: 0, client_id: c }, as("ann-laptop"))).last_mutation_id, 2)
        assert.strictEqual((yield* refused(engine.pull({ scope: s, cursor: 0, client_id: c }, as("bob"))))?.code, "forbidden")
      }))

    it.effect("the anonymous principal owns nothing: anonymous callers share ids, and the next named principal claims one", () =>
      Effect.gen(function*() {
        const engine = yield* SyncEngine.SyncEngine
        const s = freshScope("open")
        const c = freshClient()
        assert.isTrue((yield* engine.push({ client_id: c, mutations: [create(1, "a", s)] }, as(undefined))).results[0].ok)
        const again = yield* engine.push({ client_id: c, mutations: [create(1, "a", s), create(2, "b", s)] }, as(undefined))
        assert.deepStrictEqual(again.results.map((r) => [r.ok, r.duplicate]), [[true, true], [true, undefined]])
        assert.strictEqual((yield* engine.pull({ scope: s, cursor: 0, client_id: c }, as(undefined))).last_mutation_id, 2)
        // a named principal may use (and so claims) the unowned id ...
        assert.deepStrictEqual((yield* engine.push({ client_id: c, mutations: [create(3, "c", s)] }, as("bob"))).results, [{ id: 3, ok: true, cursor: 3 }])
        // ... after which it is bob's
        assert.strictEqual((yield* refused(engine.push({ client_id: c, mutations: [create(4, "d", s)] }, as(undefined))))?.code, "forbidden")
        assert.strictEqual((yield* refused(engine.pull({ scope: s, cursor: 0, client_id: c }, as("mallory"))))?.code, "forbidden")
      }))

    it.effect("a client id recorded without an owner (rows from before owners were kept) is claimed by the next named pusher", () =>
      Effect.gen(function*() {
        const engine = yield* SyncEngine.SyncEngine
        const clients = yield* Clients.Clients
        const s = freshScope("legacy")
        const c = freshClient()
        yield* clients.recordAll(c, [{ id: 4, scope: s }])
        // before the claim, a pull naming it is answered as before
        assert.strictEqual((yield* engine.pull({ scope: s, cursor: 0, client_id: c }, as("bob"))).last_mutation_id, 4)
        assert.deepStrictEqual((yield* engine.push({ client_id: c, mutations: [create(5, "e", s)] }, as("bob"))).results, [{ id: 5, ok: true, cursor: 1 }])
        assert.strictEqual(yield* clients.ownerOf(c), "subject:bob")
        assert.strictEqual((yield* refused(engine.push({ client_id: c, mutations: [create(6, "f", s)] }, as("mallory"))))?.code, "forbidden")
      }))

    it.effect("principals racing to push with one fresh client id: exactly one wins, the others are forbidden and apply nothing", () =>
      Effect.gen(function*() {
        const engine = yield* SyncEngine.SyncEngine
        const store = yield* Store.Store
        for (let round = 0; round < 3; round++) {
          const s = freshScope("race")
          const c = freshClient()
          const outcomes = yield* Effect.forEach(
            range(8), // racers 1 … 8
            (i) => Effect.either(engine.push({ client_id: c, mutations: [create(1, `racer-${i}`, s)] }, as(`racer-${i}`))),
            { concurrency: "unbounded" }
          )
          const winners = outcomes.flatMap((o, k) => (Either.isRight(o) ? [k + 1] : []))
          assert.strictEqual(winners.length, 1, `round ${round}`)
          for (const o of outcomes) if (Either.isLeft(o)) assert.strictEqual(o.left.code, "forbidden")
          const winner = winners[0]
          assert.deepStrictEqual(Object.keys((yield* store.snapshot(s))["todo"] ?? {}), [`racer-${winner}`])
          assert.strictEqual((yield* engine.pull({ scope: s, cursor: 0, client_id: c }, as(`racer-${winner}`))).last_mutation_id, 1)
        }
      }))

    it.effect("a request whose scopes are authorized as different principals is forbidden", () =>
      Effect.gen(function*() {
        const engine = yield* SyncEngine.SyncEngine
        const log = yield* ChangeLog.ChangeLog
        const a = freshScope("split")
        const b = freshScope("split")
        const e = yield* refused(engine.push({ client_id: freshClient(), mutations: [create(1, "a", a), create(2, "b", b)] }, as("split")))
        assert.strictEqual(e?.code, "forbidden")
        assert.strictEqual(yield* log.head(a), 0)
        // one scope is one principal: fine
        assert.isTrue((yield* engine.push({ client_id: freshClient(), mutations: [create(1, "a", a)] }, as("split"))).results[0].ok)
      }))
  })
