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
 * session), and subscriptions and presence are entries in a Set / Map released
 * by the session's finalizer (no Scope per subscription).
 *
 * Invariants:
 * - Client frames are handled one at a time, in arrival order.
 * - Pokes are conflated per scope: the inbox holds at most one poke marker per
 *   scope; its cursor is the newest seen when it is written.
 * - Fast path: a POKE or a ready-encoded frame (broadcast, presence) that
 *   reaches a session parked on an empty inbox, with nothing pending and an
 *   uncongested socket, is written at once by the hub's dispatch, without
 *   waking the session's fiber: it is what that fiber would write next.
 * - Backpressure: when the socket's send buffer is above a high-water mark,
 *   broadcasts and presence wait in a backlog (counted in bytes) and pokes
 *   stay conflated. Backlog + socket buffer over `maxPendingBytes` closes the
 *   session with `CLOSE {reason: "slow_consumer"}` and code 4008, so one slow
 *   reader never holds memory or slows anyone else.
 * - A subscription is made before the scope's head is read for the reply, so
 *   no commit falls between the `cursors` a client gets and its first poke.
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
import type { RawData, WebSocket } from "ws"
import * as Metrics from "../Metrics.js"
import * as Live from "../protocol/Live.js"
import { ProtocolError } from "../protocol/Sync.js"
import * as Authorizer from "../sync/Authorizer.js"
import { ChangeLog } from "../sync/ChangeLog.js"
import { SyncEngine } from "../sync/SyncEngine.js"
import { LiveHub, type Sink } from "./LiveHub.js"
import * as Page from "./Page.js"

/** Limits and timers of a session; defaults are PROTOCOL.md's. */
export interface Options {
  /** Close a connection with no incoming frame for this long (60 s). */
  readonly idleTimeout?: Duration.DurationInput
  /** Most scopes (topics) one session may subscribe to (100). */
  readonly maxScopes?: number
  /** Most bytes of frames pending for one session before it is a slow consumer (1 MiB). */
  readonly maxPendingBytes?: number
  /** Socket send buffer above which broadcasts wait in the backlog (64 KiB). */
  readonly highWaterBytes?: number
}

/** Where a server keeps its running sessions (ticks, shutdown); told synchronously. */
export interface Registry {
  readonly add: (handle: Handle) => void
  readonly delete: (handle: Handle) => void
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

/** What a session needs from context. */
export type Requirements = Scope.Scope | LiveHub | ChangeLog | Authorizer.Authorizer | Page.LivePages | SyncEngine

/** The handle the server keeps on a running session. */
export interface Handle {
  readonly id: string
  /** Check the idle timeout and flush the backlog. */
  readonly tick: () => void
  /** Close with `CLOSE {reason: "shutdown"}`. */
  readonly shutdown: () => void
}

type Event =
  | { readonly _tag: "Frame"; readonly text: string }
  | { readonly _tag: "Binary" }
  | { readonly _tag: "Poke"; readonly scope: string }
  | { readonly _tag: "Send"; readonly frame: string }
  | { readonly _tag: "Tick" }
  | { readonly _tag: "Shutdown" }
  | { readonly _tag: "Closed" }
  | { readonly _tag: "PageInfo"; readonly info: Page.Info }

const TICK: Event = { _tag: "Tick" }
const SHUTDOWN: Event = { _tag: "Shutdown" }
const CLOSED: Event = { _tag: "Closed" }
const BINARY: Event = { _tag: "Binary" }
const CONTINUE = Effect.succeed(true)
const STOP = Effect.succeed(false)

const { FrameType } = Live

/** What every session of a server shares: services and limits, resolved once per session start. */
interface Env {
  readonly hub: LiveHub["Type"]
  readonly log: ChangeLog["Type"]
  readonly authorizer: Authorizer.Authorizer["Type"]
  readonly pages: Page.LivePages["Type"]
  readonly engine: SyncEngine["Type"]
  readonly idleMillis: number
  readonly maxScopes: number
  readonly maxPending: number
  readonly highWater: number
  readonly registry: Registry
}

type Limits = Pick<Env, "idleMillis" | "maxScopes" | "maxPending" | "highWater">
/** The limits of a server's options, computed once per options object, not per session. */
const limits = new WeakMap<Options, Limits>()
const limitsOf = (options: Options): Limits => {
  let l = limits.get(options)
  if (l === undefined) {
    l = {
      idleMillis: Duration.toMillis(options.idleTimeout ?? "60 seconds"),
      maxScopes: options.maxScopes ?? 100,
      maxPending: options.maxPendingBytes ?? 1024 * 1024,
      highWater: options.highWaterBytes ?? 64 * 1024
    }
    limits.set(options, l)
  }
  return l
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
  mutationId: number
}

const noop = () => {}

/**
 * One session's state, and its hub sink and server handle: the methods are
 * shared on the prototype, so a session costs its fields, not a set of closures.
 */
class LiveSession implements Sink, Handle {
  readonly id: string = crypto.randomUUID()
  joined = false
  token: string | undefined = undefined
  lastIncoming = Date.now()
  /** CLOSE was sent or the socket is gone: nothing more is written or handled. */
  closed = false
  /** Set when the pending bytes pass the limit; the session fiber closes on its next event. */
  slow = false
  tickQueued = false
  /** a drain listener is waiting to flush conflated pokes */
  drainHooked = false
  pendingBytes = 0
  /** scopes subscribed to (each a hub sink registration) */
  readonly subscriptions = new Set<string>()
  /** topics this session is present on */
  presence: Set<string> | undefined = undefined
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
    readonly scope: Scope.Scope
  ) {}

  // -- the socket's listeners (bound once per session) ------------------------
  readonly onMessage = (data: RawData, isBinary: boolean): void => {
    Queue.unsafeOffer(this.inbox, isBinary ? BINARY : { _tag: "Frame", text: String(data) })
  }
  readonly onClose = (): void => {
    this.closed = true
    Queue.unsafeOffer(this.inbox, CLOSED)
  }

  // -- writes ------------------------------------------------------------------
  write(frame: string): void {
    if (this.ws.readyState === 1) this.ws.send(frame)
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
  close(reason: string, code: number, message?: string): void {
    if (this.closed) return
    this.closed = true
    this.emit({ type: FrameType.CLOSE, payload: { reason, ...(message === undefined ? {} : { message }) } })
    if (this.ws.readyState === 1) this.ws.close(code, reason)
  }
  congested(): boolean {
    return this.ws.bufferedAmount > this.env.highWater
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
  /** When the socket has written out what it holds, wake the session to flush the backlog and pokes. */
  flushOnDrain(): void {
    if (this.drainHooked) return
    const socket = this.socket()
    if (socket === undefined || !socket.writableNeedDrain) return // nothing to wait for: a tick flushes
    this.drainHooked = true
    socket.once("drain", () => {
      this.drainHooked = false
      if (!this.closed && (this.pendingPokes.size > 0 || this.backlog.length > 0)) {
        Queue.unsafeOffer(this.inbox, { _tag: "Poke", scope: "" })
      }
    })
  }
  /** The session fiber is parked on its inbox: nothing queued, nothing being handled. */
  parked(): boolean {
    const size = this.inbox.unsafeSize()
    return size._tag === "Some" && size.value < 0
  }

  // -- what the hub reaches (Sink) ---------------------------------------------------------
  poke(scope: string, cursor: number): void {
    if (this.closed) return
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
      Queue.unsafeOffer(this.inbox, { _tag: "Poke", scope })
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
    if (this.pendingBytes + this.ws.bufferedAmount > this.env.maxPending) return this.slowConsumer()
    Queue.unsafeOffer(this.inbox, { _tag: "Send", frame })
  }
  slowConsumer(): void {
    if (this.slow || this.closed) return
    this.slow = true
    Queue.unsafeOffer(this.inbox, TICK)
  }

  // -- what the server reaches (Handle) ----------------------------------------------------
  // A tick only matters to a session with something to flush, a slow consumer to close or an
  // idle deadline passed; the rest are not woken, and at most one TICK waits in an inbox.
  tick(): void {
    if (this.tickQueued || !this.needsTick()) return
    this.tickQueued = true
    Queue.unsafeOffer(this.inbox, TICK)
  }
  needsTick(): boolean {
    return this.slow || this.backlog.length > 0 || this.pendingPokes.size > 0 ||
      this.pendingBytes + this.ws.bufferedAmount > this.env.maxPending || Date.now() - this.lastIncoming > this.env.idleMillis
  }
  shutdown(): void {
    Queue.unsafeOffer(this.inbox, SHUTDOWN)
  }

  // The CLOSE frame and the close code reach a peer that reads again within the grace period;
  // one that never reads is cut off then, so it holds no memory.
  closeSlow(): Effect.Effect<boolean> {
    this.close("slow_consumer", 4008)
    const ws = this.ws
    setTimeout(() => ws.terminate(), 5000).unref()
    return Effect.as(Metric.increment(Metrics.slowConsumerCloses), false)
  }

  flush(): void {
    while (this.backlog.length > 0 && !this.congested()) {
      const frame = this.backlog.shift() as string
      this.pendingBytes -= frame.length
      this.write(frame)
    }
    if (this.backlog.length > 0) return this.flushOnDrain()
    if (this.pokesBlocked()) return
    for (const [scope, cursor] of this.pendingPokes) {
      this.pendingPokes.delete(scope)
      this.write(pokeFrame(scope, cursor))
      Metrics.pokesSent.unsafeUpdate(1, [])
    }
  }

  // -- subscriptions ----------------------------------------------------------
  authorizeAll(scopes: ReadonlyArray<string>) {
    const { authorizer } = this.env
    const token = this.token
    return Effect.forEach(
      new Set(scopes),
      (scope) => authorizer.authorize({ action: "subscribe", scope, token, clientId: undefined, headers: {} }),
      { discard: true }
    )
  }

  /** Subscribe to scopes (all or nothing) and return their heads. */
  subscribe(scopes: ReadonlyArray<string>): Effect.Effect<SubscribeResult> {
    const self = this
    return Effect.gen(function*() {
      const { hub, log, maxScopes } = self.env
      const wanted = [...new Set(scopes)]
      const fresh = wanted.filter((s) => !self.subscriptions.has(s))
      if (self.subscriptions.size + fresh.length > maxScopes) {
        return Either.left({ reason: "too_many_scopes", message: `at most ${maxScopes} scopes per session` })
      }
      const denied = yield* self.authorizeAll(wanted).pipe(Effect.flip, Effect.option)
      // PROTOCOL.md: a scope the caller may not read is `forbidden` on live, whether the token is bad or the scope not its
      if (denied._tag === "Some") return Either.left({ reason: "forbidden", message: denied.value.message })
      for (const scope of fresh) {
        // added before the registration yields, so the finalizer removes it whatever happens next
        self.subscriptions.add(scope)
        yield* hub.add(scope, self)
      }
      const heads = yield* Effect.forEach(wanted, (scope) => Effect.map(log.head(scope), (head) => [scope, head] as const)).pipe(
        Effect.either
      )
      if (Either.isLeft(heads)) return Either.left({ reason: "unavailable", message: "storage unavailable, retry later" })
      return Either.right(Object.fromEntries(heads.right))
    })
  }

  unsubscribe(scopes: ReadonlyArray<string>): Effect.Effect<void> {
    const { hub } = this.env
    return Effect.forEach(scopes, (scope) => {
      const untrack = this.presence?.delete(scope) === true ? hub.untrack(scope, this.id) : Effect.void
      if (!this.subscriptions.delete(scope)) return untrack
      this.pendingPokes.delete(scope)
      return Effect.zipRight(untrack, hub.remove(scope, this))
    }, { discard: true })
  }

  /** Everything the session holds, released: its socket, hub sinks, presence, page. */
  release(): Effect.Effect<void> {
    this.closed = true
    this.env.registry.delete(this)
    Queue.unsafeOffer(this.inbox, CLOSED)
    const ws = this.ws
    ws.off("message", this.onMessage)
    if (ws.readyState === 0 || ws.readyState === 1) ws.close()
    const { hub } = this.env
    const m = this.mounted
    return Effect.all([
      Effect.forEach(this.presence ?? [], (topic) => hub.untrack(topic, this.id), { discard: true }),
      Effect.forEach(this.subscriptions, (scope) => hub.remove(scope, this), { discard: true }),
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
          this.close("page_not_found", 1008)
          return Effect.void
        }
        return Effect.gen(function*() {
          const result = yield* self.subscribe(frame.payload.scopes ?? [])
          if (Either.isLeft(result)) return self.replyError(frame.ref, result.left.reason, result.left.message)
          if (def !== undefined && url !== undefined) {
            const regions = yield* mountPage(self, def, url, frame.payload.params ?? {})
            if (Either.isLeft(regions)) return self.replyError(frame.ref, "mount_failed", regions.left)
            self.joined = true
            return self.reply(frame.ref, { status: "ok", session_id: self.id, cursors: result.right, regions: regions.right })
          }
          self.joined = true
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
        this.close("normal", 1000)
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
        const ok = () => {
          if (frame.ref !== undefined) this.reply(frame.ref, { status: "ok" })
        }
        const { hub } = this.env
        if (frame.payload.name === "presence") {
          const presence = this.presence ??= new Set()
          // an update is a leave and a join, as a re-track
          const previous = presence.has(topic) ? hub.untrack(topic, this.id) : Effect.void
          presence.add(topic)
          return previous.pipe(Effect.zipRight(hub.trackUnscoped(topic, this.id, frame.payload.values ?? {})), Effect.map(ok))
        }
        const payload = frame.payload.values ?? frame.payload["payload"]
        return Effect.map(hub.broadcast(topic, frame.payload.name, payload, this.id), ok)
      }
    }
  }

  handle(event: Event): Effect.Effect<boolean> {
    if (this.slow) return this.closeSlow()
    switch (event._tag) {
      case "Frame": {
        this.lastIncoming = Date.now()
        const decoded = Live.decodeClientFrame(event.text)
        if (Either.isLeft(decoded)) {
          this.error("invalid_message", decoded.left)
          return CONTINUE
        }
        return Effect.map(this.onFrame(decoded.right), () => !this.closed)
      }
      case "Binary":
        this.lastIncoming = Date.now()
        this.error("invalid_message", "frames must be JSON text")
        return CONTINUE
      case "Poke":
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
      case "Tick": {
        this.tickQueued = false
        if (Date.now() - this.lastIncoming > this.env.idleMillis) {
          this.close("idle_timeout", 1000, `no frame for ${this.env.idleMillis} ms`)
          return STOP
        }
        if (this.pendingBytes + this.ws.bufferedAmount > this.env.maxPending) return this.closeSlow()
        this.flush()
        return CONTINUE
      }
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
        this.close("shutdown", 1001)
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

const makePageContext = (session: LiveSession, m: Mounted, params: Readonly<Record<string, unknown>>): Page.PageContext => {
  const { engine, hub, log } = session.env
  const id = session.id
  const def = m.def
  return {
    sessionId: id,
    params,
    pushMutation: (mutation) =>
      engine.push(
        { client_id: `page.${id}`, mutations: [{ ...mutation, id: ++m.mutationId }] },
        { token: session.token, headers: {} }
      ).pipe(Effect.map((response) => response.results[0])),
    broadcast: (event, payload, topic) => hub.broadcast(topic ?? def.topic ?? `page:${def.path}`, event, payload, id),
    subscribe: (scope) =>
      Effect.gen(function*() {
        const denied = yield* session.authorizeAll([scope]).pipe(Effect.flip, Effect.option)
        if (denied._tag === "Some") {
          return yield* new ProtocolError({ code: denied.value.reason, message: denied.value.message })
        }
        yield* pageSubscribe(session, m, scope)
        return yield* log.head(scope).pipe(
          Effect.mapError(() => new ProtocolError({ code: "unavailable", message: "storage unavailable, retry later" }))
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
      mutationId: 0
    }
    m.ctx = makePageContext(session, m, { ...query, ...params })
    session.mounted = m
    yield* pageSubscribe(session, m, def.topic ?? `page:${def.path}`)
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
 * Run a session over an upgraded `ws` socket until it ends (LEAVE, idle
 * timeout, slow consumer, shutdown, the peer going away, or interruption).
 * The session is registered in `registry` (ticks, shutdown) while it runs.
 */
export const run = (
  ws: WebSocket,
  options: Options & { readonly registry: Registry }
): Effect.Effect<void, never, Requirements> =>
  Effect.gen(function*() {
    const env: Env = {
      hub: yield* LiveHub,
      log: yield* ChangeLog,
      authorizer: yield* Authorizer.Authorizer,
      pages: yield* Page.LivePages,
      engine: yield* SyncEngine,
      ...limitsOf(options),
      registry: options.registry
    }
    const session = new LiveSession(ws, yield* Queue.unbounded<Event>(), env, yield* Effect.scope)
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
