/**
 * A `__proto__` key on the wire never becomes a prototype of a decoded value.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Either from "effect/Either"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as fc from "fast-check"
import { LiveProtocol, Mutation, Protocol } from "mizu-sync-live"
import { decodeBody } from "../src/sync/internal/syncHttp.js"

describe("__proto__ on the wire", () => {
  it("is dropped from live frames before decoding", () => {
    const frame = LiveProtocol.decodeClientFrame(
      `{"type":3,"topic":"t","payload":{"name":"x","__proto__":{"values":{"evil":true},"topic":"other"}}}`
    )
    assert.isTrue(Either.isRight(frame))
    if (Either.isRight(frame) && frame.right.type === LiveProtocol.FrameType.EVENT) {
      assert.strictEqual(frame.right.payload.values, undefined)
      assert.strictEqual(Object.getPrototypeOf(frame.right.payload), Object.prototype)
    }
  })

  it("is dropped from HTTP bodies before decoding", () => {
    const body = decodeBody(Protocol.PullRequest)(`{"__proto__":{"client_id":"sneaky"},"scope":"a","cursor":0}`)
    assert.isTrue(Either.isRight(body))
    if (Either.isRight(body)) assert.strictEqual(body.right.client_id, undefined)
    assert.strictEqual(Protocol.parseJson(`{"a":{"__proto__":{"x":1}}}`) instanceof Object, true)
    assert.deepStrictEqual(Protocol.parseJson(`{"a":{"__proto__":{"x":1},"b":2}}`), { a: { b: 2 } })
  })

  it("is dropped when spelled with \\u escapes too; a text that cannot hold it parses as JSON.parse does", () => {
    // "\u005f\u005fproto\u005f\u005f" and a partly escaped form are the key __proto__ once parsed
    for (const key of [String.raw`\u005f\u005fproto\u005f\u005f`, String.raw`_\u005fproto__`, String.raw`\u005F_proto__`]) {
      const parsed = Protocol.parseJson(`{"a":{"${key}":{"x":1},"b":2}}`) as { readonly a: object }
      assert.deepStrictEqual(parsed, { a: { b: 2 } })
      assert.strictEqual(Object.getPrototypeOf(parsed.a), Object.prototype)
      assert.isFalse(Object.prototype.hasOwnProperty.call(parsed.a, "__proto__"))
    }
    // an escape that is not the key keeps its value
    assert.deepStrictEqual(Protocol.parseJson(String.raw`{"t":"caf\u00e9","n":[1,{"m":null}]}`), { t: "café", n: [1, { m: null }] })
    const plain = `{"client_id":"c1","mutations":[{"id":1,"name":"todo/create","args":{"id":"a","title":"milk"}}]}`
    assert.deepStrictEqual(Protocol.parseJson(plain), JSON.parse(plain))
    assert.throws(() => Protocol.parseJson(`{"a":`))
  })
})

describe("reserved mutation names", () => {
  it("a registry refuses names starting with $mizu/ (the client's placeholders must reach the server as unknown)", () => {
    const placeholder = Mutation.make("$mizu/discarded", { args: Schema.Struct({}), handler: () => Effect.void })
    assert.throws(() => Mutation.registry({ entities: [], mutations: [placeholder] }), /reserved/)
  })
})

describe("the quick body Schemas", () => {
  // PushRequestQuick and PullRequestQuick are the server's first try at a body (each field's checks in one
  // filter): they must accept exactly what PushRequest and PullRequest accept, and decode it alike.
  const decodeWith = <A>(schema: Schema.Schema<A, any>) => Schema.decodeUnknownEither(schema, { errors: "first", onExcessProperty: "ignore" })
  // mostly valid values (so a body is often valid but for one field), with every kind of near miss
  const oddities = fc.constantFrom<unknown>(undefined, null, "", 0, -1, 1.5, "x", [], {}, true, Number.MAX_SAFE_INTEGER + 1, 2 ** 60, -0)
  const near = <A>(valid: fc.Arbitrary<A>) => fc.oneof({ arbitrary: valid, weight: 12 }, { arbitrary: oddities, weight: 1 })
  const int = (min: number, max: number) => fc.oneof(fc.integer({ min, max: Math.min(max, min + 5) }), fc.constantFrom(max, max + 1, min - 1, min + 0.5))
  const text = (max: number, pattern: boolean) =>
    fc.oneof(
      { arbitrary: fc.constantFrom("a", "todo/create", "s:1/x@y.z-_", "x".repeat(max), "_default"), weight: 12 },
      { arbitrary: fc.constantFrom("x".repeat(max + 1), "a b", "é", "\u0000", "a\nb", ""), weight: 1 },
      { arbitrary: fc.string({ maxLength: 4 }), weight: pattern ? 1 : 2 }
    )
  const mutation = fc.record(
    { id: near(int(1, Number.MAX_SAFE_INTEGER)), name: near(text(128, false)), scope: near(text(256, true)), args: fc.jsonValue({ maxDepth: 2 }), extra: fc.jsonValue({ maxDepth: 1 }) },
    { requiredKeys: ["name"] }
  )
  const push = fc.record(
    {
      protocol: near(fc.constant(1)),
      app_version: near(int(1, Number.MAX_SAFE_INTEGER)),
      client_id: near(text(128, true)),
      mutations: near(fc.oneof({ arbitrary: fc.array(mutation, { minLength: 1, maxLength: 3 }), weight: 8 }, { arbitrary: fc.constant([]), weight: 1 }, {
        arbitrary: fc.constant(Array.from({ length: 1001 }, (_, i) => ({ id: i + 1, name: "m" }))),
        weight: 1
      }))
    },
    { requiredKeys: ["mutations"] }
  )
  const pull = fc.record(
    {
      protocol: near(fc.constant(1)),
      app_version: near(int(1, Number.MAX_SAFE_INTEGER)),
      scope: near(text(256, true)),
      cursor: near(int(0, Number.MAX_SAFE_INTEGER)),
      limit: near(int(1, 1000)),
      client_id: near(text(128, true))
    },
    { requiredKeys: ["scope", "cursor"] }
  )
  let accepted = 0
  const sameAs = <A>(quick: Schema.Schema<A, any>, full: Schema.Schema<A, any>, body: unknown) => {
    const q = decodeWith(quick)(body)
    const f = decodeWith(full)(body)
    if (Either.isRight(q) !== Either.isRight(f)) return false
    if (Either.isLeft(q)) return true
    accepted++
    return JSON.stringify(q.right) === JSON.stringify((f as Either.Right<never, A>).right)
  }

  it("accept what the full Schemas accept, decoded alike, and refuse what they refuse (seed 20261204)", () => {
    fc.assert(fc.property(push, (body) => sameAs(Protocol.PushRequestQuick, Protocol.PushRequest, body)), { seed: 20261204, numRuns: 4000 })
    // both kinds were tried: a fair share of the bodies was valid, the rest refused
    assert.isAbove(accepted, 200)
    assert.isBelow(accepted, 3800)
    accepted = 0
    fc.assert(fc.property(pull, (body) => sameAs(Protocol.PullRequestQuick, Protocol.PullRequest, body)), { seed: 20261204, numRuns: 4000 })
    assert.isAbove(accepted, 200)
    assert.isBelow(accepted, 3800)
    // and on values that are not objects at all
    for (const body of [null, 1, "s", [], [{ scope: "s", cursor: 0 }]]) {
      assert.isTrue(sameAs(Protocol.PushRequestQuick, Protocol.PushRequest, body))
      assert.isTrue(sameAs(Protocol.PullRequestQuick, Protocol.PullRequest, body))
    }
  })

  it("a body the quick Schema refuses is answered with the full Schema's issue", () => {
    const decode = decodeBody(Protocol.PullRequest, Protocol.PullRequestQuick)
    const bad = decode(`{"scope":"a b","cursor":0}`)
    assert.isTrue(Either.isLeft(bad))
    if (Either.isLeft(bad)) assert.strictEqual(bad.left.message, "scope: scope may contain only A-Z a-z 0-9 _ - : . / @")
    const ok = decode(`{"scope":"a","cursor":3,"limit":10,"client_id":"c","extra":1}`)
    assert.deepStrictEqual(ok, Either.right({ scope: "a", cursor: 3, limit: 10, client_id: "c" }))
  })
})

describe("Protocol.jsonDepthExceeds", () => {
  /** The definition: the nesting of arrays and objects (a leaf adds none), computed recursively. */
  const depthOf = (value: unknown): number =>
    typeof value !== "object" || value === null ? 0 : 1 + Math.max(0, ...Object.values(value).map(depthOf))

  it("is true exactly when arrays and objects nest deeper than the limit (seed 20261204), and safe at 100,000 levels", () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 8 }), fc.integer({ min: 0, max: 9 }), (value, max) => Protocol.jsonDepthExceeds(value, max) === depthOf(value) > max),
      { seed: 20261204, numRuns: 3000 }
    )
    let deep: unknown = 1
    for (let i = 0; i < 100_000; i++) deep = i % 2 === 0 ? [deep] : { a: deep }
    assert.isTrue(Protocol.jsonDepthExceeds(deep))
    assert.isFalse(Protocol.jsonDepthExceeds({ a: [1, { b: "x" }], c: null }, 3))
    assert.isTrue(Protocol.jsonDepthExceeds({ a: [1, { b: [] }] }, 3))
  })
})
