/**
 * The background load of bench/e2e.ts, in a process of its own (so its work
 * does not run on the probe's event loop). Driven over IPC.
 *
 * Closed loop: `workers` writers, each with its own client_id and its own
 * scope (`<prefix>-<w>`, never the probe's), each sending one-mutation pushes
 * (`todo/create`, mutation ids 1, 2, 3 …) one after the other, the next as
 * soon as the previous one is answered, until `stop`.
 *
 * Commands:
 * - `start {port, workers, prefix}`: start the writers (fresh client ids on
 *   every start, so each start numbers from 1);
 * - `stop`: stop them, wait for the pushes in flight, and report pushes/s,
 *   errors and response times.
 */
import * as Control from "../lib/control.js"
import * as Load from "../lib/load.js"
import { summarize } from "../lib/stats.js"

interface Running {
  readonly stopping: { value: boolean }
  readonly done: Promise<void>
  readonly startedAt: number
  readonly latencies: Array<number>
  readonly errors: { count: number; first: string | undefined }
  readonly close: () => void
}

let running: Running | undefined
let starts = 0

const start = (args: Record<string, unknown>) => {
  if (running !== undefined) throw new Error("already running")
  const port = args["port"] as number
  const workers = args["workers"] as number
  const prefix = args["prefix"] as string
  const run = ++starts
  const http = Load.client(port, workers)
  const stopping = { value: false }
  const latencies: Array<number> = []
  const errors = { count: 0, first: undefined as string | undefined }
  const fail = (why: string) => {
    errors.count++
    errors.first ??= why
  }
  const worker = async (w: number) => {
    const scope = `${prefix}-${w}`
    const clientId = `${prefix}-r${run}-w${w}`
    for (let id = 1; !stopping.value; id++) {
      const body = JSON.stringify({
        client_id: clientId,
        mutations: [{ id, name: "todo/create", scope, args: { id: `${clientId}-${id}`, title: `background ${id}` } }]
      })
      const t0 = performance.now()
      // A keep-alive socket the server closed as it was reused fails before anything was read:
      // send the same push again (same mutation id, so exactly once).
      let response: Load.Response | undefined
      for (let attempt = 1; response === undefined; attempt++) {
        try {
          response = await http.post("/_sync/push", body)
        } catch (e) {
          if (attempt >= 3) {
            fail(String(e))
            return
          }
        }
      }
      latencies.push(performance.now() - t0)
      if (response.status !== 200) fail(`HTTP ${response.status}: ${response.body.slice(0, 200)}`)
      else {
        const result = (JSON.parse(response.body) as { results: Array<{ ok: boolean; duplicate?: boolean }> }).results[0]
        if (result === undefined || !result.ok || result.duplicate === true) fail(`unexpected result ${response.body.slice(0, 200)}`)
      }
    }
  }
  const done = Promise.all(Array.from({ length: workers }, (_, w) => worker(w))).then(() => undefined)
  running = { stopping, done, startedAt: performance.now(), latencies, errors, close: http.close }
  return null
}

const stop = async () => {
  const r = running
  if (r === undefined) return null
  r.stopping.value = true
  await r.done
  const elapsedMs = performance.now() - r.startedAt
  r.close()
  running = undefined
  return {
    pushes: r.latencies.length,
    pushesPerSec: (r.latencies.length / elapsedMs) * 1000,
    elapsedMs,
    errors: r.errors.count,
    firstError: r.errors.first,
    responseMs: summarize(r.latencies)
  }
}

Control.serve({ start, stop })
Control.ready({ pid: process.pid })
