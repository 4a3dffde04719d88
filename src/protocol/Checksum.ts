/**
 * The checksum of a scope's rows (PROTOCOL.md "Checksums"), computed the
 * same way by the server and every client:
 *
 * - a row's **canonical JSON**: the value as `JSON.stringify` writes it, with
 *   the keys of every object sorted by UTF-16 code units (JavaScript's
 *   default sort) and no whitespace;
 * - a row's **hash**: 32-bit FNV-1a over the UTF-8 bytes of
 *   `entity + "\u0000" + id + "\u0000" + canonicalJson`;
 * - a scope's **checksum**: the sum of its live rows' hashes modulo 2^32 (a
 *   deleted row contributes nothing; the empty scope is 0), so a write
 *   updates it in O(1): add the new row's hash, subtract the old one's.
 *
 * It detects corruption and drift, not tampering (FNV is not a
 * cryptographic hash).
 *
 * @since 0.1.0
 */

/**
 * An object's own enumerable keys sorted by UTF-16 code units (what
 * `Array.prototype.sort` does by default), by insertion in place: rows have
 * a few keys, and the built-in sort copies every array it sorts.
 */
const sortedKeys = (record: object): Array<string> => {
  const keys = Object.keys(record)
  for (let i = 1; i < keys.length; i++) {
    const key = keys[i]
    let j = i - 1
    while (j >= 0 && keys[j] > key) {
      keys[j + 1] = keys[j]
      j--
    }
    keys[j + 1] = key
  }
  return keys
}

/**
 * The canonical JSON of a value: keys sorted at every depth, no whitespace.
 *
 * @since 0.1.0
 * @category utils
 */
export const canonicalJson = (value: unknown): string => {
  if (value === null || typeof value !== "object") return JSON.stringify(value) ?? "null"
  // built by concatenation (no array per level): it runs for every change, on the server and in clients
  if (Array.isArray(value)) {
    let out = "["
    for (let i = 0; i < value.length; i++) {
      const item: unknown = value[i]
      out += (i === 0 ? "" : ",") + (item === undefined ? "null" : canonicalJson(item))
    }
    return out + "]"
  }
  const record = value as Record<string, unknown>
  const keys = sortedKeys(record)
  let out = "{"
  for (const key of keys) {
    const item = record[key]
    if (item === undefined) continue
    out += (out.length === 1 ? "" : ",") + JSON.stringify(key) + ":" + canonicalJson(item)
  }
  return out + "}"
}

/** One FNV-1a step: the hash with one more byte. */
const step = (hash: number, byte: number): number => Math.imul(hash ^ byte, 0x01000193)

/**
 * 32-bit FNV-1a of a string's UTF-8 bytes, as an unsigned integer. The bytes
 * are those `TextEncoder` gives (a lone surrogate is U+FFFD), computed from
 * the UTF-16 code units as it goes: no byte array per call.
 *
 * @since 0.1.0
 * @category utils
 */
export const fnv1a = (text: string): number => {
  let hash = 0x811c9dc5
  const length = text.length
  for (let i = 0; i < length; i++) {
    let c = text.charCodeAt(i)
    if (c < 0x80) {
      hash = step(hash, c)
    } else if (c < 0x800) {
      hash = step(step(hash, 0xc0 | (c >> 6)), 0x80 | (c & 0x3f))
    } else {
      if (c >= 0xd800 && c <= 0xdbff && i + 1 < length) {
        const low = text.charCodeAt(i + 1)
        if (low >= 0xdc00 && low <= 0xdfff) {
          const point = 0x10000 + ((c - 0xd800) << 10) + (low - 0xdc00)
          hash = step(step(step(step(hash, 0xf0 | (point >> 18)), 0x80 | ((point >> 12) & 0x3f)), 0x80 | ((point >> 6) & 0x3f)), 0x80 | (point & 0x3f))
          i++
          continue
        }
      }
      if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd
      hash = step(step(step(hash, 0xe0 | (c >> 12)), 0x80 | ((c >> 6) & 0x3f)), 0x80 | (c & 0x3f))
    }
  }
  return hash >>> 0
}

/**
 * The hash of one row (see the module doc).
 *
 * @since 0.1.0
 * @category utils
 */
export const rowHash = (entity: string, id: string, data: unknown): number =>
  hashValue(step(hashText(step(hashText(0x811c9dc5, entity), 0), id), 0), data) >>> 0

/*
 * The hash of a row computed as its text is walked, with no string built:
 * `hashText` feeds a string's UTF-8 bytes (as `fnv1a`), `hashValue` the
 * UTF-8 bytes of `canonicalJson(value)` (test/checksum.test.ts checks both
 * against `fnv1a` of the text, on arbitrary values).
 */

/** The hash with the UTF-8 bytes of code point `c` (not a surrogate) fed. */
const hashPoint = (hash: number, c: number): number =>
  c < 0x80
    ? step(hash, c)
    : c < 0x800
    ? step(step(hash, 0xc0 | (c >> 6)), 0x80 | (c & 0x3f))
    : c < 0x10000
    ? step(step(step(hash, 0xe0 | (c >> 12)), 0x80 | ((c >> 6) & 0x3f)), 0x80 | (c & 0x3f))
    : step(step(step(step(hash, 0xf0 | (c >> 18)), 0x80 | ((c >> 12) & 0x3f)), 0x80 | ((c >> 6) & 0x3f)), 0x80 | (c & 0x3f))

/** The surrogate pair at `i` of `text` as one code point, or -1 when the unit there is not the first of a pair. */
const pairAt = (text: string, i: number): number => {
  const c = text.charCodeAt(i)
  if (c < 0xd800 || c > 0xdbff || i + 1 >= text.length) return -1
  const low = text.charCodeAt(i + 1)
  return low >= 0xdc00 && low <= 0xdfff ? 0x10000 + ((c - 0xd800) << 10) + (low - 0xdc00) : -1
}

/** The hash with `text`'s UTF-8 bytes fed (a lone surrogate as U+FFFD), as `fnv1a` does. */
const hashText = (hash: number, text: string): number => {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c >= 0xd800 && c <= 0xdfff) {
      const point = pairAt(text, i)
      if (point === -1) hash = hashPoint(hash, 0xfffd)
      else {
        hash = hashPoint(hash, point)
        i++
      }
    } else hash = hashPoint(hash, c)
  }
  return hash
}

/** The hash with ASCII text fed (digits, `null`, `true`, …). */
const hashAscii = (hash: number, text: string): number => {
  for (let i = 0; i < text.length; i++) hash = step(hash, text.charCodeAt(i))
  return hash
}

const HEX = "0123456789abcdef"

/** The hash with `\\u` and 4 lowercase hex digits of `c` fed (JSON.stringify's escape). */
const hashEscape = (hash: number, c: number): number =>
  step(step(step(step(step(step(hash, 0x5c), 0x75), HEX.charCodeAt(c >> 12)), HEX.charCodeAt((c >> 8) & 0xf)), HEX.charCodeAt((c >> 4) & 0xf)), HEX.charCodeAt(c & 0xf))

/** The hash with `JSON.stringify(text)`'s UTF-8 bytes fed. */
const hashJsonString = (hash: number, text: string): number => {
  hash = step(hash, 0x22)
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === 0x22 || c === 0x5c) hash = step(step(hash, 0x5c), c)
    else if (c < 0x20) {
      hash = c === 0x08
        ? step(step(hash, 0x5c), 0x62)
        : c === 0x09
        ? step(step(hash, 0x5c), 0x74)
        : c === 0x0a
        ? step(step(hash, 0x5c), 0x6e)
        : c === 0x0c
        ? step(step(hash, 0x5c), 0x66)
        : c === 0x0d
        ? step(step(hash, 0x5c), 0x72)
        : hashEscape(hash, c)
    } else if (c >= 0xd800 && c <= 0xdfff) {
      const point = pairAt(text, i)
      if (point === -1) hash = hashEscape(hash, c)
      else {
        hash = hashPoint(hash, point)
        i++
      }
    } else hash = hashPoint(hash, c)
  }
  return step(hash, 0x22)
}

/** The hash with `canonicalJson(value)`'s UTF-8 bytes fed. */
const hashValue = (hash: number, value: unknown): number => {
  switch (typeof value) {
    case "string":
      return hashJsonString(hash, value)
    case "number":
      return hashAscii(hash, Number.isFinite(value) ? String(value) : "null")
    case "boolean":
      return hashAscii(hash, value ? "true" : "false")
    case "object":
      break
    case "bigint":
      // as JSON.stringify (and so canonicalJson) does
      throw new TypeError("Do not know how to serialize a BigInt")
    default:
      return hashAscii(hash, "null")
  }
  if (value === null) return hashAscii(hash, "null")
  if (Array.isArray(value)) {
    hash = step(hash, 0x5b)
    for (let i = 0; i < value.length; i++) {
      if (i > 0) hash = step(hash, 0x2c)
      hash = hashValue(hash, value[i])
    }
    return step(hash, 0x5d)
  }
  const record = value as Record<string, unknown>
  const keys = sortedKeys(record)
  hash = step(hash, 0x7b)
  let first = true
  for (let i = 0; i < keys.length; i++) {
    const item = record[keys[i]]
    if (item === undefined) continue
    if (!first) hash = step(hash, 0x2c)
    first = false
    hash = step(hashJsonString(hash, keys[i]), 0x3a)
    hash = hashValue(hash, item)
  }
  return step(hash, 0x7d)
}

/**
 * `a + b` modulo 2^32.
 *
 * @since 0.1.0
 * @category utils
 */
export const add = (a: number, b: number): number => (a + b) >>> 0

/**
 * `a - b` modulo 2^32.
 *
 * @since 0.1.0
 * @category utils
 */
export const subtract = (a: number, b: number): number => (a - b) >>> 0

/**
 * How a write moves a scope's checksum: the new row's hash in, the old one's out (absent: no row).
 *
 * @since 0.1.0
 * @category utils
 */
export const delta = (entity: string, id: string, before: { readonly value: unknown } | undefined, after: { readonly value: unknown } | undefined): number =>
  subtract(after === undefined ? 0 : rowHash(entity, id, after.value), before === undefined ? 0 : rowHash(entity, id, before.value))

/**
 * The checksum of a set of rows (`entity → id → JSON`).
 *
 * @since 0.1.0
 * @category utils
 */
export const ofRows = (rows: { readonly [entity: string]: { readonly [id: string]: unknown } }): number => {
  let sum = 0
  for (const entity of Object.keys(rows)) {
    const ids = rows[entity]
    for (const id of Object.keys(ids)) sum = add(sum, rowHash(entity, id, ids[id]))
  }
  return sum
}

/**
 * A row's key: its entity and id.
 *
 * @since 0.1.0
 * @category models
 */
export interface Key {
  readonly entity: string
  readonly id: string
}

/**
 * The order of row keys in repair ranges: by entity, then id, each by UTF-16
 * code units (JavaScript's `<`). Negative, zero or positive.
 *
 * @since 0.1.0
 * @category utils
 */
export const compareKeys = (a: Key, b: Key): number =>
  a.entity < b.entity ? -1 : a.entity > b.entity ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0

/**
 * Whether `key` is in `[from, to)` (an absent end is open).
 *
 * @since 0.1.0
 * @category utils
 */
export const inRange = (key: Key, from: Key | undefined, to: Key | undefined): boolean =>
  (from === undefined || compareKeys(key, from) >= 0) && (to === undefined || compareKeys(key, to) < 0)

/**
 * A row with its key, as ranges are computed over.
 *
 * @since 0.1.0
 * @category models
 */
export interface KeyedRow extends Key {
  readonly data: unknown
}

/**
 * The rows of `rows` (`entity → id → JSON`) in `[from, to)`, in key order.
 *
 * @since 0.1.0
 * @category utils
 */
export const rowsIn = (
  rows: { readonly [entity: string]: { readonly [id: string]: unknown } } | ReadonlyMap<string, ReadonlyMap<string, unknown>>,
  from: Key | undefined,
  to: Key | undefined
): Array<KeyedRow> => {
  const out: Array<KeyedRow> = []
  const entries = rows instanceof Map
    ? [...rows].map(([entity, ids]) => [entity, [...ids]] as const)
    : Object.keys(rows).map((entity) => {
      const ids = (rows as { readonly [entity: string]: { readonly [id: string]: unknown } })[entity]
      return [entity, Object.keys(ids).map((id) => [id, ids[id]] as const)] as const
    })
  for (const [entity, ids] of entries) {
    for (const [id, data] of ids) {
      const row = { entity, id, data }
      if (inRange(row, from, to)) out.push(row)
    }
  }
  return out.sort(compareKeys)
}

/**
 * How many rows and the sum of their hashes.
 *
 * @since 0.1.0
 * @category utils
 */
export const summarize = (rows: ReadonlyArray<KeyedRow>): { readonly count: number; readonly checksum: number } => {
  let checksum = 0
  for (const row of rows) checksum = add(checksum, rowHash(row.entity, row.id, row.data))
  return { count: rows.length, checksum }
}

/**
 * `[from, to)` split into at most `parts` contiguous ranges of about equal
 * row counts, over `sorted` (the rows of `[from, to)` in key order): each
 * inner boundary is the first key of the next range, the outer ends are
 * `from` and `to`; an empty range is one range of count 0.
 *
 * @since 0.1.0
 * @category utils
 */
export const split = (
  sorted: ReadonlyArray<KeyedRow>,
  parts: number,
  from: Key | undefined,
  to: Key | undefined
): Array<{ readonly from?: Key; readonly to?: Key; readonly count: number; readonly checksum: number }> => {
  const n = Math.max(1, Math.min(parts, sorted.length))
  const keyOf = (row: KeyedRow): Key => ({ entity: row.entity, id: row.id })
  const out: Array<{ readonly from?: Key; readonly to?: Key; readonly count: number; readonly checksum: number }> = []
  for (let i = 0; i < n; i++) {
    const start = Math.floor((i * sorted.length) / n)
    const end = Math.floor(((i + 1) * sorted.length) / n)
    const lo = i === 0 ? from : keyOf(sorted[start])
    const hi = i === n - 1 ? to : keyOf(sorted[end])
    out.push({ ...(lo === undefined ? {} : { from: lo }), ...(hi === undefined ? {} : { to: hi }), ...summarize(sorted.slice(start, end)) })
  }
  return out
}
