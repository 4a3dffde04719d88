/**
 * The WebSocket side of bench/load.ts, in a process of its own (the load
 * starts several, each holding a share of the sessions). Driven over IPC.
 *
 * Times are read with `process.hrtime` (CLOCK_MONOTONIC, one clock for every
 * process on the machine), so a push's t0 taken in the pusher process and a
 * POKE's arrival taken here are comparable.
 *
 * Per session it keeps, for the running phase, the arrival time of the first
 * POKE that covered each cursor of its scope (cursor - base, as Float32 ms
 * since the phase started): a POKE `{scope, cursor}` covers every cursor up
 * to `cursor`, since pokes are conflated hints. At the end of a phase the
 * parent hands over each push's t0 and gets back a histogram of
 * (arrival - t0) over every (session, push) pair, and how many pairs were
 * never covered (missing pokes).
 *
 * Commands:
 * - `open {port, from, to, scopes, prefix, concurrency}`: open sessions
 *   `from..to-1`, session i JOINs scope `${prefix}${i % scopes}`.
 * - `phase-start {heads}`: reset every session's arrivals; `heads` is each
 *   scope's head now (the base).
 * - `phase-report {t0, phaseStart}`: `t0[scope][k]` is the t0 (hrtime ms) of
 *   cursor base+1+k; returns the histogram and counts.
 * - `firehose-start {port, topic, bytes, perSec}` / `firehose-stop`: one
 *   session that sends EVENT frames of about `bytes` on `topic` at `perSec`.
 * - `witness {port, topic}`: one session on `topic` that reads (counts
 *   BROADCASTs).
 * - `slow-open {port, scopes}`: one session that JOINs `scopes`, then never
 *   reads again (`ws.pause()`: the kernel buffers fill, then the server's).
 * - `slow-status`: what became of it (after `resume`: the frames and close
 *   code that reached it).
 * - `status`: open sessions, unexpected closes, ERROR frames.
 * - `close`: terminate everything.
 */
import WebSocket from "ws"
import * as Control from "../lib/control.js"

const now = () => Number(process.hrtime.bigint()) / 1e6

interface Session {
  readonly ws: WebSocket
  readonly scope: string
  /** arrival (ms since phaseStart) of the first poke covering cursor base+1+k */
  arrival: Float32Array
  /** how many cursors of this phase are covered */
  covered: number
  closed: boolean
}

const sessions: Array<Session> = []
let base: Record<string, number> = {}
let phaseStart = now()
let unexpectedCloses = 0
let firstUnexpectedClose: string | undefined
let errorFrames = 0
let firstErrorFrame: string | undefined
let stopping = false

const onPoke = (s: Session, cursor: number, at: number) => {
  const b = base[s.scope] ?? 0
  const upTo = cursor - b
  if (upTo <= s.covered) return
  if (upTo > s.arrival.length) {
    const bigger = new Float32Array(Math.max(upTo, s.arrival.length * 2))
    bigger.set(s.arrival)
    s.arrival = bigger
  }
  s.arrival.fill(at - phaseStart, s.covered, upTo)
  s.covered = upTo
}

const connect = (
  port: number,
  scopes: ReadonlyArray<string>,
  onFrame?: (frame: Frame, size: number) => void,
  onPoke?: (cursor: number) => void
) =>
  new Promise<{ ws: WebSocket; cursors: Record<string, number> }>((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/_live/websocket`, "mizu-live-v1", { perMessageDeflate: false })
    let joined = false
    ws.once("error", (e) => {
      if (!joined) reject(e)
    })
    ws.once("open", () => ws.send(JSON.stringify({ type: 1, ref: 1, payload: { scopes } })))
    ws.on("message", (data: Buffer) => {
      // POKE fast path (the bulk of the traffic): this process must not be what limits the rate.
      if (joined && onPoke !== undefined && data[8] === 49 && data[9] === 49 && data[10] === 44 && data.toString("latin1", 0, 8) === '{"type":') {
        const text = data.toString("latin1")
        const at = text.lastIndexOf('"cursor":')
        if (at > 0) return onPoke(parseInt(text.slice(at + 9), 10))
      }
      const frame = JSON.parse(data.toString()) as Frame
      if (!joined && frame.type === 5 && frame.ref === 1) {
        joined = true
        if (frame.payload["status"] !== "ok") {
          ws.terminate()
          return reject(new Error(`JOIN refused: ${JSON.stringify(frame.payload)}`))
        }
        return resolve({ ws, cursors: (frame.payload["cursors"] ?? {}) as Record<string, number> })
      }
      onFrame?.(frame, data.length)
    })
  })

interface Frame {
  readonly type: number
  readonly ref?: number
  readonly payload: Record<string, unknown>
}

const open = async (args: Record<string, unknown>) => {
  const port = args["port"] as number
  const from = args["from"] as number
  const to = args["to"] as number
  const scopes = args["scopes"] as number
  const prefix = args["prefix"] as string
  const concurrency = args["concurrency"] as number
  let next = from
  let failed = 0
  let firstError: string | undefined
  const t0 = now()
  const worker = async () => {
    while (next < to) {
      const i = next++
      const scope = `${prefix}${i % scopes}`
      try {
        let session: Session | undefined
        const { ws } = await connect(port, [scope], (frame) => {
          if (session === undefined) return
          if (frame.type === 11) onPoke(session, frame.payload["cursor"] as number, now())
          else if (frame.type === 8 || frame.type === 10) {
            errorFrames++
            firstErrorFrame ??= JSON.stringify(frame)
          }
        }, (cursor) => {
          if (session !== undefined) onPoke(session, cursor, now())
        })
        const s: Session = { ws, scope, arrival: new Float32Array(256), covered: 0, closed: false }
        session = s
        sessions.push(s)
        ws.on("close", (code, reason) => {
          s.closed = true
          if (!stopping) {
            unexpectedCloses++
            firstUnexpectedClose ??= `${code} ${reason.toString()}`
          }
        })
      } catch (e) {
        failed++
        firstError ??= String(e)
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  return { opened: to - from - failed, failed, firstError, elapsedMs: now() - t0 }
}

const phaseStartCmd = (args: Record<string, unknown>) => {
  base = args["heads"] as Record<string, number>
  phaseStart = args["phaseStart"] as number
  for (const s of sessions) {
    s.arrival.fill(0)
    s.covered = 0
  }
  return null
}

/** Histogram of latencies in 0.1 ms buckets. */
const BUCKET_MS = 0.1

const phaseReport = (args: Record<string, unknown>) => {
  const t0 = args["t0"] as Record<string, Array<number | null>>
  const counts = new Map<number, number>()
  let deliveries = 0
  let missing = 0
  let sessionsMissing = 0
  for (const s of sessions) {
    if (s.closed) continue
    const pushes = t0[s.scope] ?? []
    let missed = 0
    for (let k = 0; k < pushes.length; k++) {
      const t = pushes[k]
      if (t === null || t === undefined) continue
      if (k >= s.covered) {
        missed++
        continue
      }
      const latency = s.arrival[k] + phaseStart - t
      const bucket = Math.max(0, Math.floor(latency / BUCKET_MS))
      counts.set(bucket, (counts.get(bucket) ?? 0) + 1)
      deliveries++
    }
    missing += missed
    if (missed > 0) sessionsMissing++
  }
  return {
    deliveries,
    missing,
    sessionsMissing,
    histogram: [...counts.entries()],
    bucketMs: BUCKET_MS,
    ...status()
  }
}

// -- ephemeral traffic and the session that never reads ------------------------------------

let firehose: { ws: WebSocket; timer: NodeJS.Timeout; sent: number } | undefined
const firehoseStart = async (args: Record<string, unknown>) => {
  const topic = args["topic"] as string
  const bytes = args["bytes"] as number
  const perSec = args["perSec"] as number
  const { ws } = await connect(args["port"] as number, [topic])
  const blob = "x".repeat(bytes)
  const state = { ws, sent: 0, timer: undefined as unknown as NodeJS.Timeout }
  // 10 ms ticks; a fractional rate accumulates
  let due = 0
  state.timer = setInterval(() => {
    due += perSec / 100
    for (; due >= 1; due--) {
      ws.send(JSON.stringify({ type: 3, topic, payload: { name: "typing", values: { n: state.sent++, blob } } }))
    }
  }, 10)
  firehose = state
  return null
}
const firehoseStop = () => {
  if (firehose === undefined) return { sent: 0 }
  clearInterval(firehose.timer)
  const sent = firehose.sent
  firehose.ws.terminate()
  firehose = undefined
  return { sent }
}

let witness: { ws: WebSocket; received: number; bytes: number } | undefined
const witnessOpen = async (args: Record<string, unknown>) => {
  const state = { received: 0, bytes: 0, ws: undefined as unknown as WebSocket }
  const { ws } = await connect(args["port"] as number, [args["topic"] as string], (frame, size) => {
    if (frame.type === 14) {
      state.received++
      state.bytes += size
    }
  })
  state.ws = ws
  witness = state
  return null
}
const witnessStatus = () => witness === undefined ? null : { received: witness.received, bytes: witness.bytes, open: witness.ws.readyState === WebSocket.OPEN }

interface Slow {
  readonly ws: WebSocket
  readonly openedAt: number
  closedAt?: number
  closeCode?: number
  closeFrame?: string
  frames: number
}
let slow: Slow | undefined
const slowOpen = async (args: Record<string, unknown>) => {
  let state: Slow | undefined
  const { ws } = await connect(args["port"] as number, args["scopes"] as Array<string>, (frame) => {
    if (state === undefined) return
    state.frames++
    if (frame.type === 10) state.closeFrame = JSON.stringify(frame.payload)
  })
  state = { ws, openedAt: now(), frames: 0 }
  ws.on("close", (code) => {
    if (state === undefined) return
    state.closedAt = now()
    state.closeCode = code
  })
  // From here on nothing is read: the socket is paused, the kernel buffers fill up.
  ws.pause()
  slow = state
  return null
}
const slowStatus = (args: Record<string, unknown>) => {
  if (slow === undefined) return null
  if (args["resume"] === true) slow.ws.resume()
  return {
    openedAt: slow.openedAt,
    readyState: slow.ws.readyState,
    frames: slow.frames,
    closeCode: slow.closeCode ?? null,
    closeFrame: slow.closeFrame ?? null
  }
}

const status = () => ({
  open: sessions.filter((s) => !s.closed).length,
  unexpectedCloses,
  firstUnexpectedClose: firstUnexpectedClose ?? null,
  errorFrames,
  firstErrorFrame: firstErrorFrame ?? null
})

const close = async () => {
  stopping = true
  firehoseStop()
  const all = [...sessions.map((s) => s.ws), ...(witness === undefined ? [] : [witness.ws]), ...(slow === undefined ? [] : [slow.ws])]
  await Promise.all(all.map((ws) =>
    new Promise<void>((resolve) => {
      if (ws.readyState === WebSocket.CLOSED) return resolve()
      ws.once("close", () => resolve())
      ws.terminate()
    })
  ))
  sessions.length = 0
  witness = undefined
  slow = undefined
  stopping = false
  return { closed: all.length }
}

Control.serve({
  open,
  "phase-start": phaseStartCmd,
  "phase-report": phaseReport,
  "firehose-start": firehoseStart,
  "firehose-stop": firehoseStop,
  witness: witnessOpen,
  "witness-status": witnessStatus,
  "slow-open": slowOpen,
  "slow-status": slowStatus,
  status,
  close
})
Control.ready({ pid: process.pid })
