/**
 * WebSocket clients for the live benchmarks, in a process of their own (so
 * their work does not run on the server's event loop). Driven over IPC.
 *
 * Commands:
 * - `open {port, n, concurrency, scope?, perMessageDeflate?}`: open `n`
 *   sessions, at most `concurrency` being opened at a time; each connects,
 *   and with a `scope` sends JOIN `{scopes: [scope]}` and waits for its
 *   REPLY. Reports the wall time and per-session times (connect → open,
 *   open → REPLY).
 * - `fanout {port, path, commits, scope, baseline}`: `commits` times, one at
 *   a time: note t0, POST the commit (our `/_sync/push` with one mutation, or
 *   the baseline's `/poke`), and wait until every open session has the POKE
 *   for that cursor (or 5 s). Each receipt is timed against its t0 in this
 *   process. Reports the latency of every delivery and of each commit's last
 *   delivery, and the push response time.
 * - `arm {scope, cursor}` then `collect {timeoutMs}`: for a commit sent by
 *   another process (bench/idle-sessions.ts, its clients split over several
 *   processes), the time each open session received a POKE of `scope` at
 *   `cursor` or later, on CLOCK_MONOTONIC (`process.hrtime`, one clock for
 *   every process of the machine), in ms; `collect` waits until every open
 *   session has it (or `timeoutMs`) and reports the receipt times and how
 *   many sessions did not get it.
 * - `close`: close every session.
 */
import WebSocket from "ws"
import * as Control from "../lib/control.js"
import * as Load from "../lib/load.js"
import { summarize } from "../lib/stats.js"

let sockets: Array<WebSocket> = []
/** The cursor each session has been poked to, and the poke handler of the running fanout. */
let onPoke: ((session: number, cursor: number, at: number, bytes: number) => void) | undefined
let frameBytes = 0
let heads: Record<string, number> = {}
/** performance.now() + this = CLOCK_MONOTONIC in ms (both are monotonic; the offset is fixed) */
const monotonicOffset = Number(process.hrtime.bigint()) / 1e6 - performance.now()
/** The armed poke (`arm`): its scope and cursor, and each session's receipt time (NaN until it came). */
let armed: { readonly scope: string; readonly cursor: number; readonly at: Float64Array; received: number; done: () => void } | undefined

const open = async (args: Record<string, unknown>) => {
  const port = args["port"] as number
  const n = args["n"] as number
  const concurrency = args["concurrency"] as number
  const scope = args["scope"] as string | undefined
  const path = (args["path"] as string | undefined) ?? "/_live/websocket"
  const perMessageDeflate = (args["perMessageDeflate"] as boolean | undefined) ?? true
  const toOpen: Array<number> = []
  const toReply: Array<number> = []
  const total: Array<number> = []
  let failed = 0
  let firstError: string | undefined
  let next = 0
  const start = performance.now()
  const one = () =>
    new Promise<void>((resolve) => {
      const index = sockets.length
      const t0 = performance.now()
      const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, "mizu-live-v1", { perMessageDeflate })
      sockets.push(ws)
      let tOpen = 0
      const fail = (why: string) => {
        failed++
        firstError ??= why
        resolve()
      }
      ws.once("error", (e) => fail(String(e)))
      ws.once("open", () => {
        tOpen = performance.now()
        toOpen.push(tOpen - t0)
        if (scope === undefined) {
          total.push(tOpen - t0)
          resolve()
          return
        }
        ws.send(JSON.stringify({ type: 1, ref: 1, payload: { scopes: [scope] } }))
      })
      ws.on("message", (data) => {
        const at = performance.now()
        const frame = JSON.parse(data.toString()) as { type: number; ref?: number; payload: Record<string, unknown> }
        if (frame.type === 11) {
          const cursor = frame.payload["cursor"] as number
          if (armed !== undefined && frame.payload["scope"] === armed.scope && cursor >= armed.cursor && Number.isNaN(armed.at[index])) {
            armed.at[index] = at + monotonicOffset
            if (++armed.received === armed.at.length) armed.done()
          }
          onPoke?.(index, cursor, at, (data as Buffer).length)
        } else if (frame.type === 5 && frame.ref === 1) {
          if (frame.payload["status"] !== "ok") return fail(JSON.stringify(frame))
          heads = { ...heads, ...(frame.payload["cursors"] as Record<string, number>) }
          toReply.push(at - tOpen)
          total.push(at - t0)
          resolve()
        }
      })
    })
  const worker = async () => {
    while (next < n) {
      next++
      await one()
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker))
  const elapsedMs = performance.now() - start
  return {
    opened: n - failed,
    failed,
    firstError,
    elapsedMs,
    perSecond: ((n - failed) / elapsedMs) * 1000,
    connectToOpenMs: summarize(toOpen),
    openToReplyMs: summarize(toReply),
    totalMs: summarize(total),
    heads
  }
}

const post = Load.postOk

const fanout = async (args: Record<string, unknown>) => {
  const port = args["port"] as number
  const commits = args["commits"] as number
  const scope = args["scope"] as string
  const baseline = args["baseline"] as boolean
  const gapMs = (args["gapMs"] as number | undefined) ?? 20
  const live = sockets.filter((ws) => ws.readyState === WebSocket.OPEN).length
  const all = new Float64Array(commits * live)
  let count = 0
  const last: Array<number> = []
  const first: Array<number> = []
  const response: Array<number> = []
  let missing = 0
  let head = heads[scope] ?? 0
  const clientId = `fanout-${Date.now()}`
  for (let c = 1; c <= commits; c++) {
    const cursor = head + 1
    let received = 0
    let tFirst = 0
    let tLast = 0
    let done: () => void = () => {}
    const allIn = new Promise<void>((resolve) => (done = resolve))
    const t0 = performance.now()
    onPoke = (_session, got, at, bytes) => {
      frameBytes = bytes
      if (got < cursor) return
      all[count++] = at - t0
      if (received === 0) tFirst = at
      tLast = at
      if (++received === live) done()
    }
    const body = baseline
      ? JSON.stringify({ scope, cursor })
      : JSON.stringify({ client_id: clientId, mutations: [{ id: c, name: "todo/create", scope, args: { id: `${clientId}-${c}`, title: `buy milk ${c}` } }] })
    const text = await post(port, baseline ? "/poke" : "/_sync/push", body)
    response.push(performance.now() - t0)
    const committed = (JSON.parse(text) as { results: Array<{ ok: boolean; cursor: number }> }).results[0]
    if (!committed.ok || committed.cursor !== cursor) throw new Error(`commit ${c}: expected cursor ${cursor}, got ${text}`)
    const timeout = new Promise<void>((resolve) => setTimeout(resolve, 5000))
    await Promise.race([allIn, timeout])
    if (received < live) missing += live - received
    if (received > 0) {
      first.push(tFirst - t0)
      last.push(tLast - t0)
    }
    head = cursor
    onPoke = undefined
    await new Promise((resolve) => setTimeout(resolve, gapMs))
  }
  heads[scope] = head
  return {
    sessions: live,
    commits,
    pokeFrameBytes: frameBytes,
    missing,
    deliveryMs: summarize(all.subarray(0, count)),
    firstDeliveryMs: summarize(first),
    lastDeliveryMs: summarize(last),
    responseMs: summarize(response)
  }
}

const arm = (args: Record<string, unknown>) => {
  const at = new Float64Array(sockets.length).fill(Number.NaN)
  // sessions not open do not count: they are reported as not open, not as missing
  let open = 0
  sockets.forEach((ws, i) => {
    if (ws.readyState === WebSocket.OPEN) open++
    else at[i] = Number.POSITIVE_INFINITY
  })
  armed = { scope: args["scope"] as string, cursor: args["cursor"] as number, at, received: sockets.length - open, done: () => {} }
  return { open }
}

const collect = async (args: Record<string, unknown>) => {
  const a = armed
  if (a === undefined) throw new Error("collect without arm")
  if (a.received < a.at.length) {
    await Promise.race([
      new Promise<void>((resolve) => (a.done = resolve)),
      new Promise<void>((resolve) => setTimeout(resolve, (args["timeoutMs"] as number | undefined) ?? 10_000))
    ])
  }
  armed = undefined
  const times: Array<number> = []
  let missing = 0
  for (const t of a.at) {
    if (Number.isNaN(t)) missing++
    else if (Number.isFinite(t)) times.push(t)
  }
  return { times, missing }
}

const close = async () => {
  const closing = sockets.map((ws) =>
    new Promise<void>((resolve) => {
      if (ws.readyState === WebSocket.CLOSED) return resolve()
      ws.once("close", () => resolve())
      ws.terminate()
    })
  )
  await Promise.all(closing)
  sockets = []
  heads = {}
  return { closed: closing.length }
}

Control.serve({ open, fanout, arm, collect, close, count: () => sockets.filter((ws) => ws.readyState === WebSocket.OPEN).length })
Control.ready({ pid: process.pid })
