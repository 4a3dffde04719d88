/**
 * The session protocol: a function of ONE `Stream` of inputs — the client's
 * decoded messages (a decode failure is a value, `Invalid`) merged with what
 * the hub delivers (pokes, broadcast and presence frames, page messages) and
 * the session's own signals — that writes the frames they produce through a
 * `Connection`. It knows no socket: a test hands it
 * `Stream.merge(clientMessages, hubDeliveries)` and an in-memory `Connection`.
 * The session is its own hub `Sink`: each hub call becomes a `HubDelivery`
 * given to its `Feed`, the hub half of the merge (in production the one
 * inbox of `sessionInbox.ts`).
 *
 * Invariants:
 * - Inputs are handled one at a time, in the order of the stream.
 * - Pokes are conflated per scope: a poke of a scope already on its way
 *   only raises its cursor; the cursor written is the newest seen.
 * - A subscription is made before the scope's head is read for the reply
 *   (no commit falls between the `cursors` and the first poke); a scope
 *   already held is not read again.
 * - The session id is told only to its own client (JOIN's REPLY); BROADCAST
 *   `from` and PRESENCE keys are opaque per-topic handles, and broadcast and
 *   presence are authorized and bounded (`sessionCast.ts`).
 * - Re-authorization is an input, handled in order; a refusal closes with
 *   `unauthorized` (4001). The JOIN deadline and idle timeout are enforced
 *   by `tick`, outside the stream.
 *
 * @internal
 */
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Metrics from "../../Metrics.js"
import * as Live from "../../protocol/Live.js"
import * as Authorizer from "../../sync/Authorizer.js"
import { ChangeLog } from "../../sync/ChangeLog.js"
import { SyncEngine } from "../../sync/SyncEngine.js"
import { LiveHub, type Sink } from "../LiveHub.js"
import * as Page from "../Page.js"
import type { Handle, Options, Requirements } from "../Session.js"
import { PageSession } from "./pageSession.js"
import * as Cast from "./sessionCast.js"
import { type Limits, limitsOf } from "./sessionLimits.js"

const { FrameType } = Live

// -- inputs -----------------------------------------------------------------------------

/** A client message, decoded at the edge: a frame, or why it is not one. */
export type ClientInput =
  | { readonly _tag: "Message"; readonly frame: Live.ClientFrame }
  | { readonly _tag: "Invalid"; readonly message: string }

/** What the hub delivers to a session: all but `PageInfo` are handled synchronously. */
export type HubDelivery =
  | { readonly _tag: "Poke"; readonly scope: string; readonly cursor: number }
  | { readonly _tag: "Frame"; readonly frame: string }
  | { readonly _tag: "State"; readonly topic: string }
  | { readonly _tag: "PageInfo"; readonly info: Page.Info }

/** The session's own signals: write what is held back, re-authorize, close for shutdown, stop. */
export type Signal =
  | { readonly _tag: "Flush" }
  | { readonly _tag: "Reauthorize" }
  | { readonly _tag: "Shutdown" }
  | { readonly _tag: "End" }

/** One element of the session's input stream. */
export type Input = ClientInput | HubDelivery | Signal

export const FLUSH: Signal = { _tag: "Flush" }
const REAUTHORIZE: Signal = { _tag: "Reauthorize" }
const SHUTDOWN: Signal = { _tag: "Shutdown" }
export const END: Signal = { _tag: "End" }
/** A binary frame: the protocol is JSON text. */
export const BINARY: ClientInput = { _tag: "Invalid", message: "frames must be JSON text" }

/** Decode one client text frame with the protocol's Schema: a failure is a value of the stream. */
export const decode = (text: string): ClientInput => {
  const decoded = Live.decodeClientFrame(text)
  return Either.isLeft(decoded) ? { _tag: "Invalid", message: decoded.left } : { _tag: "Message", frame: decoded.right }
}

/** The inputs the protocol handles synchronously, in the caller's stack (see `sessionInbox.ts`). */
export const isSynchronous = (input: Input): input is Extract<HubDelivery, { _tag: "Poke" | "Frame" | "State" }> =>
  input._tag === "Poke" || input._tag === "Frame" || input._tag === "State"

// -- what the protocol is connected to --------------------------------------------------------

/** Where the session's side of the merge goes: hub deliveries and signals, into the input stream. */
export interface Feed {
  readonly offer: (input: HubDelivery | Signal) => void
}

/**
 * What the protocol writes through and what it asks of the transport. The
 * socket adapter is the production one (backlog, pending bytes, close codes).
 */
export interface Connection {
  /** CLOSE was sent or the peer is gone: nothing more is written or handled. */
  readonly closed: boolean
  /** When the last client frame arrived (counted once `joined` was called). */
  readonly lastIncoming: number
  /** Frames arriving from now on count for the idle timeout. */
  readonly joined: () => void
  /** A client input left the stream (the reader may read again). */
  readonly taken: () => void
  /** Write a frame now; every write counts toward the pending-bytes limit. */
  readonly write: (frame: string) => void
  /** Bytes of a hub frame on its way to `send` (counted toward the limit meanwhile). */
  readonly reserve: (bytes: number) => void
  /** A reserved hub frame: written now, or behind the backlog while the socket pushes back. */
  readonly send: (frame: string) => void
  /** A presence `state` frame: its bytes are not counted as pending while they drain. */
  readonly writeState: (frame: string) => void
  /** Write the backlog while the socket has room; true when it is empty. */
  readonly flushBacklog: () => boolean
  readonly hasBacklog: () => boolean
  /** The socket's buffer is above the high-water mark (a `Flush` follows its drain). */
  readonly congested: () => boolean
  /** The socket pushes back: pokes stay conflated until it drains (a `Flush` follows). */
  readonly pokesBlocked: () => boolean
  /** Pending bytes over `maxPendingBytes`. */
  readonly overLimit: () => boolean
  readonly slowConsumer: () => void
  /** Send `CLOSE {reason}` and close with the reason's code. */
  readonly close: (reason: Live.CloseReason, message?: string) => void
}

/** The services a session uses, resolved once per session. */
export interface Env {
  readonly hub: LiveHub["Type"]
  readonly log: ChangeLog["Type"]
  readonly authorizer: Authorizer.Authorizer["Type"]
  readonly pages: Page.LivePages["Type"]
  readonly engine: SyncEngine["Type"]
  readonly limits: Limits
}

type SubscribeResult = Either.Either<Record<string, number>, { readonly reason: string; readonly message: string }>

// -- helpers --------------------------------------------------------------------------------

/**
 * The POKE frame of the newest (scope, cursor): the hub hands one poke to
 * every sink in a row, so it is encoded once per publish, not per session.
 * A one-entry cache, read and written only here.
 */
let lastPoke: { readonly scope: string; readonly cursor: number; readonly frame: string } | undefined
const pokeFrame = (scope: string, cursor: number): string => {
  if (lastPoke === undefined || lastPoke.scope !== scope || lastPoke.cursor !== cursor) {
    lastPoke = { scope, cursor, frame: Live.encodeServerFrame({ type: FrameType.POKE, payload: { scope, cursor } }) }
  }
  return lastPoke.frame
}

/** When the next periodic re-authorization is due: `interval` from now, ±10% so sessions opened together spread out. */
const nextReauth = (now: number, interval: number): number => now + interval * (0.9 + 0.2 * Math.random())

const CONTINUE = Effect.succeed(true)
const STOP = Effect.succeed(false)

// -- the session ------------------------------------------------------------------------------

/**
 * One session's state, its hub sink and its server handle: the methods are
 * shared on the prototype, so a session costs its fields, not a set of closures.
 */
export class SessionProtocol implements Sink, Handle {
  readonly id: string = crypto.randomUUID()
  joined = false
  token: string | undefined = undefined
  readonly joinDeadline: number
  /** a `Flush` from `tick` waits in the stream */
  flushQueued = false
  reauthQueued = false
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
  page: PageSession | undefined = undefined

  constructor(
    readonly env: Env,
    readonly connection: Connection,
    readonly feed: Feed,
    /** The session's Scope: closed when the session ends (page timers are forked in it). */
    readonly scope: Scope.Scope
  ) {
    const now = Date.now()
    const l = env.limits
    this.joinDeadline = now + l.joinMillis
    this.castTokens = l.castBurst
    this.castAt = now
    this.reauthAt = nextReauth(now, l.reauthMillis)
  }

  get closed(): boolean {
    return this.connection.closed
  }

  // -- writes -------------------------------------------------------------------------------------
  emit(frame: Live.ServerFrame): void {
    this.connection.write(Live.encodeServerFrame(frame))
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
  close(reason: Live.CloseReason, message?: string): void {
    this.connection.close(reason, message)
  }
  needsFlush(): boolean {
    return this.connection.hasBacklog() || this.pendingPokes.size > 0 || (this.pendingStates !== undefined && this.pendingStates.size > 0)
  }

  /** Write what is held back, in order: the backlog, the presence states, then the conflated pokes. */
  flush(): void {
    const connection = this.connection
    if (!connection.flushBacklog()) return
    const states = this.pendingStates
    if (states !== undefined) {
      for (const topic of states) {
        if (connection.congested()) return
        states.delete(topic)
        const frame = this.env.hub.presenceState(topic)
        if (frame !== undefined) connection.writeState(frame)
      }
    }
    if (this.pendingPokes.size === 0 || connection.pokesBlocked()) return
    for (const [scope, cursor] of this.pendingPokes) {
      this.pendingPokes.delete(scope)
      connection.write(pokeFrame(scope, cursor))
      Metrics.pokesSent.unsafeUpdate(1, [])
    }
  }

  // -- what the hub reaches (Sink): each call becomes a delivery in the stream ----------------
  poke(scope: string, cursor: number): void {
    if (this.closed) return
    // conflated: a poke of this scope already on its way only takes the newer cursor
    const waiting = this.pendingPokes.has(scope)
    this.notePoke(scope, cursor)
    if (!waiting) this.feed.offer({ _tag: "Poke", scope, cursor })
  }
  send(frame: string): void {
    if (this.closed) return
    this.connection.reserve(frame.length)
    if (!this.closed) this.feed.offer({ _tag: "Frame", frame })
  }
  /** A topic's whole presence, on subscribing: written fresh (`presenceState`) once the socket has room. */
  sendState(topic: string, _frame: string): void {
    if (this.closed) return
    const states = this.pendingStates ??= new Set()
    if (states.has(topic)) return
    states.add(topic)
    this.feed.offer({ _tag: "State", topic })
  }

  /** Note a poke: the scope's known cursor and its conflated pending one move to `cursor` if newer. */
  notePoke(scope: string, cursor: number): void {
    const known = this.subscriptions.get(scope)
    if (known === undefined) return // unsubscribed since
    if (cursor > known) this.subscriptions.set(scope, cursor)
    const prev = this.pendingPokes.get(scope)
    if (prev === undefined || cursor > prev) this.pendingPokes.set(scope, cursor)
  }

  /** Handle a synchronous hub delivery (a step of the stream; `sessionInbox.ts` may run it directly). */
  deliver(delivery: Extract<HubDelivery, { _tag: "Poke" | "Frame" | "State" }>): void {
    if (this.closed) return
    switch (delivery._tag) {
      case "Poke":
        this.notePoke(delivery.scope, delivery.cursor)
        return this.flush()
      case "Frame":
        return this.connection.send(delivery.frame)
      case "State":
        if (!this.subscriptions.has(delivery.topic)) return // unsubscribed since
        ;(this.pendingStates ??= new Set()).add(delivery.topic)
        return this.flush()
    }
  }

  // -- what the server reaches (Handle) ----------------------------------------------------------
  // Limits are enforced here, synchronously; only flushing and re-authorization go through the
  // stream, and a session with nothing to flush is not woken (at most one `Flush` from here waits).
  tick(now: number): void {
    if (this.closed) return
    const l = this.env.limits
    if (!this.joined && now >= this.joinDeadline) return this.close("join_timeout", `no JOIN within ${l.joinMillis} ms`)
    if (now - this.connection.lastIncoming > l.idleMillis) return this.close("idle_timeout", `no frame for ${l.idleMillis} ms`)
    if (this.connection.overLimit()) return this.connection.slowConsumer()
    if (this.joined && !this.reauthQueued && (now >= this.expiresAt || now >= this.reauthAt)) {
      this.reauthQueued = true
      this.feed.offer(REAUTHORIZE)
    }
    if (this.flushQueued || !this.needsFlush()) return
    this.flushQueued = true
    this.feed.offer(FLUSH)
  }
  shutdown(): void {
    this.feed.offer(SHUTDOWN)
  }

  // -- the step -----------------------------------------------------------------------------------
  /** Handle one input; false ends the session. */
  step(input: Input): Effect.Effect<boolean> {
    if (this.closed) return STOP
    switch (input._tag) {
      case "Message":
        this.connection.taken()
        return Effect.map(this.onFrame(input.frame), () => !this.closed)
      case "Invalid":
        this.connection.taken()
        this.error("invalid_message", input.message)
        return CONTINUE
      case "Poke":
      case "Frame":
      case "State":
        this.deliver(input)
        return CONTINUE
      case "PageInfo":
        return this.page === undefined ? CONTINUE : Effect.as(this.page.info(input.info), true)
      case "Flush":
        // Behind the backlog, or while the socket has not drained, pokes stay conflated in
        // pendingPokes; the drain (or a tick) brings them out, all at once.
        this.flushQueued = false
        this.flush()
        return CONTINUE
      case "Reauthorize":
        return this.reauthorize()
      case "Shutdown":
        this.close("shutdown")
        return STOP
      case "End":
        return STOP
    }
  }

  // -- authorization -----------------------------------------------------------------------------
  /** Ask the authorizer, with the session's token; the principal's expiry is kept for re-authorization. */
  authorize(action: Authorizer.Action, scope: string): Effect.Effect<void, Authorizer.Denied> {
    return Effect.map(
      this.env.authorizer.authorize({ action, scope, token: this.token, clientId: undefined, headers: {} }),
      (principal) => {
        if (principal.expiresAt !== undefined && principal.expiresAt < this.expiresAt) this.expiresAt = principal.expiresAt
      }
    )
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
    if (this.page !== undefined) for (const topic of this.page.authorizedTopics()) checks.push(["subscribe", topic])
    this.expiresAt = Infinity
    this.reauthAt = nextReauth(Date.now(), this.env.limits.reauthMillis)
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

  // -- subscriptions -----------------------------------------------------------------------------
  /**
   * Subscribe to scopes (all or nothing) and return their cursors. Only the
   * scopes not yet held are authorized and read: the others' cursors are
   * what the session knows (re-authorization covers them).
   */
  subscribe(scopes: ReadonlyArray<string>): Effect.Effect<SubscribeResult> {
    const self = this
    return Effect.gen(function*() {
      const { maxScopes } = self.env.limits
      const wanted = [...new Set(scopes)]
      const fresh = wanted.filter((s) => !self.subscriptions.has(s))
      if (self.subscriptions.size + fresh.length > maxScopes) {
        return Either.left({ reason: "too_many_scopes", message: `at most ${maxScopes} scopes per session` })
      }
      if (fresh.length > 0) {
        const denied = yield* Effect.forEach(fresh, (scope) => self.authorize("subscribe", scope), { discard: true }).pipe(
          Effect.flip,
          Effect.option
        )
        // PROTOCOL.md: a scope the caller may not read is `forbidden` on live, whether the token is bad or the scope not its
        if (denied._tag === "Some") return Either.left({ reason: "forbidden", message: denied.value.message })
        const failed = yield* self.register(fresh)
        if (failed) return Either.left({ reason: "unavailable", message: "storage unavailable, retry later" })
      }
      return Either.right(Object.fromEntries(wanted.map((scope) => [scope, self.subscriptions.get(scope) ?? 0])))
    })
  }

  /** Register the hub sinks of `fresh` scopes, then read their heads; true if storage failed (all undone). */
  register(fresh: ReadonlyArray<string>): Effect.Effect<boolean> {
    const self = this
    return Effect.gen(function*() {
      const { hub, log } = self.env
      for (const scope of fresh) {
        // added before the registration yields, so the finalizer removes it whatever happens next
        self.subscriptions.set(scope, 0)
        yield* hub.add(scope, self)
      }
      const heads = yield* Effect.either(Effect.forEach(fresh, (scope) => log.head(scope)))
      if (Either.isLeft(heads)) {
        yield* self.unsubscribe(fresh)
        return true
      }
      fresh.forEach((scope, i) => {
        const known = self.subscriptions.get(scope)
        if (known !== undefined && heads.right[i] > known) self.subscriptions.set(scope, heads.right[i])
      })
      return false
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

  /** Everything the session holds in the hub, released: its sinks, presence, page. */
  release(): Effect.Effect<void> {
    const { hub } = this.env
    const page = this.page
    return Effect.all([
      Effect.forEach(this.presence ?? [], ([topic, key]) => hub.untrack(topic, key), { discard: true }),
      Effect.forEach(this.subscriptions.keys(), (scope) => hub.remove(scope, this), { discard: true }),
      page === undefined ? Effect.void : page.release()
    ], { discard: true })
  }

  // -- client frames -----------------------------------------------------------------------------
  onFrame(frame: Live.ClientFrame): Effect.Effect<void> {
    if (!this.joined && frame.type !== FrameType.JOIN) {
      this.error("not_joined", "the first frame must be JOIN")
      return Effect.void
    }
    switch (frame.type) {
      case FrameType.JOIN:
        return this.join(frame)
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
      case FrameType.EVENT:
        return this.event(frame)
    }
  }

  /** JOIN: the token, the JOIN's scopes, and the page at `url` if any; the REPLY tells the session id. */
  join(frame: Extract<Live.ClientFrame, { type: typeof FrameType.JOIN }>): Effect.Effect<void> {
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
    const self = this
    return Effect.gen(function*() {
      const result = yield* self.subscribe(frame.payload.scopes ?? [])
      if (Either.isLeft(result)) return self.replyError(frame.ref, result.left.reason, result.left.message)
      let regions: Live.ReplyPayload["regions"]
      if (def !== undefined && url !== undefined) {
        const mounted = yield* PageSession.mount(self, def, url, frame.payload.params ?? {})
        if (Either.isLeft(mounted)) return self.replyError(frame.ref, "mount_failed", mounted.left)
        self.page = mounted.right.page
        regions = mounted.right.regions
      }
      self.joined = true
      self.connection.joined()
      self.reply(frame.ref, {
        status: "ok",
        session_id: self.id,
        cursors: result.right,
        ...(regions === undefined ? {} : { regions })
      })
    })
  }

  /** EVENT: to the page (no topic), or presence / a broadcast on a subscribed topic (`sessionCast.ts`). */
  event(frame: Cast.EventFrame): Effect.Effect<void> {
    const topic = frame.topic ?? (typeof frame.payload["topic"] === "string" ? frame.payload["topic"] : undefined)
    if (topic === undefined && this.page !== undefined) return this.page.event(frame)
    if (topic === undefined) return Effect.sync(() => this.replyError(frame.ref, "no_handler", "EVENT needs a topic"))
    return Cast.topicEvent(this, frame, topic)
  }
}

// -- running it --------------------------------------------------------------------------------

/**
 * A session with the services in context and `options`' limits, writing
 * through `connection` and handing hub deliveries to `feed`; it runs in the
 * current Scope (page timers are forked in it).
 */
export const make = (options: Options, connection: Connection, feed: Feed): Effect.Effect<SessionProtocol, never, Requirements> =>
  Effect.flatMap(Effect.scope, (scope) => makeIn(options, connection, feed, scope))

/** `make` with the session's Scope given, not read from context. */
export const makeIn = (
  options: Options,
  connection: Connection,
  feed: Feed,
  scope: Scope.Scope
): Effect.Effect<SessionProtocol, never, Exclude<Requirements, Scope.Scope>> =>
  Effect.map(
    Effect.all([LiveHub, ChangeLog, Authorizer.Authorizer, Page.LivePages, SyncEngine]),
    ([hub, log, authorizer, pages, engine]): SessionProtocol =>
      new SessionProtocol({ hub, log, authorizer, pages, engine, limits: limitsOf(options) }, connection, feed, scope)
  )

// --------------------------------------------------------------------------------

/**
 * `Stream.runForEachWhile`, run by pulling the stream chunk by chunk (the
 * stream's resources in `scope`): the same order and the same end, but a
 * consumer parked on an empty inbox holds a fraction of the state
 * (bench/session-shapes.ts). Only the pull is made with `scope` in context:
 * the loop runs outside it, so the parked fiber's stack holds no
 * context-providing frame.
 */
const forEachWhile = <A>(
  stream: Stream.Stream<A>,
  f: (a: A) => Effect.Effect<boolean>,
  scope: Scope.Scope
): Effect.Effect<void> =>
  Effect.flatMap(Scope.extend(Stream.toPull(stream), scope), (pull) => {
    const each = (chunk: Chunk.Chunk<A>, i: number): Effect.Effect<boolean> =>
      i >= chunk.length ? CONTINUE : Effect.flatMap(f(Chunk.unsafeGet(chunk, i)), (goOn) => (goOn ? each(chunk, i + 1) : STOP))
    const loop: Effect.Effect<void> = Effect.matchEffect(pull, {
      onFailure: () => Effect.void, // the end of the stream
      onSuccess: (chunk) => Effect.flatMap(each(chunk, 0), (goOn) => (goOn ? loop : Effect.void))
    })
    return loop
  })

/**
 * The session protocol over its input stream: each input handled in order
 * until the stream ends, a step says stop (LEAVE, a close, shutdown), or the
 * fiber is interrupted. Frames are written through `session.connection`; the
 * stream's resources are released with the session's Scope.
 */
export const run = (input: Stream.Stream<Input>, session: SessionProtocol): Effect.Effect<void> =>
  forEachWhile(input, (i) => session.step(i), session.scope)
