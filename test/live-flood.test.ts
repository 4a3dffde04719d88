/**
 * The flood test (issue #14, item 2): a server in its own process (the todo
 * example, SQLite storage, default live limits), a client in another process
 * that JOINs 100 scopes and streams SUBSCRIBE frames for those scopes without
 * reading its socket, for 10 s, reconnecting whenever it is closed; and, in
 * this process, a pusher that pushes to one of those scopes, one push at a
 * time, in a quiet phase and during the flood.
 *
 * It shows: the server's RSS (VmRSS of its process) grows by less than
 * 64 MiB during the flood (over its peak during a control phase of the same
 * push load without the flood); the pusher's p99 during the flood stays under 5×
 * its quiet p99 (a ratio, both phases measured in this test); the flooder is
 * closed, by the frame rate limit (`mizu_live_closes_total{reason="rate_limited"}`
 * on the server), every time it connects.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { spawn } from "node:child_process"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import * as ServerProcess from "./support/ServerProcess.js"
import { wsUrl } from "./support/WsClient.js"

const root = NodePath.resolve(import.meta.dirname, "..")

/** The resident set of a process, in bytes. */
const rssOf = (pid: number): number => {
  const match = /VmRSS:\s+(\d+) kB/.exec(NodeFs.readFileSync(`/proc/${pid}/status`, "utf8"))
  if (match === null) throw new Error(`no VmRSS for ${pid}`)
  return Number(match[1]) * 1024
}

const percentile = (xs: ReadonlyArray<number>, p: number): number => {
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]
}

/** Push one todo at a time to `scope` for `ms`; the latency of each, in ms. */
const pushFor = async (base: string, scope: string, ms: number, tag: string): Promise<Array<number>> => {
  const latencies: Array<number> = []
  const end = Date.now() + ms
  for (let i = 0; Date.now() < end; i++) {
    const body = JSON.stringify({ mutations: [{ name: "todo/create", scope, args: { id: `${tag}${i}`, title: "t" } }] })
    const t0 = performance.now()
    const res = await fetch(`${base}/_sync/push`, { method: "POST", headers: { "content-type": "application/json" }, body })
    await res.text()
    latencies.push(performance.now() - t0)
    if (res.status !== 200) throw new Error(`push answered ${res.status}`)
  }
  return latencies
}

interface FlooderSummary {
  readonly connections: number
  readonly framesSent: number
  readonly closedByServer: ReadonlyArray<{ readonly code: number; readonly ms: number }>
  readonly endedByFlooder: number
}

/** Start the flooder process; `go` starts the flood, its summary comes when it is done. */
const startFlooder = (url: string, seconds: number) =>
  new Promise<{ readonly go: () => Promise<FlooderSummary> }>((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", "test/fixtures/live-flooder.ts", url, String(seconds)], {
      cwd: root,
      stdio: ["pipe", "pipe", "inherit"]
    })
    let output = ""
    const done = new Promise<FlooderSummary>((resolveDone, rejectDone) => {
      child.once("exit", (code) => {
        const line = output.trim().split("\n").pop() ?? ""
        try {
          resolveDone(JSON.parse(line) as FlooderSummary)
        } catch {
          rejectDone(new Error(`flooder exited (${code}) without a summary: ${output}`))
        }
      })
    })
    child.stdout.on("data", (chunk: Buffer) => {
      output += chunk.toString()
      if (output.startsWith("ready\n")) {
        output = output.slice("ready\n".length)
        resolve({
          go: () => {
            child.stdin.write("go\n")
            return done
          }
        })
      }
    })
    child.once("error", reject)
  })

describe("live flood", () => {
  it.scopedLive("a client streaming SUBSCRIBE frames for its 100 scopes without reading, for 10 s: bounded RSS, pushers unaffected, flooder closed", () =>
    Effect.gen(function*() {
      // SQLite on disk, so that what the pusher stores is not in the server's heap (memory storage
      // would keep every pushed todo there and count it as growth)
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "mizu-flood-"))),
        (d) => Effect.sync(() => NodeFs.rmSync(d, { recursive: true, force: true }))
      )
      // A small young generation and a capped old space: V8 then collects often instead of growing
      // its heap between collections, so the server's RSS follows what it retains, not when V8
      // happens to collect (the pushes alone make tens of MiB of garbage a second, and without these
      // flags RSS moved by 0 to 90 MiB from run to run, flood or not; the retained heap stays ~45 MiB).
      // A flood that retained memory would show as growth, or kill the server at the cap.
      const server = yield* ServerProcess.start({
        DATABASE_URL: NodePath.join(dir, "flood.db"),
        PUBSUB_URL: "memory",
        NODE_OPTIONS: [process.env["NODE_OPTIONS"] ?? "", "--max-semi-space-size=2", "--max-old-space-size=128"].join(" ").trim()
      })
      const pid = server.child.pid ?? 0
      const base = server.url
      const flooder = yield* Effect.promise(() => startFlooder(wsUrl(base), 10))
      const result = yield* Effect.promise(async () => {
        // warm-up (JIT, keep-alive connection), then the quiet phase
        await pushFor(base, "flood:0", 2000, "warm")
        const quiet = await pushFor(base, "flood:0", 3000, "quiet")
        // the same push load for as long as the flood will last, without it: the heap grows to what
        // this load needs (V8 expands it before collecting), so the flood's growth is measured from
        // the peak of this control phase, not from a heap still growing for the pushes
        let rssBefore = rssOf(pid)
        const control = setInterval(() => (rssBefore = Math.max(rssBefore, rssOf(pid))), 50)
        await pushFor(base, "flood:0", 10_000, "control")
        clearInterval(control)
        rssBefore = Math.max(rssBefore, rssOf(pid))
        let rssMax = rssBefore
        const sampler = setInterval(() => (rssMax = Math.max(rssMax, rssOf(pid))), 50)
        const flooded = flooder.go()
        const during = await pushFor(base, "flood:0", 10_000, "flood")
        const summary = await flooded
        clearInterval(sampler)
        rssMax = Math.max(rssMax, rssOf(pid))
        const metrics = await (await fetch(`${base}/_sync/metrics`)).text()
        const rateLimited = Number(/mizu_live_closes_total\{reason="rate_limited"\} (\d+)/.exec(metrics)?.[1] ?? 0)
        const slow = Number(/mizu_live_closes_total\{reason="slow_consumer"\} (\d+)/.exec(metrics)?.[1] ?? 0)
        return { quiet, during, rssBefore, rssMax, summary, rateLimited, slow }
      })
      const { during, quiet, rateLimited, rssBefore, rssMax, slow, summary } = result
      const figures = {
        quiet: { pushes: quiet.length, p50: percentile(quiet, 50), p99: percentile(quiet, 99) },
        flood: { pushes: during.length, p50: percentile(during, 50), p99: percentile(during, 99) },
        p99Ratio: percentile(during, 99) / percentile(quiet, 99),
        rssBeforeMiB: rssBefore / 2 ** 20,
        rssMaxMiB: rssMax / 2 ** 20,
        rssGrowthMiB: (rssMax - rssBefore) / 2 ** 20,
        flooder: summary,
        serverCloses: { rate_limited: rateLimited, slow_consumer: slow }
      }
      console.log(`flood figures: ${JSON.stringify(figures)}`)
      assert.isBelow(rssMax - rssBefore, 64 * 2 ** 20, "server RSS growth during the flood")
      assert.isBelow(figures.p99Ratio, 5, "pusher p99 during the flood / quiet")
      // closed, not merely throttled: every connection the flooder made was closed by the server,
      // each time by the frame rate limit
      assert.isAtLeast(summary.connections, 1)
      assert.strictEqual(summary.closedByServer.length + summary.endedByFlooder, summary.connections)
      assert.isAtLeast(summary.closedByServer.length, 1)
      assert.isAtLeast(rateLimited, summary.closedByServer.length)
      assert.strictEqual(slow, 0)
    }), 150_000)
})
