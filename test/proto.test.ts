/**
 * A `__proto__` key on the wire never becomes a prototype of a decoded value.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Either from "effect/Either"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { LiveProtocol, Mutation, Protocol } from "mizu-sync-live"
import { decodeBody } from "../src/sync/SyncHttp.js"

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
