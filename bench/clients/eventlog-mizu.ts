/**
 * Our clients for bench/eventlog.ts, in a process of their own, on our wire
 * protocol (PROTOCOL.md), connected to `servers/mizu.ts`. Driven over IPC.
 *
 * - Writers: the shared HTTP load generator (`lib/load.ts`: one keep-alive
 *   connection per writer, one request in flight each), each writer its own
 *   `client_id` numbering 1, 2, 3 …, one `todo/create` in scope `bench` per
 *   `POST /_sync/push`; a write is acknowledged by its 200 response with
 *   `ok: true`.
 * - The reader: one `ws` connection to `/_live/websocket` (subprotocol
 *   `mizu-live-v1`) that JOINs with `scopes: ["bench"]`; on every POKE whose
 *   cursor is beyond what it holds it pulls (`POST /_sync/pull`, limit 500,
 *   our client's default page, one keep-alive connection, one pull at a time;
 *   a POKE during a pull makes it pull again after), as our client does. A
 *   write is delivered when a pull response holding its change is parsed.
 *
 * Commands:
 * - `connect {port}`: open the reader and JOIN; resolves on the REPLY.
 * - `slice {ms, settleMs}`: the writers push for `ms`; then up to `settleMs`
 *   for the reader to hold every change written. Reports writes
 *   acknowledged, their response latency, and the delivery latency (push
 *   sent → the reader's pull response contains that change), all on this
 *   process's clock.
 */
import WebSocket from "ws"
import * as Control from "../lib/control.js"
import * as Load from "../lib/load.js"
import { summarize } from "../lib/stats.js"

const scope = "bench"
const pullLimit = 500

/** Push sent (performance.now()) by the created todo's id, until the reader holds its change. */
const sent = new Map<string, number>()
let deliveries: Array<number> = []
let received = 0
let port = 0
let socket: WebSocket | undefined
let puller: ReturnType<typeof Load.client> | undefined
/** What the reader holds, and the highest cursor a POKE announced. */
let cursor = 0
let announced = 0
let pulling = false
let pullErrors = 0
let firstPullError: string | undefined

interface PullBody {
  readonly changes: ReadonlyArray<{ readonly id: string }>
  readonly cursor: number
  readonly has_more: boolean
}

const pullLoop = async () => {
  if (pulling || puller === undefined) return
  pulling = true
  try {
    while (announced > cursor) {
      const response = await puller.post("/_sync/pull", JSON.stringify({ scope, cursor, limit: pullLimit }))
      const at = performance.now()
      if (response.status !== 200) throw new Error(`pull: HTTP ${response.status} ${response.body.slice(0, 200)}`)
      const body = JSON.parse(response.body) as PullBody
      for (const change of body.changes) {
        received++
        const t0 = sent.get(change.id)
        if (t0 === undefined) continue
        sent.delete(change.id)
        deliveries.push(at - t0)
      }
      cursor = body.cursor
      if (body.has_more && announced <= cursor) announced = cursor + 1
    }
  } catch (e) {
    pullErrors++
    firstPullError ??= String(e)
  } finally {
    pulling = false
  }
}

const connect = (args: Record<string, unknown>) =>
  new Promise<{ cursor: number }>((resolve, reject) => {
    port = args["port"] as number
    puller = Load.client(port, 1)
    const ws = new WebSocket(`ws://127.0.0.1:${port}/_live/websocket`, "mizu-live-v1")
    socket = ws
    ws.once("error", reject)
    ws.once("open", () => ws.send(JSON.stringify({ type: 1, ref: 1, payload: { scopes: [scope] } })))
    ws.on("message", (data) => {
      const frame = JSON.parse(String(data)) as { type: number; ref?: number; payload?: Record<string, unknown> }
      if (frame.type === 11 && frame.payload?.["scope"] === scope) {
        announced = Math.max(announced, frame.payload["cursor"] as number)
        void pullLoop()
      } else if (frame.type === 5 && frame.ref === 1) {
        if (frame.payload?.["status"] !== "ok") return reject(new Error(`JOIN: ${String(data)}`))
        const head = (frame.payload["cursors"] as Record<string, number> | undefined)?.[scope] ?? 0
        announced = Math.max(announced, head)
        void pullLoop()
        resolve({ cursor: head })
      } else if (frame.type === 8 || frame.type === 10) {
        console.error(`eventlog-mizu reader: ${String(data)}`)
      }
    })
  })

let sliceCounter = 0

const slice = async (args: Record<string, unknown>) => {
  const ms = args["ms"] as number
  const writers = args["writers"] as number
  const settleMs = (args["settleMs"] as number | undefined) ?? 5_000
  const run = ++sliceCounter
  sent.clear()
  deliveries = []
  const receivedBefore = received
  const pullErrorsBefore = pullErrors
  const result = await Load.run({
    port,
    path: "/_sync/push",
    workers: writers,
    maxPerWorker: 1_000_000,
    durationMs: ms,
    body: (w, seq) => {
      const clientId = `r${run}-c${w}`
      const id = `${clientId}-${seq + 1}`
      sent.set(id, performance.now())
      return JSON.stringify({ client_id: clientId, mutations: [{ id: seq + 1, name: "todo/create", scope, args: { id, title: `buy milk ${seq + 1}` } }] })
    },
    check: (response) => {
      const results = (JSON.parse(response.body) as { results: Array<{ ok: boolean; duplicate?: boolean }> }).results
      return results.length === 1 && results[0]?.ok === true && results[0].duplicate !== true ? undefined : `unexpected results ${response.body.slice(0, 200)}`
    }
  })
  const settleDeadline = performance.now() + settleMs
  while (sent.size > 0 && performance.now() < settleDeadline) await new Promise((r) => setTimeout(r, 5))
  const writes = result.requests - result.errors
  return {
    writes,
    errors: result.errors + (pullErrors - pullErrorsBefore),
    firstError: result.firstError ?? firstPullError,
    elapsedMs: result.elapsedMs,
    writesPerSec: (writes / result.elapsedMs) * 1000,
    ack: summarize(result.latencies),
    delivery: summarize(deliveries),
    deliverySamples: deliveries,
    undelivered: sent.size,
    received: received - receivedBefore
  }
}

Control.serve({
  connect,
  slice,
  close: () => {
    socket?.close()
    puller?.close()
    return null
  }
})
Control.ready({ pid: process.pid })
