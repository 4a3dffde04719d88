/**
 * The checksum's hash (`Checksum.fnv1a`, specified in docs/PROTOCOL.md as
 * FNV-1a over the UTF-8 bytes): computed from UTF-16 code units without a
 * byte array, it must equal FNV-1a over `TextEncoder`'s bytes for every
 * string, lone surrogates included (seeded property), and the published
 * FNV-1a test values.
 */
import { assert, describe, it } from "@effect/vitest"
import * as fc from "fast-check"
import { Checksum } from "mizu-sync-live/shared"

/** FNV-1a 32 over the bytes `TextEncoder` gives: the definition. */
const reference = (text: string): number => {
  let hash = 0x811c9dc5
  for (const byte of new TextEncoder().encode(text)) {
    hash ^= byte
    hash = Math.imul(hash, 0x01000193)
  }
  return hash >>> 0
}

describe("Checksum.fnv1a", () => {
  it("gives the published FNV-1a 32 values", () => {
    assert.strictEqual(Checksum.fnv1a(""), 0x811c9dc5)
    assert.strictEqual(Checksum.fnv1a("a"), 0xe40c292c)
    assert.strictEqual(Checksum.fnv1a("foobar"), 0xbf9cf968)
  })

  it("equals FNV-1a over TextEncoder's UTF-8 for 1-, 2-, 3- and 4-byte characters and lone surrogates", () => {
    for (const text of ["é", "€", "𝄞", "a\uD800", "\uDC00b", "\uD800\uD800\uDC00", "x\uDBFF", "\u07FF\u0800\uFFFF", "todo\u0000t1\u0000{\"title\":\"café ☕ 𝄞\"}"]) {
      assert.strictEqual(Checksum.fnv1a(text), reference(text), JSON.stringify(text))
    }
  })

  it("equals FNV-1a over TextEncoder's UTF-8 for any string (seed 20261203)", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary", maxLength: 40 }), fc.string({ unit: "binary-ascii", maxLength: 10 }), (a, b) => {
        const text = a + b
        return Checksum.fnv1a(text) === reference(text)
      }),
      { seed: 20261203, numRuns: 2000 }
    )
    // code units at random, so lone and paired surrogates are common
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 0xffff }), { maxLength: 30 }), (units) => {
        const text = String.fromCharCode(...units)
        return Checksum.fnv1a(text) === reference(text)
      }),
      { seed: 20261203, numRuns: 2000 }
    )
  })
})

describe("Checksum.rowHash", () => {
  /** The definition: FNV-1a over the row's text (rowHash computes it without building the text). */
  const byText = (entity: string, id: string, data: unknown) => Checksum.fnv1a(`${entity}\u0000${id}\u0000${Checksum.canonicalJson(data)}`)

  it("equals FNV-1a of entity, id and canonical JSON for escapes, surrogates, numbers, nesting and skipped values", () => {
    const values: ReadonlyArray<unknown> = [
      null,
      undefined,
      0,
      -0,
      1.5,
      -1e21,
      Number.NaN,
      Infinity,
      true,
      false,
      "",
      "plain",
      "quote \" backslash \\ slash /",
      "\b\f\n\r\t\u0000\u001f\u007f",
      "é € 𝄞 \u2028",
      "lone \uD800 and \uDC00, pair \uD83D\uDE00, reversed \uDC00\uD800",
      [],
      [1, "a", null, undefined, [[]], { b: 1, a: 2 }],
      { z: 1, a: { y: [1, { d: 4, c: 3 }], x: undefined }, "": 0, "\uD800": "k", B: 1, b: 2 },
      { title: "café ☕", completed: false, createdAt: 1_700_000_000_000, id: "t1" }
    ]
    for (const data of values) {
      for (const [entity, id] of [["todo", "t1"], ["é\uD800", "\uDC00x"], ["", ""]] as const) {
        assert.strictEqual(Checksum.rowHash(entity, id, data), byText(entity, id, data), `${entity} ${id} ${Checksum.canonicalJson(data)}`)
      }
    }
    assert.throws(() => Checksum.rowHash("t", "1", { n: 1n }))
  })

  it("equals FNV-1a of the row's text for any JSON value and any strings (seed 20261204)", () => {
    const text = fc.string({ unit: "binary", maxLength: 12 })
    fc.assert(
      fc.property(text, text, fc.jsonValue({ maxDepth: 4 }), (entity, id, data) => Checksum.rowHash(entity, id, data) === byText(entity, id, data)),
      { seed: 20261204, numRuns: 2000 }
    )
    // strings of raw code units (lone surrogates, control characters) as keys and values
    const units = fc.array(fc.integer({ min: 0, max: 0xffff }), { maxLength: 8 }).map((u) => String.fromCharCode(...u))
    fc.assert(
      fc.property(fc.dictionary(units, fc.oneof(units, fc.integer(), fc.constant(undefined))), units, (data, id) =>
        Checksum.rowHash("e", id, data) === byText("e", id, data)),
      { seed: 20261204, numRuns: 2000 }
    )
  })
})
