/**
 * One live session: a WebSocket connection as a scoped Effect.
 *
 * Shape: every input of the session — decoded client frames, pokes,
 * broadcasts and presence from the `LiveHub`, timer ticks — is put into ONE
 * inbox queue, and the session is the `Stream` of that inbox, consumed by one
 * fiber that handles each event in order and does every write. (One inbox fed
 * by all sides was measured cheaper than `Stream.merge` of several streams;
 * see bench/.) Closing the session's `Scope`, for whatever cause, releases its
 * hub subscriptions, its presence and its socket, in one finalizer.
 *
 * Cost: an idle session is held by thousands of connections at once, so it is
 * kept small (bench/README.md, "Fan-out": memory per idle session): the `ws` socket's own
 * listeners feed the inbox (no reader fiber), the session's state and its hub
 * sink are one object whose methods live on its prototype (no closures per
 * session), and subscriptions and presence are entries in a Map released
 * by the session's finalizer (no Scope per subscription). Limits are plain
 * numbers on that object (token buckets, deadlines), checked by the server's
 * one ticker and the socket's listener, never by a fiber of the session's own.
 *
 * Invariants:
 * - Client frames are handled one at a time, in arrival order.
 * - The inbox holds at most `maxQueuedFrames` client frames (plus what `ws`
 *   had already read): above that the socket is paused until the session
 *   catches up, so TCP pushes back on a sender faster than the session.
 * - A client sends at most `maxFramesPerSecond` frames (a token bucket of
 *   `frameBurst`), counted as they arrive; over it the session is closed with
 *   `CLOSE {reason: "rate_limited"}` and code 4029.
 * - The limits that close a session (JOIN deadline, idle timeout, slow
 *   consumer, rate) are enforced outside the inbox — by the socket's
 *   listener, by every write and by the server's ticker — so no backlog of
 *   frames delays them. Re-authorization (at the principal's `expiresAt`,
 *   and every `reauthorizeInterval`) goes through the inbox, behind at most
 *   `maxQueuedFrames` frames.
 * - Pokes are conflated per scope: the inbox holds at most one flush marker
 *   per scope; its cursor is the newest seen when it is written.
 * - Fast path: a POKE or a ready-encoded frame (broadcast, presence) that
 *   reaches a session parked on an empty inbox, with nothing pending and an
 *   uncongested socket, is written at once by the hub's dispatch, without
 *   waking the session's fiber: it is what that fiber would write next.
 * - Backpressure: when the socket's send buffer is above a high-water mark,
 *   broadcasts and presence wait in a backlog (counted in bytes) and pokes
 *   stay conflated. Backlog + socket buffer over `maxPendingBytes` closes the
 *   session with `CLOSE {reason: "slow_consumer"}` and code 4008, so one slow
 *   reader never holds memory or slows anyone else. Every frame counts
 *   (REPLY, ERROR, HEARTBEAT too), except the full presence `state` a
 *   subscriber gets: it is written only when the socket is below the
 *   high-water mark (held back, it is re-read fresh when written), and its
 *   bytes are not counted while they drain, so a topic's presence is never
 *   the reason a subscriber is closed.
 * - A subscription is made before the scope's head is read for the reply, so
 *   no commit falls between the `cursors` a client gets and its first poke.
 *   A scope the session already holds is not read again: its cursor is the
 *   newest the session knows (that head, or a later poke).
 * - Identity: the session id is told only to its own client (JOIN's REPLY).
 *   BROADCAST `from` and PRESENCE keys are per-topic handles, an HMAC of
 *   (session id, topic) under a random key of this process: the same for one
 *   session on one topic, unlinkable across topics and sessions, and no way
 *   back to the session id. A live page pushes under a random client id of
 *   its own, which no frame carries.
 * - Broadcast and presence need the `Authorizer`'s `broadcast` action on the
 *   topic, asked once per topic per session (the answer is kept until the
 *   session unsubscribes the topic); their payloads and rate are bounded.
 *
 * @since 0.1.0
 */
import * as Chunk from "effect/Chunk"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Metric from "effect/Metric"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as NodeCrypto from "node:crypto"
import type { RawData, WebSocket } from "ws"
import * as Metrics from "../Metrics.js"
import * as Live from "../protocol/Live.js"
import { type MutationResult, ProtocolError } from "../protocol/Sync.js"
import * as Authorizer from "../sync/Authorizer.js"
import * as StorageErrors from "../sync/StorageError.js"
import { ChangeLog } from "../sync/ChangeLog.js"
import { SyncEngine } from "../sync/SyncEngine.js"
import { LiveHub, type Sink } from "./LiveHub.js"
import * as Page from "./Page.js"

/**
 * Limits and timers of a session. Defaults: PROTOCOL.md's, and the ones
 * given here. Refusals are answered with `REPLY {status: "error", reason}`:
 * `presence_too_large`, `broadcast_too_large`, `rate_limited` (broadcasts),
 * `presence_full`, `forbidden`; the session stays open.
 */
export interface Options {
  /** Close a connection with no incoming frame after JOIN for this long (60 s). */
  readonly idleTimeout?: Duration.DurationInput
  /** Close a connection that has not JOINed within this long, with `join_timeout` (10 s). */
  readonly joinTimeout?: Duration.DurationInput
  /** Most scopes (topics) one session may subscribe to (100). */
  readonly maxScopes?: number
  /** Most bytes of frames pending for one session before it is a slow consumer (1 MiB). */
  readonly maxPendingBytes?: number
  /** Socket send buffer above which broadcasts wait in the backlog (64 KiB). */
  readonly highWaterBytes?: number
  /** Frames a client may send per second, on average (100); more closes it with `rate_limited` (4029). */
  readonly maxFramesPerSecond?: number
  /** Frames a client may send at once above that rate (200). */
  readonly frameBurst?: number
  /** Client frames waiting in a session's inbox above which its socket is paused (32). */
  readonly maxQueuedFrames?: number
  /** Largest presence meta, in bytes of JSON (1 KiB); larger is refused with `presence_too_large`. */
  readonly maxPresenceBytes?: number
  /** Largest broadcast payload, in bytes of JSON (16 KiB); larger is refused with `broadcast_too_large`. */
  readonly maxBroadcastBytes?: number
  /** Broadcasts and presence updates a session may send per second, on average (20); more are refused with `rate_limited`. */
  readonly maxBroadcastsPerSecond?: number
  /** Broadcasts and presence updates a session may send at once above that rate (40). */
  readonly broadcastBurst?: number
  /**
   * How often an open session's token is authorized again for every scope
   * and topic it holds (5 minutes; `Duration.infinity` turns it off). It is
   * also done when the earliest `expiresAt` of the principals seen passes.
   * A refusal closes the session with `CLOSE {reason: "unauthorized"}` (4001).
   */
  readonly reauthorizeInterval?: Duration.DurationInput
}

/** Where a server keeps its running sessions (ticks, shutdown); told synchronously. */
export interface Registry {
  readonly add: (handle: Handle) => void
  readonly delete: (handle: Handle) => void
}

/** What a session holds of its server beyond the registry (an admission slot): released once, when the session ends. */
export interface Lease {
  readonly release: () => void
}

/**
 * The POKE frame of the newest (scope, cursor): the hub hands one poke to
 * every sink in a row, so it is encoded once per publish, not per session.
 */
let lastPoke: { readonly scope: string; readonly cursor: number; readonly frame: string } | undefined
const pokeFrame = (scope: string, cursor: number): string => {
  if (lastPoke === undefined || lastPoke.scope !== scope || lastPoke.cursor !== cursor) {
    lastPoke = { scope, cursor, frame: Live.encodeServerFrame({ type: Live.FrameType.POKE, payload: { scope, cursor } }) }
  }
  return lastPoke.frame
}

/** The key of this process's handles: random, never leaves the process. */
const handleKey = NodeCrypto.randomBytes(32)

/**
 * A session's handle on a topic (its BROADCAST `from` and PRESENCE key
 * there): 128 bits of an HMAC of (session id, topic), so it neither reveals
 * the session id nor links the session's topics.
 */
const handleOf = (sessionId: string, topic: string): string =>
  NodeCrypto.createHmac("sha256", handleKey).update(sessionId).update("\0").update(topic).digest("base64url").slice(0, 22)

/** Sessions closed by the server, by `CLOSE` reason. */
const closes = Metric.counter("mizu_live_closes_total", { description: "live sessions closed by the server, by reason" })
const closesBy = Object.fromEntries(
  (Object.keys(Live.CloseCode) as Array<Live.CloseReason>).map((reason) => [reason, Metric.tagged(closes, "reason", reason)])
) as Record<Live.CloseReason, typeof closes>

/** What a session needs from context. */
export type Requirements = Scope.Scope | LiveHub | ChangeLog | Authorizer.Authorizer | Page.LivePages | SyncEngine

/** The handle the server keeps on a running session. */
export interface Handle {
  readonly id: string
  /**
   * Enforce the deadlines (JOIN, idle), the pending-bytes limit and the
   * re-authorization schedule as of `now`, and wake the session to flush
   * its backlog. Synchronous: it never waits behind the session's inbox.
   */
  readonly tick: (now: number) => void
  /** Close with `CLOSE {reason: "shutdown"}`. */
  readonly shutdown: () => void
}

type Event =
  | { readonly _tag: "Frame"; readonly text: string }
  | { readonly _tag: "Binary" }
  | { readonly _tag: "Flush" }
  | { readonly _tag: "Send"; readonly frame: string }
  | { readonly _tag: "Tick" }
  | { readonly _tag: "Reauthorize" }
  | { readonly _tag: "Shutdown" }
  | { readonly _tag: "Closed" }
  | { readonly _tag: "PageInfo"; readonly info: Page.Info }

const TICK: Event = { _tag: "Tick" }
const FLUSH: Event = { _tag: "Flush" }
const REAUTHORIZE: Event = { _tag: "Reauthorize" }
const SHUTDOWN: Event = { _tag: "Shutdown" }
const CLOSED: Event = { _tag: "Closed" }
const BINARY: Event = { _tag: "Binary" }
const CONTINUE = Effect.succeed(true)
const STOP = Effect.succeed(false)

const { FrameType } = Live

/** A server's limits, computed once per options object (shared by its sessions). */
interface Limits {
  readonly idleMillis: number
  readonly joinMillis: number
  readonly maxScopes: number
  readonly maxPending: number
  readonly highWater: number
  readonly frameRate: number
  readonly frameBurst: number
  readonly maxQueued: number
  readonly maxPresence: number
  readonly maxBroadcast: number
  readonly castRate: number
  readonly castBurst: number
  readonly reauthMillis: number
}

const limits = new WeakMap<Options, Limits>()
/** A rate as the token buckets use it: `Infinity` (no limit) as the largest finite number, so no bucket computes `0 × ∞`. */
const rate = (perSecond: number): number => Math.min(perSecond, Number.MAX_VALUE)
const limitsOf = (options: Options): Limits => {
  let l = limits.get(options)
  if (l === undefined) {
    l = {
      idleMillis: Duration.toMillis(options.idleTimeout ?? "60 seconds"),
      joinMillis: Duration.toMillis(options.joinTimeout ?? "10 seconds"),
      maxScopes: options.maxScopes ?? 100,
      maxPending: options.maxPendingBytes ?? 1024 * 1024,
      highWater: options.highWaterBytes ?? 64 * 1024,
      frameRate: rate(options.maxFramesPerSecond ?? 100),
      frameBurst: options.frameBurst ?? 200,
      maxQueued: options.maxQueuedFrames ?? 32,
      maxPresence: options.maxPresenceBytes ?? 1024,
      maxBroadcast: options.maxBroadcastBytes ?? 16 * 1024,
      castRate: rate(options.maxBroadcastsPerSecond ?? 20),
      castBurst: options.broadcastBurst ?? 40,
      reauthMillis: Duration.toMillis(options.reauthorizeInterval ?? "5 minutes")
    }
    limits.set(options, l)
  }
  return l
}

/** A tick that enforces a server's deadlines closely enough: a quarter of the shortest, between 10 ms and 1 s. */
export const tickMillis = (options: Options): number => {
  const l = limitsOf(options)
  return Math.max(10, Math.min(1000, Math.floor(Math.min(l.idleMillis, l.joinMillis, l.reauthMillis) / 4)))
}

/** What every session of a server shares: services and limits, resolved once per session start. */
interface Env {
  readonly hub: LiveHub["Type"]
  readonly log: ChangeLog["Type"]
  readonly authorizer: Authorizer.Authorizer["Type"]
  readonly pages: Page.LivePages["Type"]
  readonly engine: SyncEngine["Type"]
  readonly limits: Limits
  readonly registry: Registry
}

type SubscribeResult = Either.Either<Record<string, number>, { readonly reason: string; readonly message: string }>

/** A mounted live page and its own hub sink (pokes and broadcasts go to the page's `info`). */
interface Mounted {
  readonly def: Page.Any
  state: unknown
  readonly rendered: Map<string, string>
  ctx: Page.PageContext
  commands: Array<Page.Command>
  redirect: { readonly to: string; readonly replace: boolean } | undefined
  title: string | undefined
  readonly sink: Sink
  readonly topics: Set<string>
  /** The page's own client id for `pushMutation`: random, in no frame, so nobody else can push under it. */
  readonly clientId: string
  /** The last mutation id the server has recorded for `clientId`. */
  mutationId: number
  /** One `pushMutation` at a time (made with the first). */
  pushLock: Effect.Semaphore | undefined
}

/** The topic a page broadcasts on by default (not authorized: the page's own). */
const pageTopic = (def: Page.Any): string => def.topic ?? `page:${def.path}`

/** When the next periodic re-authorization is due: `interval` from now, ±10% so sessions opened together spread out. */
const nextReauth = (now: number, interval: number): number => now + interval * (0.9 + 0.2 * Math.random())

const jsonBytes = (value: unknown): number => value === undefined ? 0 : Buffer.byteLength(JSON.stringify(value), "utf8")

const noop = () => {}

/**
 * One session's state, and its hub sink and server handle: the methods are
 * shared on the prototype, so a session costs its fields, not a set of closures.
 */
class LiveSession implements Sink, Handle {
  readonly id: string = crypto.randomUUID()
  joined = false
  token: string | undefined = undefined
  /** the last frame after JOIN (frames before JOIN do not count) */
  lastIncoming = Date.now()
  readonly joinDeadline: number
  /** CLOSE was sent or the socket is gone: nothing more is written or handled. */
  closed = false
  tickQueued = false
  reauthQueued = false
  /** a drain listener is waiting to flush conflated pokes */
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
  /** the broadcast rate's token bucket */
  castTokens: number
  castAt: number
  /** the earliest `expiresAt` of the principals the authorizer yielded since the last re-authorization */
  expiresAt = Infinity
  /** when the next periodic re-authorization is due */
  reauthAt: number
  /** scopes subscribed to (each a hub sink registration) -> the newest cursor the session knows */
  readonly subscriptions = new Map<string, number>()
  /** topics this session is present on -> its key there */
  presence: Map<string, string> | undefined = undefined
  /** the `broadcast` answers asked so far: topic -> the session's handle there, or false (refused) */
  casts: Map<string, string | false> | undefined = undefined
  /** topics whose presence `state` is to be written when the socket has room */
  pendingStates: Set<string> | undefined = undefined
  /** conflated pokes: scope -> newest cursor not yet written */
  readonly pendingPokes = new Map<string, number>()
  /** frames waiting for the socket to drain */
  readonly backlog: Array<string> = []
  mounted: Mounted | undefined = undefined

  constructor(
    readonly ws: WebSocket,
    readonly inbox: Queue.Queue<Event>,
    readonly env: Env,
    /** The session's Scope: closed when the session ends (page timers are forked in it). */
    readonly scope: Scope.Scope,
    readonly lease: Lease | undefined
  ) {
    const now = Date.now()
    const l = env.limits
    this.joinDeadline = now + l.joinMillis
    this.frameTokens = l.frameBurst
    this.frameAt = now
    this.castTokens = l.castBurst
    this.castAt = now
    this.reauthAt = nextReauth(now, l.reauthMillis)
  }

  // -- the socket's listeners (bound once per session) ------------------------
  readonly onMessage = (data: RawData, isBinary: boolean): void => {
    if (this.closed) return
    const now = Date.now()
    const { frameBurst, frameRate, maxQueued } = this.env.limits
    const tokens = Math.min(frameBurst, this.frameTokens + ((now - this.frameAt) * frameRate) / 1000)
    this.frameAt = now
    if (tokens < 1) {
      this.frameTokens = tokens
      return this.closeHard("rate_limited", `more than ${frameRate} frames per second`)
    }
    this.frameTokens = tokens - 1
    if (this.joined) this.lastIncoming = now
    Queue.unsafeOffer(this.inbox, isBinary ? BINARY : { _tag: "Frame", text: String(data) })
    if (++this.queuedFrames > maxQueued && !this.paused) {
      // TCP pushes back on the sender until the session has caught up
      this.paused = true
      this.ws.pause()
    }
  }
  readonly onClose = (): void => {
    this.closed = true
    Queue.unsafeOffer(this.inbox, CLOSED)
  }
  /** A client frame left the inbox: read again once half of the bound is free. */
  frameTaken(): void {
    this.queuedFrames--
    if (this.paused && this.queuedFrames <= this.env.limits.maxQueued >> 1) {
      this.paused = false
      if (!this.closed) this.ws.resume()
    }
  }

  // -- writes ------------------------------------------------------------------
  /** Write a frame; every write counts toward the pending-bytes limit. */
  write(frame: string): void {
    if (this.ws.readyState !== 1) return
    this.ws.send(frame)
    if (this.overLimit()) this.slowConsumer()
  }
  emit(frame: Live.ServerFrame): void {
    this.write(Live.encodeServerFrame(frame))
  }
  reply(ref: number | undefined, payload: Live.ReplyPayload): void {
    this.emit({ type: FrameType.REPLY, ...(ref === undefined ? {} : { ref }), payload })
  }
  replyError(ref: number | undefined, reason: string, message?: string): void {
    this.reply(ref, { status: "error", reason, ...(message === undefined ? {} : { message }) })
  }
  error(code: string, message: string, recoverable = true): void {
    this.emit({ type: FrameType.ERROR, payload: { code, message, recoverable } })
  }
  /** Send `CLOSE {reason}` and close the socket with the reason's code; the session's fiber stops at its next event. */
  close(reason: Live.CloseReason, message?: string): void {
    if (this.closed) return
    this.closed = true
    const ws = this.ws
    if (ws.readyState === 1) {
      ws.send(Live.encodeServerFrame({ type: FrameType.CLOSE, payload: { reason, ...(message === undefined ? {} : { message }) } }))
      ws.close(Live.CloseCode[reason], reason)
    }
    closesBy[reason].unsafeUpdate(1, [])
    Queue.unsafeOffer(this.inbox, CLOSED)
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
    setTimeout(() => ws.terminate(), 5000).unref()
  }
  slowConsumer(): void {
    if (this.closed) return
    Metrics.slowConsumerCloses.unsafeUpdate(1, [])
    this.closeHard("slow_consumer", `more than ${this.env.limits.maxPending} bytes pending`)
  }
  /** Pending frames and the socket's buffer (less the presence state draining from it) over `maxPendingBytes`. */
  overLimit(): boolean {
    const buffered = this.ws.bufferedAmount
    if (buffered <= this.env.limits.highWater) this.stateBytes = 0
    return this.pendingBytes + Math.max(0, buffered - this.stateBytes) > this.env.limits.maxPending
  }
  congested(): boolean {
    return this.ws.bufferedAmount > this.env.limits.highWater
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
  /** The net.Socket `ws` writes to (`ws` has no public drain event). */
  socket(): { readonly writableNeedDrain: boolean; once(event: "drain", f: () => void): void } | undefined {
    return (this.ws as unknown as { _socket?: { readonly writableNeedDrain: boolean; once(event: "drain", f: () => void): void } })._socket
  }
  /** When the socket has written out what it holds, wake the session to flush the backlog, states and pokes. */
  flushOnDrain(): void {
    if (this.drainHooked) return
    const socket = this.socket()
    if (socket === undefined || !socket.writableNeedDrain) return // nothing to wait for: a tick flushes
    this.drainHooked = true
    socket.once("drain", () => {
      this.drainHooked = false
      if (!this.closed && this.needsFlush()) Queue.unsafeOffer(this.inbox, FLUSH)
    })
  }
  needsFlush(): boolean {
    return this.backlog.length > 0 || this.pendingPokes.size > 0 || (this.pendingStates !== undefined && this.pendingStates.size > 0)
  }
  /** The session fiber is parked on its inbox: nothing queued, nothing being handled. */
  parked(): boolean {
    const size = this.inbox.unsafeSize()
    return size._tag === "Some" && size.value < 0
  }

  // -- what the hub reaches (Sink) ---------------------------------------------------------
  poke(scope: string, cursor: number): void {
    if (this.closed) return
    const known = this.subscriptions.get(scope)
    if (known !== undefined && cursor > known) this.subscriptions.set(scope, cursor)
    // Fast path: an idle, uncongested session gets the POKE written now, in the hub's
    // dispatch loop, without waking its fiber; it is what that fiber would write next anyway.
    if (this.joined && this.pendingPokes.size === 0 && this.backlog.length === 0 && this.parked() && !this.pokesBlocked()) {
      this.ws.send(pokeFrame(scope, cursor))
      Metrics.pokesSent.unsafeUpdate(1, [])
      return
    }
    const prev = this.pendingPokes.get(scope)
    if (prev === undefined) {
      this.pendingPokes.set(scope, cursor)
      Queue.unsafeOffer(this.inbox, FLUSH)
    } else if (cursor > prev) {
      this.pendingPokes.set(scope, cursor)
    }
  }
  /** A ready-encoded frame (broadcast, presence): the same fast path as pokes, else through the inbox. */
  send(frame: string): void {
    if (this.closed) return
    if (this.joined && this.backlog.length === 0 && !this.congested() && this.parked()) {
      this.ws.send(frame)
      return
    }
    this.pendingBytes += frame.length
    if (this.overLimit()) return this.slowConsumer()
    Queue.unsafeOffer(this.inbox, { _tag: "Send", frame })
  }
  /**
   * A topic's whole presence, on subscribing: written now on the fast path;
   * otherwise noted, and written fresh once the session gets to it with room
   * in the socket. Diffs sent meanwhile are written too: applied after the
   * newer state they change nothing.
   */
  sendState(topic: string, frame: string): void {
    if (this.closed) return
    if (this.joined && this.backlog.length === 0 && !this.congested() && this.parked()) return this.writeState(frame)
    ;(this.pendingStates ??= new Set()).add(topic)
    Queue.unsafeOffer(this.inbox, FLUSH)
  }
  writeState(frame: string): void {
    if (this.ws.bufferedAmount <= this.env.limits.highWater) this.stateBytes = 0
    this.stateBytes += frame.length
    this.write(frame)
  }

  // -- what the server reaches (Handle) ----------------------------------------------------
  // Limits are enforced here, synchronously; only flushing and re-authorization go through the
  // inbox, and a session with nothing to flush is not woken (at most one TICK waits in an inbox).
  tick(now: number): void {
    if (this.closed) return
    const l = this.env.limits
    if (!this.joined && now >= this.joinDeadline) return this.close("join_timeout", `no JOIN within ${l.joinMillis} ms`)
    if (now - this.lastIncoming > l.idleMillis) return this.close("idle_timeout", `no frame for ${l.idleMillis} ms`)
    if (this.overLimit()) return this.slowConsumer()
    if (this.joined && !this.reauthQueued && (now >= this.expiresAt || now >= this.reauthAt)) {
      this.reauthQueued = true
      Queue.unsafeOffer(this.inbox, REAUTHORIZE)
    }
    if (this.tickQueued || !this.needsFlush()) return
    this.tickQueued = true
    Queue.unsafeOffer(this.inbox, TICK)
  }
  shutdown(): void {
    Queue.unsafeOffer(this.inbox, SHUTDOWN)
  }

  flush(): void {
    while (this.backlog.length > 0 && !this.congested()) {
      const frame = this.backlog.shift() as string
      this.pendingBytes -= frame.length
      this.write(frame)
    }
    if (this.backlog.length > 0) return this.flushOnDrain()
    const states = this.pendingStates
    if (states !== undefined) {
      for (const topic of states) {
        if (this.congested()) return this.flushOnDrain()
        states.delete(topic)
        const frame = this.env.hub.presenceState(topic)
        if (frame !== undefined) this.writeState(frame)
      }
    }
    if (this.pokesBlocked()) return
    for (const [scope, cursor] of this.pendingPokes) {
      this.pendingPokes.delete(scope)
      this.write(pokeFrame(scope, cursor))
      Metrics.pokesSent.unsafeUpdate(1, [])
    }
  }

  // -- authorization ----------------------------------------------------------
  /** Ask the authorizer, with the session's token; the principal's expiry is kept for re-authorization. */
  authorize(action: Authorizer.Action, scope: string): Effect.Effect<void, Authorizer.Denied> {
    return Effect.map(
      this.env.authorizer.authorize({ action, scope, token: this.token, clientId: undefined, headers: {} }),
      (principal) => {
        if (principal.expiresAt !== undefined && principal.expiresAt < this.expiresAt) this.expiresAt = principal.expiresAt
      }
    )
  }
  authorizeAll(action: Authorizer.Action, scopes: Iterable<string>): Effect.Effect<void, Authorizer.Denied> {
    return Effect.forEach(scopes, (scope) => this.authorize(action, scope), { discard: true })
  }
  /** The session's handle on `topic` if it may broadcast there, else false; asked once per topic. */
  castGrant(topic: string): Effect.Effect<string | false> {
    const known = this.casts?.get(topic)
    if (known !== undefined) return Effect.succeed(known)
    return Effect.map(Effect.either(this.authorize("broadcast", topic)), (result) => {
      const answer = Either.isRight(result) ? handleOf(this.id, topic) : false
      ;(this.casts ??= new Map()).set(topic, answer)
      return answer
    })
  }
  /** One token of the broadcast bucket, if there is one. */
  takeCast(): boolean {
    const now = Date.now()
    const { castBurst, castRate } = this.env.limits
    const tokens = Math.min(castBurst, this.castTokens + ((now - this.castAt) * castRate) / 1000)
    this.castAt = now
    if (tokens < 1) {
      this.castTokens = tokens
      return false
    }
    this.castTokens = tokens - 1
    return true
  }
  /**
   * Authorize the session's token again for everything it holds (its
   * scopes, the topics it broadcasts on, its page's scopes); a refusal, or a
   * principal already expired, closes it with `unauthorized`.
   */
  reauthorize(): Effect.Effect<boolean> {
    this.reauthQueued = false
    const checks: Array<readonly [Authorizer.Action, string]> = []
    for (const scope of this.subscriptions.keys()) checks.push(["subscribe", scope])
    if (this.casts !== undefined) for (const [topic, handle] of this.casts) if (handle !== false) checks.push(["broadcast", topic])
    const m = this.mounted
    if (m !== undefined) {
      const own = pageTopic(m.def)
      for (const topic of m.topics) if (topic !== own) checks.push(["subscribe", topic])
    }
    const now = Date.now()
    this.expiresAt = Infinity
    this.reauthAt = nextReauth(now, this.env.limits.reauthMillis)
    return Effect.match(Effect.forEach(checks, ([action, scope]) => this.authorize(action, scope), { discard: true }), {
      onFailure: (denied) => {
        this.close("unauthorized", denied.message)
        return false
      },
      onSuccess: () => {
        if (this.expiresAt > Date.now()) return true
        this.close("unauthorized", "the credentials have expired")
        return false
      }
    })
  }

  // -- subscriptions ----------------------------------------------------------
  /**
   * Subscribe to scopes (all or nothing) and return their cursors. Only the
   * scopes not yet held are authorized and read: the others' cursors are
   * what the session knows (re-authorization covers them).
   */
  subscribe(scopes: ReadonlyArray<string>): Effect.Effect<SubscribeResult> {
    const self = this
    return Effect.gen(function*() {
      const { hub, log } = self.env
      const { maxScopes } = self.env.limits
      const wanted = [...new Set(scopes)]
      const fresh = wanted.filter((s) => !self.subscriptions.has(s))
      if (self.subscriptions.size + fresh.length > maxScopes) {
        return Either.left({ reason: "too_many_scopes", message: `at most ${maxScopes} scopes per session` })
      }
      if (fresh.length > 0) {
        const denied = yield* self.authorizeAll("subscribe", fresh).pipe(Effect.flip, Effect.option)
        // PROTOCOL.md: a scope the caller may not read is `forbidden` on live, whether the token is bad or the scope not its
        if (denied._tag === "Some") return Either.left({ reason: "forbidden", message: denied.value.message })
        for (const scope of fresh) {
          // added before the registration yields, so the finalizer removes it whatever happens next
          self.subscriptions.set(scope, 0)
          yield* hub.add(scope, self)
        }
        const heads = yield* Effect.either(Effect.forEach(fresh, (scope) => log.head(scope)))
        if (Either.isLeft(heads)) {
          yield* self.unsubscribe(fresh)
          return Either.left({ reason: "unavailable", message: "storage unavailable, retry later" })
        }
        fresh.forEach((scope, i) => {
          const known = self.subscriptions.get(scope)
          if (known !== undefined && heads.right[i] > known) self.subscriptions.set(scope, heads.right[i])
        })
      }
      return Either.right(Object.fromEntries(wanted.map((scope) => [scope, self.subscriptions.get(scope) ?? 0])))
    })
  }

  unsubscribe(scopes: ReadonlyArray<string>): Effect.Effect<void> {
    const { hub } = this.env
    return Effect.forEach(scopes, (scope) => {
      this.casts?.delete(scope)
      this.pendingStates?.delete(scope)
      const key = this.presence?.get(scope)
      const untrack = key === undefined ? Effect.void : hub.untrack(scope, key)
      this.presence?.delete(scope)
      if (!this.subscriptions.delete(scope)) return untrack
      this.pendingPokes.delete(scope)
      return Effect.zipRight(untrack, hub.remove(scope, this))
    }, { discard: true })
  }

  /** Everything the session holds, released: its socket, hub sinks, presence, page. */
  release(): Effect.Effect<void> {
    this.closed = true
    this.env.registry.delete(this)
    this.lease?.release()
    Queue.unsafeOffer(this.inbox, CLOSED)
    const ws = this.ws
    ws.off("message", this.onMessage)
    if (ws.readyState === 0 || ws.readyState === 1) ws.close()
    const { hub } = this.env
    const m = this.mounted
    return Effect.all([
      Effect.forEach(this.presence ?? [], ([topic, key]) => hub.untrack(topic, key), { discard: true }),
      Effect.forEach(this.subscriptions.keys(), (scope) => hub.remove(scope, this), { discard: true }),
      m === undefined ? Effect.void : Effect.forEach(m.topics, (topic) => hub.remove(topic, m.sink), { discard: true }),
      Queue.shutdown(this.inbox),
      Metric.incrementBy(Metrics.sessionsOpen, -1)
    ], { discard: true })
  }

  // -- client frames ----------------------------------------------------------
  onFrame(frame: Live.ClientFrame): Effect.Effect<void> {
    if (!this.joined && frame.type !== FrameType.JOIN) {
      this.error("not_joined", "the first frame must be JOIN")
      return Effect.void
    }
    const self = this
    switch (frame.type) {
      case FrameType.JOIN: {
        if (this.joined) {
          this.replyError(frame.ref, "already_joined", "this session has joined")
          return Effect.void
        }
        this.token = frame.payload.token
        const url = frame.payload.url
        const def = url === undefined ? undefined : this.env.pages.find(url)
        if (url !== undefined && def === undefined) {
          this.emit({ type: FrameType.ERROR, payload: { code: "page_not_found", message: `no live page at ${url}`, recoverable: false } })
          this.close("page_not_found")
          return Effect.void
        }
        return Effect.gen(function*() {
          const result = yield* self.subscribe(frame.payload.scopes ?? [])
          if (Either.isLeft(result)) return self.replyError(frame.ref, result.left.reason, result.left.message)
          if (def !== undefined && url !== undefined) {
            const regions = yield* mountPage(self, def, url, frame.payload.params ?? {})
            if (Either.isLeft(regions)) return self.replyError(frame.ref, "mount_failed", regions.left)
            self.joined = true
            self.lastIncoming = Date.now()
            return self.reply(frame.ref, { status: "ok", session_id: self.id, cursors: result.right, regions: regions.right })
          }
          self.joined = true
          self.lastIncoming = Date.now()
          self.reply(frame.ref, { status: "ok", session_id: self.id, cursors: result.right })
        })
      }
      case FrameType.SUBSCRIBE:
        return Effect.map(this.subscribe(frame.payload.scopes), (result) =>
          Either.isLeft(result)
            ? this.replyError(frame.ref, result.left.reason, result.left.message)
            : this.reply(frame.ref, { status: "ok", cursors: result.right }))
      case FrameType.UNSUBSCRIBE:
        return Effect.map(this.unsubscribe(frame.payload.scopes), () => this.reply(frame.ref, { status: "ok" }))
      case FrameType.HEARTBEAT:
        this.emit({
          type: FrameType.HEARTBEAT,
          ...(frame.ref === undefined ? {} : { ref: frame.ref }),
          payload: frame.payload.ping === undefined ? {} : { pong: frame.payload.ping }
        })
        return Effect.void
      case FrameType.LEAVE:
        this.close("normal")
        return Effect.void
      case FrameType.EVENT: {
        const topic = frame.topic ?? (typeof frame.payload["topic"] === "string" ? frame.payload["topic"] : undefined)
        const m = this.mounted
        if (topic === undefined && m !== undefined) {
          const event: Page.PageEvent = { name: frame.payload.name, values: frame.payload.values ?? {} }
          // EVENT -> REPLY ok -> PATCH; a failed handler answers REPLY error and keeps the session.
          return Effect.map(
            runPage(this, m, m.def.handle(event, m.state, m.ctx), () => this.reply(frame.ref, { status: "ok" })),
            (result) => Either.isLeft(result) ? this.replyError(frame.ref, "handler_error", result.left) : undefined
          )
        }
        if (topic === undefined) return Effect.sync(() => this.replyError(frame.ref, "no_handler", "EVENT needs a topic"))
        if (!this.subscriptions.has(topic)) {
          return Effect.sync(() => this.replyError(frame.ref, "not_subscribed", `not subscribed to ${topic}`))
        }
        return Effect.flatMap(this.castGrant(topic), (key) => this.relay(frame, topic, key))
      }
    }
  }

  /** An EVENT on a topic: presence (tracked) or a broadcast (relayed), within the session's limits. */
  relay(frame: Extract<Live.ClientFrame, { type: typeof FrameType.EVENT }>, topic: string, key: string | false): Effect.Effect<void> {
    const ref = frame.ref
    if (key === false) {
      this.replyError(ref, "forbidden", `may not broadcast on ${topic}`)
      return Effect.void
    }
    const { castRate, maxBroadcast, maxPresence } = this.env.limits
    const presence = frame.payload.name === "presence"
    const body = presence ? (frame.payload.values ?? {}) : (frame.payload.values ?? frame.payload["payload"])
    const limit = presence ? maxPresence : maxBroadcast
    if (jsonBytes(body) > limit) {
      this.replyError(ref, presence ? "presence_too_large" : "broadcast_too_large", `at most ${limit} bytes of JSON`)
      return Effect.void
    }
    if (!this.takeCast()) {
      this.replyError(ref, "rate_limited", `at most ${castRate} broadcasts and presence updates per second`)
      return Effect.void
    }
    // the ack tells the client its own key on the topic (its PRESENCE key and BROADCAST `from` there)
    const ok = () => {
      if (ref !== undefined) this.reply(ref, { status: "ok", result: { key } })
    }
    const { hub } = this.env
    if (!presence) return Effect.map(hub.broadcast(topic, frame.payload.name, body, key, this.id), ok)
    const tracked = this.presence ??= new Map()
    const existed = tracked.has(topic)
    // noted before tracking yields, so the finalizer untracks it whatever happens next
    tracked.set(topic, key)
    return Effect.map(hub.trackUnscoped(topic, key, body as Readonly<Record<string, unknown>>), (ok_) => {
      if (ok_) return ok()
      if (!existed) tracked.delete(topic)
      this.replyError(ref, "presence_full", `${topic} has as many presence entries as it may hold`)
    })
  }

  handle(event: Event): Effect.Effect<boolean> {
    if (this.closed) return STOP
    switch (event._tag) {
      case "Frame": {
        this.frameTaken()
        const decoded = Live.decodeClientFrame(event.text)
        if (Either.isLeft(decoded)) {
          this.error("invalid_message", decoded.left)
          return CONTINUE
        }
        return Effect.map(this.onFrame(decoded.right), () => !this.closed)
      }
      case "Binary":
        this.frameTaken()
        this.error("invalid_message", "frames must be JSON text")
        return CONTINUE
      case "Flush":
        // Behind the backlog, or while the socket has not drained, pokes stay conflated in
        // pendingPokes; the drain (or a tick) brings them out, all at once.
        this.flush()
        return CONTINUE
      case "Send": {
        if (this.backlog.length > 0 || this.congested()) {
          this.backlog.push(event.frame)
          this.flushOnDrain()
          return CONTINUE
        }
        this.pendingBytes -= event.frame.length
        this.write(event.frame)
        return CONTINUE
      }
      case "Tick":
        this.tickQueued = false
        this.flush()
        return CONTINUE
      case "Reauthorize":
        return this.reauthorize()
      case "PageInfo": {
        const m = this.mounted
        if (m === undefined || m.def.info === undefined) return CONTINUE
        return Effect.as(
          Effect.map(runPage(this, m, m.def.info(event.info, m.state, m.ctx)), (result) => {
            if (Either.isLeft(result)) {
              this.emit({ type: FrameType.ERROR, payload: { code: "handler_error", message: result.left, recoverable: true } })
            }
          }),
          true
        )
      }
      case "Shutdown":
        this.close("shutdown")
        return STOP
      case "Closed":
        return STOP
    }
  }
}

// -- live page ----------------------------------------------------------------------

const pageOffer = (session: LiveSession, info: Page.Info) => {
  if (!session.closed) Queue.unsafeOffer(session.inbox, { _tag: "PageInfo", info })
}

const pageSubscribe = (session: LiveSession, m: Mounted, scope: string) =>
  Effect.suspend(() => {
    if (m.topics.has(scope)) return Effect.void
    m.topics.add(scope)
    return session.env.hub.add(scope, m.sink)
  })

/**
 * `ctx.pushMutation`: one at a time, under the page's own client id, and the
 * page's mutation id moves on only when the server has recorded the mutation
 * (a 503 or a refusal leaves it, so the next push is not `out_of_order`). An
 * `out_of_order` (the server lost the page's ids) renumbers from `expected`,
 * once.
 */
const pushFromPage = (
  session: LiveSession,
  m: Mounted,
  mutation: Parameters<Page.PageContext["pushMutation"]>[0]
): Effect.Effect<MutationResult, ProtocolError> => {
  const { engine } = session.env
  const attempt = (renumber: boolean): Effect.Effect<MutationResult, ProtocolError> =>
    Effect.suspend(() => {
      const id = m.mutationId + 1
      return Effect.flatMap(
        engine.push({ client_id: m.clientId, mutations: [{ ...mutation, id }] }, { token: session.token, headers: {} }),
        (response) => {
          const result = response.results[0]
          if (result.ok || result.error?.code !== "out_of_order") {
            m.mutationId = id
            return Effect.succeed(result)
          }
          const expected = result.error.expected
          if (!renumber || expected === undefined) return Effect.succeed(result)
          m.mutationId = expected - 1
          return attempt(false)
        }
      )
    })
  const lock = m.pushLock ??= Effect.unsafeMakeSemaphore(1)
  return lock.withPermits(1)(attempt(true))
}

const makePageContext = (session: LiveSession, m: Mounted, params: Readonly<Record<string, unknown>>): Page.PageContext => {
  const { hub, log } = session.env
  return {
    sessionId: session.id,
    params,
    pushMutation: (mutation) => pushFromPage(session, m, mutation),
    broadcast: (event, payload, topic = pageTopic(m.def)) =>
      Effect.flatMap(session.castGrant(topic), (key) =>
        key === false
          ? Effect.logWarning("live page broadcast refused: the token may not broadcast on this topic", { topic })
          : hub.broadcast(topic, event, payload, key, session.id)),
    subscribe: (scope) =>
      Effect.gen(function*() {
        const denied = yield* session.authorize("subscribe", scope).pipe(Effect.flip, Effect.option)
        if (denied._tag === "Some") {
          return yield* Authorizer.toProtocolError(denied.value)
        }
        yield* pageSubscribe(session, m, scope)
        return yield* log.head(scope).pipe(
          Effect.mapError(StorageErrors.toProtocolError)
        )
      }),
    sendAfter: (message, delay) =>
      Effect.sleep(delay).pipe(
        Effect.zipRight(Effect.sync(() => pageOffer(session, { _tag: "Message", message }))),
        Effect.forkIn(session.scope),
        Effect.asVoid
      ),
    command: (...commands) =>
      Effect.sync(() => {
        m.commands.push(...commands)
      }),
    redirect: (to, replace = false) =>
      Effect.sync(() => {
        m.redirect = { to, replace }
      })
  }
}

/** Run a page step; on success keep the new state and send what changed (PATCH, COMMAND, REDIRECT). */
const runPage = (
  session: LiveSession,
  m: Mounted,
  step: Effect.Effect<unknown, Page.PageError, any>,
  before?: () => void
): Effect.Effect<Either.Either<void, string>> =>
  session.env.pages.provide(step as Effect.Effect<unknown, Page.PageError>).pipe(
    Effect.flatMap((next) => Page.checkState(m.def, next)),
    Effect.either,
    Effect.catchAllCause((cause) =>
      Effect.as(
        Effect.logError("live page handler failed", cause),
        Either.left(new Page.PageError({ message: "internal error" })) as Either.Either<unknown, Page.PageError>
      )
    ),
    Effect.map((result): Either.Either<void, string> => {
      if (Either.isLeft(result)) return Either.left(result.left.message)
      m.state = result.right
      before?.()
      sendRender(session, m)
      return Either.right(undefined)
    })
  )

const sendRender = (session: LiveSession, m: Mounted): void => {
  const regions = Page.diff(m.rendered, m.def.render(m.state))
  const title = m.def.title?.(m.state)
  const titleChanged = title !== undefined && title !== m.title
  m.title = title
  if (regions.length > 0 || titleChanged) {
    session.emit({ type: FrameType.PATCH, payload: { regions, ...(titleChanged && title !== undefined ? { title } : {}) } })
  }
  if (m.commands.length > 0) {
    const commands = m.commands
    m.commands = []
    session.emit({ type: FrameType.COMMAND, payload: { commands } })
  }
  if (m.redirect !== undefined) {
    const { replace, to } = m.redirect
    m.redirect = undefined
    session.emit({ type: FrameType.REDIRECT, payload: { to, replace } })
  }
}

const mountPage = (session: LiveSession, def: Page.Any, url: string, params: Readonly<Record<string, unknown>>) =>
  Effect.gen(function*() {
    const query = Object.fromEntries(new URL(url, "http://x").searchParams)
    const sink: Sink = {
      id: session.id,
      poke: (scope, cursor) => pageOffer(session, { _tag: "Poke", scope, cursor }),
      send: noop,
      broadcast: (topic, event, payload, from) => pageOffer(session, { _tag: "Broadcast", topic, event, payload, from })
    }
    const m: Mounted = {
      def,
      state: undefined,
      rendered: new Map(),
      ctx: undefined as unknown as Page.PageContext,
      commands: [],
      redirect: undefined,
      title: undefined,
      sink,
      topics: new Set(),
      clientId: `page.${crypto.randomUUID()}`,
      mutationId: 0,
      pushLock: undefined
    }
    m.ctx = makePageContext(session, m, { ...query, ...params })
    session.mounted = m
    yield* pageSubscribe(session, m, pageTopic(def))
    const state = yield* session.env.pages.provide(def.mount(m.ctx)).pipe(
      Effect.flatMap((s) => Page.checkState(def, s)),
      Effect.either,
      Effect.catchAllCause((cause) =>
        Effect.as(Effect.logError("live page mount failed", cause), Either.left(new Page.PageError({ message: "internal error" })))
      )
    )
    if (Either.isLeft(state)) {
      session.mounted = undefined
      yield* Effect.forEach(m.topics, (topic) => session.env.hub.remove(topic, sink), { discard: true })
      return Either.left(state.left.message)
    }
    m.state = state.right
    m.title = def.title?.(m.state)
    const regions = Object.entries(def.render(m.state)).map(([rid, region]) => {
      const markup = Page.regionHtml(region).value
      m.rendered.set(rid, markup)
      return { id: rid, html: markup }
    })
    return Either.right(regions)
  })

// -- the session ----------------------------------------------------------------------

/**
 * `Stream.runForEachWhile`, run by pulling the stream chunk by chunk in the
 * current Scope: the same order and the same end, but a consumer parked on an
 * empty inbox holds a fraction of the state (bench/session-shapes.ts:
 * ~12 KiB instead of ~28 KiB per session).
 */
const forEachWhile = <A>(
  stream: Stream.Stream<A>,
  f: (a: A) => Effect.Effect<boolean>
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.flatMap(Stream.toPull(stream), (pull) => {
    const each = (chunk: Chunk.Chunk<A>, i: number): Effect.Effect<boolean> =>
      i >= chunk.length ? CONTINUE : Effect.flatMap(f(Chunk.unsafeGet(chunk, i)), (goOn) => (goOn ? each(chunk, i + 1) : STOP))
    const loop: Effect.Effect<void> = Effect.matchEffect(pull, {
      onFailure: () => Effect.void, // the end of the stream
      onSuccess: (chunk) => Effect.flatMap(each(chunk, 0), (goOn) => (goOn ? loop : Effect.void))
    })
    return loop
  })

/**
 * Run a session over an upgraded `ws` socket until it ends (LEAVE, a
 * deadline, a limit, a refused re-authorization, shutdown, the peer going
 * away, or interruption).
 * The session is registered in `registry` (ticks, shutdown) while it runs;
 * `lease` is released when it ends.
 */
export const run = (
  ws: WebSocket,
  options: Options & { readonly registry: Registry },
  lease?: Lease
): Effect.Effect<void, never, Requirements> =>
  Effect.gen(function*() {
    const env: Env = {
      hub: yield* LiveHub,
      log: yield* ChangeLog,
      authorizer: yield* Authorizer.Authorizer,
      pages: yield* Page.LivePages,
      engine: yield* SyncEngine,
      limits: limitsOf(options),
      registry: options.registry
    }
    const session = new LiveSession(ws, yield* Queue.unbounded<Event>(), env, yield* Effect.scope, lease)
    yield* Effect.annotateCurrentSpan("live.session_id", session.id)
    yield* Effect.acquireRelease(
      Effect.zipRight(
        Effect.sync(() => {
          // The reader: the socket's own listeners put every frame, and its end, into the inbox.
          ws.on("message", session.onMessage)
          ws.once("close", session.onClose)
          ws.on("error", noop) // a protocol error (a frame over maxPayload, bad UTF-8) is followed by "close"
          if (ws.readyState !== 1) session.onClose()
          options.registry.add(session)
        }),
        Metric.increment(Metrics.sessionsOpen)
      ),
      () => session.release()
    )
    yield* forEachWhile(Stream.fromQueue(session.inbox), (event) => session.handle(event))
  }).pipe(Effect.withSpan("LiveSession", { captureStackTrace: false }))
