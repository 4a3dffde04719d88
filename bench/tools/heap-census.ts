/**
 * Per-session object census from two heap snapshots: what a server holds for
 * each open session, by constructor (or node type), as (after - before) / n.
 *
 * Usage: node --import tsx bench/tools/heap-census.ts before.heapsnapshot after.heapsnapshot <n> [rows]
 */
import * as NodeFs from "node:fs"

interface Snapshot {
  readonly snapshot: { readonly meta: { readonly node_fields: ReadonlyArray<string>; readonly node_types: ReadonlyArray<ReadonlyArray<string> | string> } }
  readonly nodes: ReadonlyArray<number>
  readonly strings: ReadonlyArray<string>
}

const census = (file: string): Map<string, { count: number; bytes: number }> => {
  const snap = JSON.parse(NodeFs.readFileSync(file, "utf8")) as Snapshot
  const fields = snap.snapshot.meta.node_fields
  const types = snap.snapshot.meta.node_types[0] as ReadonlyArray<string>
  const width = fields.length
  const iType = fields.indexOf("type")
  const iName = fields.indexOf("name")
  const iSize = fields.indexOf("self_size")
  const out = new Map<string, { count: number; bytes: number }>()
  for (let i = 0; i < snap.nodes.length; i += width) {
    const type = types[snap.nodes[i + iType]]
    const name = snap.strings[snap.nodes[i + iName]]
    const key = type === "object" || type === "closure" ? `${type}:${name}` : type === "string" || type === "concatenated string" || type === "sliced string" ? "(strings)" : `(${type})`
    const entry = out.get(key) ?? { count: 0, bytes: 0 }
    entry.count++
    entry.bytes += snap.nodes[i + iSize]
    out.set(key, entry)
  }
  return out
}

const [beforeFile, afterFile, nArg, rowsArg] = process.argv.slice(2)
const n = Number(nArg)
const before = census(beforeFile)
const after = census(afterFile)
const diff = [...after].map(([key, a]) => {
  const b = before.get(key) ?? { count: 0, bytes: 0 }
  return { key, count: (a.count - b.count) / n, bytes: (a.bytes - b.bytes) / n }
})
const total = diff.reduce((s, d) => s + d.bytes, 0)
console.log(`per session: ${(total / 1024).toFixed(1)} KiB in ${diff.reduce((s, d) => s + d.count, 0).toFixed(0)} objects`)
for (const d of diff.sort((x, y) => y.bytes - x.bytes).slice(0, Number(rowsArg ?? 40))) {
  console.log(`${(d.bytes / 1024).toFixed(2).padStart(8)} KiB ${d.count.toFixed(1).padStart(8)} objs  ${d.key}`)
}
