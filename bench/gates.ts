/**
 * The gate table of issue #17, read from `bench/results/*.json` as the last
 * `npm run bench` left them: each figure, its goal, what was measured (with
 * the baseline of the same run and the ratio), and the commit and date of
 * the run it comes from. `npm run bench` prints it at the end;
 * `node --import tsx bench/gates.ts` prints it alone. A result file that is
 * missing shows as "not run".
 */
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { benchDir } from "./lib/results.js"

type Json = Record<string, any>

const read = (name: string): Json | undefined => {
  const file = NodePath.join(benchDir, "results", `${name}.json`)
  return NodeFs.existsSync(file) ? JSON.parse(NodeFs.readFileSync(file, "utf8")) as Json : undefined
}

const fmt = (x: number, digits = 0) => x.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits })
const r2 = (x: number) => x.toFixed(2)

interface Gate {
  readonly figure: string
  readonly goal: string
  readonly measured: string
  readonly met: boolean | undefined
  readonly run: string
}

const runOf = (r: Json | undefined) =>
  r === undefined ? "not run" : `${r["environment"]?.["git_commit"] ?? "?"}${r["environment"]?.["src_dirty"] === true ? "+dirty" : ""} ${String(r["environment"]?.["date"] ?? "").slice(0, 16)}`

const gates: Array<Gate> = []
const add = (figure: string, goal: string, r: Json | undefined, f: (r: Json) => { measured: string; met: boolean }) => {
  if (r === undefined) {
    gates.push({ figure, goal, measured: "not run", met: undefined, run: "not run" })
    return
  }
  try {
    const { measured, met } = f(r)
    gates.push({ figure, goal, measured, met, run: runOf(r) })
  } catch (e) {
    gates.push({ figure, goal, measured: `unreadable (${String(e)})`, met: undefined, run: runOf(r) })
  }
}

const pushPull = read("push-pull")
add("push, 1 mutation/request, 32 in flight, SQLite", "≥ 1.0× the baseline's req/s", pushPull, (r) => {
  const t = r["throughput"]["push-1"]
  return {
    measured: `${fmt(t.ours_notrace.reqPerSec)} vs ${fmt(t.baseline.reqPerSec)} req/s = ${r2(t.ratio_ours_notrace)}× (tracing on ${r2(t.ratio_ours)}×; our HTTP path over a free engine ${r2(t.ratio_http_floor)}×)`,
    met: t.ratio_ours_notrace >= 1
  }
})
add("push p99, same load", "≤ 2× the baseline's p99", pushPull, (r) => {
  const t = r["throughput"]["push-1"]
  const ratio = t.ours_notrace.p99Ms / t.baseline.p99Ms
  return { measured: `${fmt(t.ours_notrace.p99Ms, 1)} vs ${fmt(t.baseline.p99Ms, 1)} ms = ${r2(ratio)}×`, met: ratio <= 2 }
})
add("push, 50 mutations/request", "≥ 1.0× the baseline's mutations/s", pushPull, (r) => {
  const t = r["throughput"]["push-50"]
  return {
    measured: `${fmt(t.ours_notrace.mutPerSec)} vs ${fmt(t.baseline.mutPerSec)} mut/s = ${r2(t.ratio_ours_notrace)}×`,
    met: t.ratio_ours_notrace >= 1
  }
})
add("durable mode (synchronous FULL), push-1, 32 in flight", "≥ 0.8× NORMAL", pushPull, (r) => {
  const t = r["throughput"]["push-1"]
  return { measured: `${fmt(t.ours_full.reqPerSec)} vs ${fmt(t.ours_notrace.reqPerSec)} req/s = ${r2(t.full_over_normal)}×`, met: t.full_over_normal >= 0.8 }
})
add("pull, 100-change pages", "≥ 0.8× the baseline", pushPull, (r) => {
  const t = r["throughput"]["pull"]
  return {
    measured: `${fmt(t.ours_notrace.reqPerSec)} vs ${fmt(t.baseline.reqPerSec)} req/s = ${r2(t.ratio_ours_notrace)}× (tracing on ${r2(t.ratio_ours)}×)`,
    met: t.ratio_ours_notrace >= 0.8
  }
})

const e2e = read("e2e")
for (const load of ["idle", "loaded"] as const) {
  add(
    `end to end push → POKE → pull, ${load === "idle" ? "idle" : "4 background pushers"}`,
    "p50 ≤ 1.3× the hand-written push/pull/poke server",
    e2e,
    (r) => {
      const x = r[load]
      return {
        measured: `${fmt(x.ours_notrace.e2eMs.p50, 2)} vs ${fmt(x.baseline.e2eMs.p50, 2)} ms = ${r2(x.ratio_ours_notrace.p50)}×`,
        met: x.ratio_ours_notrace.p50 <= 1.3
      }
    }
  )
}

const fanout = read("poke-fanout")
for (const n of ["1000", "5000"] as const) {
  add(`poke fan-out p99, ${fmt(Number(n))} subscribers`, "≤ 1.3× the plain ws baseline", fanout, (r) => {
    const x = r["fanout"][n]
    return {
      measured: `${fmt(x.ours.deliveryMs.p99, 1)} vs ${fmt(x.baseline.deliveryMs.p99, 1)} ms = ${r2(x.ratio_ours_delivery_p99)}×`,
      met: x.ratio_ours_delivery_p99 <= 1.3
    }
  })
}

const eventlog = read("eventlog")
add("writes/s against Effect's EventLogServer (32 writers, SQLite)", "≥ 1.0×", eventlog, (r) => ({
  measured: `${fmt(r["ours"].writesPerSec)} vs ${fmt(r["peer"].writesPerSec)} writes/s = ${r2(r["ratio"].writes_per_sec)}× (delivery to another client p50 ${
    r2(r["ratio"].delivery_p50)
  }×, p99 ${r2(r["ratio"].delivery_p99)}× of the peer's)`,
  met: r["ratio"].writes_per_sec >= 1
}))

const pg = read("pg-hot-scope")
add("Postgres, 4 processes, one hot scope, 32 in flight", "cursors gap-free; ≥ 2× the code before group commit", pg, (r) => {
  const s = r["summary"]
  const ratio = s.new.mut_per_sec / s.old.mut_per_sec
  return {
    measured: `${fmt(s.new.mut_per_sec)} vs ${fmt(s.old.mut_per_sec)} mut/s (${r["config"]?.["rev"] ?? "rev"}) = ${r2(ratio)}×, mean ${fmt(s.new.latency_mean_ms)} vs ${
      fmt(s.old.latency_mean_ms)
    } ms; gap-free: ${s.new.gap_free === true ? "yes" : "NO"}`,
    met: ratio >= 2 && s.new.gap_free === true
  }
})

const idle = read("idle-sessions")
add("idle sessions on one process (19,000)", "heap ≤ 30 KiB per session, a poke delivered to all", idle, (r) => {
  const o = r["runs"]["ours"]
  const x = r["extrapolated"]
  return {
    measured: `${fmt(o.heapKiB, 1)} KiB per session (plain ws ${fmt(r["runs"]["baseline"].heapKiB, 1)}), poke to all p99 ${
      fmt(o.deliveryMs.p99)
    } ms (ws ${fmt(r["runs"]["baseline"].deliveryMs.p99)}), missed ${o.missing ?? 0}; 50,000 extrapolated (not measured): ~${fmt(x.ours.heapMiB)} MiB heap (ws ~${
      fmt(x.baseline.heapMiB)
    })`,
    met: o.heapKiB <= 30
  }
})

// a Markdown table: the figures go into README.md and bench/README.md as printed
console.log("\nIssue #17 gates (bench/results/*.json):\n")
console.log("| figure | goal | measured (ours vs baseline, same run) | met | run (commit, UTC) |")
console.log("| --- | --- | --- | --- | --- |")
for (const g of gates) console.log(`| ${g.figure} | ${g.goal} | ${g.measured} | ${g.met === undefined ? "–" : g.met ? "**yes**" : "no"} | ${g.run} |`)
