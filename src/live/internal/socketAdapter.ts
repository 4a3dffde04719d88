/**
 * The socket adapter: a `ws` WebSocket as the session protocol's
 * `Connection`, and the reader that feeds its inbox.
 *
 * Reading: the socket's own listeners (no reader fiber) count each frame
 * against the frame rate, decode it AT THE EDGE with the protocol's Schema
 * (`sessionProtocol.decode`: a failure is an `Invalid` value) and put it into
 * the inbox.
 *
 * Invariants:
 * - A client sends at most `maxFramesPerSecond` frames (a token bucket of
 *   `frameBurst`), counted as they arrive; over it the session is closed with
 *   `CLOSE {reason: "rate_limited"}` (4029) and not read again.
 * - The inbox holds at most `maxQueuedFrames` client frames (plus what `ws`
 *   had already read): above that the socket is paused until half of them
 *   are handled, so TCP pushes back on a sender faster than the session.
 * - Backpressure on writes: while the socket's send buffer is above the
 *   high-water mark, hub frames wait in a backlog (counted in bytes). Backlog
 *   + socket buffer over `maxPendingBytes` closes with `CLOSE {reason:
 *   "slow_consumer"}` (4008), so one slow reader never holds memory or slows
 *   anyone else. Every frame counts, except a presence `state` while it
 *   drains (it is written only below the high-water mark).
 * - Every close sends `CLOSE {reason}` then closes with the reason's code
 *   (`Live.CloseCode`); a peer not to be read from again (rate, slow
 *   consumer) is cut off after a grace period, so it holds no memory.
 *
 * @internal
 */
import * as Metric from "effect/Metric"
import type { RawData, WebSocket } from "ws"
import * as Metrics from "../../Metrics.js"
import * as Live from "../../protocol/Live.js"
import type { Limits } from "./sessionLimits.js"
import { refill } from "./sessionLimits.js"
import { BINARY, type Connection, decode, END, FLUSH, type Input } from "./sessionProtocol.js"

/** Sessions closed by the server, by `CLOSE` reason. */
const closes = Metric.counter("mizu_live_closes_total", { description: "live sessions closed by the server, by reason" })
const closesBy = Object.fromEntries(
  (Object.keys(Live.CloseCode) as Array<Live.CloseReason>).map((reason) => [reason, Metric.tagged(closes, "reason", reason)])
) as Record<Live.CloseReason, typeof closes>

/** How long a peer closed hard may take to read its CLOSE before it is cut off. */
const HARD_CLOSE_GRACE_MILLIS = 5000

/** The net.Socket `ws` writes to (`ws` has no public drain event). */
interface RawSocket {
  readonly writableNeedDrain: boolean
  once(event: "drain", f: () => void): void
}

const noop = () => {}

/** A `ws` socket as a session's `Connection`; its listeners put what the peer sends into `inbox`. */
export class SocketAdapter implements Connection {
  closed = false
  /** the last frame after JOIN (frames before JOIN do not count) */
  lastIncoming = Date.now()
  counting = false
  /** a drain listener is waiting to flush */
  drainHooked = false
  pendingBytes = 0
  /** bytes of presence `state` frames written since the socket was last below the high-water mark: not counted as pending */
  stateBytes = 0
  /** client frames in the inbox, not yet handled */
  queuedFrames = 0
  /** the socket is paused because the inbox is full */
  paused = false
  /** the frame rate's token bucket */
  frameTokens: number
  frameAt: number
  /** frames waiting for the socket to drain */
  readonly backlog: Array<string> = []

  constructor(readonly ws: WebSocket, readonly limits: Limits, readonly inbox: { readonly offer: (input: Input) => void }) {
    this.frameTokens = limits.frameBurst
    this.frameAt = Date.now()
  }

  // -- reading (the socket's listeners, bound once per session) ---------------------------------
  /** Start reading: every frame, and the socket's end, go into the inbox. */
  listen(): void {
    const ws = this.ws
    ws.on("message", this.onMessage)
    ws.once("close", this.onClose)
    ws.on("error", noop) // a protocol error (a frame over maxPayload, bad UTF-8) is followed by "close"
    if (ws.readyState !== 1) this.onClose()
  }
  readonly onMessage = (data: RawData, isBinary: boolean): void => {
    if (this.closed) return
    const now = Date.now()
    const { frameBurst, frameRate, maxQueued } = this.limits
    const tokens = refill(this.frameTokens, this.frameAt, now, frameRate, frameBurst)
    this.frameAt = now
    if (tokens < 1) {
      this.frameTokens = tokens
      return this.closeHard("rate_limited", `more than ${frameRate} frames per second`)
    }
    this.frameTokens = tokens - 1
    if (this.counting) this.lastIncoming = now
    this.inbox.offer(isBinary ? BINARY : decode(String(data)))
    if (++this.queuedFrames > maxQueued && !this.paused) {
      // TCP pushes back on the sender until the session has caught up
      this.paused = true
      this.ws.pause()
    }
  }
  readonly onClose = (): void => {
    this.closed = true
    this.inbox.offer(END)
  }
  joined(): void {
    this.counting = true
    this.lastIncoming = Date.now()
  }
  /** A client frame left the inbox: read again once half of the bound is free. */
  taken(): void {
    this.queuedFrames--
    if (this.paused && this.queuedFrames <= this.limits.maxQueued >> 1) {
      this.paused = false
      if (!this.closed) this.ws.resume()
    }
  }

  // -- writing -----------------------------------------------------------------------------------
  write(frame: string): void {
    if (this.ws.readyState !== 1) return
    this.ws.send(frame)
    if (this.overLimit()) this.slowConsumer()
  }
  reserve(bytes: number): void {
    this.pendingBytes += bytes
    if (this.overLimit()) this.slowConsumer()
  }
  send(frame: string): void {
    if (this.backlog.length > 0 || this.congested()) {
      this.backlog.push(frame)
      this.flushOnDrain()
      return
    }
    this.pendingBytes -= frame.length
    this.write(frame)
  }
  writeState(frame: string): void {
    if (this.ws.bufferedAmount <= this.limits.highWater) this.stateBytes = 0
    this.stateBytes += frame.length
    this.write(frame)
  }
  flushBacklog(): boolean {
    const backlog = this.backlog
    while (backlog.length > 0 && !this.congested()) {
      const frame = backlog.shift() as string
      this.pendingBytes -= frame.length
      this.write(frame)
    }
    if (backlog.length === 0) return true
    this.flushOnDrain()
    return false
  }
  hasBacklog(): boolean {
    return this.backlog.length > 0
  }
  congested(): boolean {
    if (this.ws.bufferedAmount <= this.limits.highWater) return false
    this.flushOnDrain()
    return true
  }
  /**
   * Pokes are hints: once the socket pushes back (the peer reads slower than we write),
   * newer pokes stay conflated, one per scope, instead of queueing behind what is
   * buffered; they go out when the socket drains. So a session behind on reading holds
   * at most one poke per scope, not up to `highWater` bytes of stale ones.
   */
  pokesBlocked(): boolean {
    // the socket's own back-pressure signal: a write past its high-water mark (16 KiB) and
    // no `drain` since; `drain` is then certain to come
    if (this.socket()?.writableNeedDrain !== true) return false
    this.flushOnDrain()
    return true
  }
  socket(): RawSocket | undefined {
    return (this.ws as unknown as { _socket?: RawSocket })._socket
  }
  /** When the socket has written out what it holds, a `Flush` brings out the backlog, states and pokes. */
  flushOnDrain(): void {
    if (this.drainHooked) return
    const socket = this.socket()
    if (socket === undefined || !socket.writableNeedDrain) return // nothing to wait for: a tick flushes
    this.drainHooked = true
    socket.once("drain", () => {
      this.drainHooked = false
      if (!this.closed) this.inbox.offer(FLUSH)
    })
  }
  /** Pending frames and the socket's buffer (less the presence state draining from it) over `maxPendingBytes`. */
  overLimit(): boolean {
    const buffered = this.ws.bufferedAmount
    if (buffered <= this.limits.highWater) this.stateBytes = 0
    return this.pendingBytes + Math.max(0, buffered - this.stateBytes) > this.limits.maxPending
  }
  slowConsumer(): void {
    if (this.closed) return
    Metrics.slowConsumerCloses.unsafeUpdate(1, [])
    this.closeHard("slow_consumer", `more than ${this.limits.maxPending} bytes pending`)
  }

  // -- closing -----------------------------------------------------------------------------------
  close(reason: Live.CloseReason, message?: string): void {
    if (this.closed) return
    this.closed = true
    const ws = this.ws
    if (ws.readyState === 1) {
      ws.send(Live.encodeServerFrame({ type: Live.FrameType.CLOSE, payload: { reason, ...(message === undefined ? {} : { message }) } }))
      ws.close(Live.CloseCode[reason], reason)
    }
    closesBy[reason].unsafeUpdate(1, [])
    this.inbox.offer(END)
  }
  /**
   * Close a peer that is not to be read from again: the CLOSE frame and the
   * close code reach a peer that reads within the grace period; one that
   * never reads is cut off then, so it holds no memory.
   */
  closeHard(reason: Live.CloseReason, message?: string): void {
    this.close(reason, message)
    const ws = this.ws
    ws.pause()
    setTimeout(() => ws.terminate(), HARD_CLOSE_GRACE_MILLIS).unref()
  }
  /** Stop reading and close the socket (the session has ended). */
  release(): void {
    this.closed = true
    const ws = this.ws
    ws.off("message", this.onMessage)
    if (ws.readyState === 0 || ws.readyState === 1) ws.close()
  }
}
