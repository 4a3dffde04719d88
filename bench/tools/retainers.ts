/**
 * Why is an object alive? Prints retainer chains of the first few objects of
 * a constructor in a heap snapshot (shortest path up to a GC root, weak edges
 * skipped): what keeps, say, each session's `IncomingMessage` in memory.
 *
 * Usage: node --import tsx bench/tools/retainers.ts file.heapsnapshot <Constructor> [count=3, or -3 for the last 3] [depth=14]
 */
import * as NodeFs from "node:fs"

const [file, wanted, countArg, depthArg] = process.argv.slice(2)
const snap = JSON.parse(NodeFs.readFileSync(file, "utf8"))
const nf: ReadonlyArray<string> = snap.snapshot.meta.node_fields
const ef: ReadonlyArray<string> = snap.snapshot.meta.edge_fields
const nodeTypes: ReadonlyArray<string> = snap.snapshot.meta.node_types[0]
const edgeTypes: ReadonlyArray<string> = snap.snapshot.meta.edge_types[0]
const nodes: ReadonlyArray<number> = snap.nodes
const edges: ReadonlyArray<number> = snap.edges
const strings: ReadonlyArray<string> = snap.strings
const NW = nf.length
const EW = ef.length
const n = nodes.length / NW
const name = (i: number) => `${nodeTypes[nodes[i * NW + nf.indexOf("type")]]}:${strings[nodes[i * NW + nf.indexOf("name")]].slice(0, 60)}`
// reverse edges
const parents: Array<Array<[number, string]>> = Array.from({ length: n }, () => [])
let e = 0
for (let i = 0; i < n; i++) {
  const count = nodes[i * NW + nf.indexOf("edge_count")]
  for (let k = 0; k < count; k++, e += EW) {
    const type = edgeTypes[edges[e + ef.indexOf("type")]]
    if (type === "weak") continue
    const to = edges[e + ef.indexOf("to_node")] / NW
    const nameOrIndex = edges[e + ef.indexOf("name_or_index")]
    const label = type === "element" || type === "hidden" ? `[${nameOrIndex}]` : strings[nameOrIndex]
    parents[to].push([i, label])
  }
}
// a negative count takes the last objects of that constructor (the newest, in a snapshot of many sessions)
const all: Array<number> = []
for (let i = 0; i < n; i++) {
  if (strings[nodes[i * NW + nf.indexOf("name")]] === wanted && nodeTypes[nodes[i * NW]] === "object") all.push(i)
}
const count = Number(countArg ?? 3)
const targets = count < 0 ? all.slice(count) : all.slice(0, count)
for (const t of targets) {
  // BFS upwards to the root (node 0)
  const prev = new Map<number, [number, string]>([[t, [-1, ""]]])
  const queue = [t]
  let found = -1
  while (queue.length > 0 && found < 0) {
    const x = queue.shift() as number
    for (const [p, label] of parents[x]) {
      if (prev.has(p)) continue
      prev.set(p, [x, label])
      if (p === 0) {
        found = p
        break
      }
      queue.push(p)
    }
  }
  console.log(`--- ${name(t)}`)
  const chain: Array<string> = []
  for (let x = found; x !== t && x >= 0; ) {
    const [child, label] = prev.get(x) as [number, string]
    chain.push(`${name(x)} .${label} ->`)
    x = child
  }
  for (const line of chain.slice(-Number(depthArg ?? 14))) console.log("  " + line)
}
