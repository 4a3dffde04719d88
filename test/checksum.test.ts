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
