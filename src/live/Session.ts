/**
 * One live session: a WebSocket connection as a scoped Effect.
 *
 * Shape: every input of the session — decoded client frames, pokes,
 * broadcasts and presence from the `LiveHub`, timer ticks — is put into ONE
 * inbox queue, and the session is the `Stream` of that inbox, consumed by one
 * fiber that handles each event in order and does every write. (One inbox fed
 * by all sides was measured cheaper than `Stream.merge` of several streams;
 * see bench/.) Closing the session's `Scope`, for whatever cause, releases its
 * hub subscriptions, its presence and its socket.
 *
 * Invariants:
 * - Client frames are handled one at a time, in arrival order.
 * - Pokes are conflated per scope: the inbox holds at most one poke marker per
 *   scope; its cursor is the newest seen when it is written.
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
import * as Socket from "@effect/platform/Socket"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Metric from "effect/Metric"
import * as Queue from "effect/Queue"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Metrics from "../Metrics.js"
import * as Live from "../protocol/Live.js"
import { ProtocolError } from "../protocol/Sync.js"
import * as Authorizer from "../sync/Authorizer.js"
import { ChangeLog } from "../sync/ChangeLog.js"
import { SyncEngine } from "../sync/SyncEngine.js"
import { LiveHub } from "./LiveHub.js"
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

/** What a session needs of its raw socket beyond the platform `Socket`. */
export interface RawSocket {
  /** Bytes accepted by `send` but not yet handed to the OS. */
  readonly bufferedAmount: () => number
  /** Close now, without the closing handshake (for a peer that does not read). */
  readonly terminate: () => void
  /** Write a text frame now, bypassing the session fiber (the poke fast path). */
  readonly send: (frame: string) => void
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

const { FrameType } = Live

/**
 * Run a session over an upgraded socket until it ends. `register` is told the
 * session's handle for the server's registry (ticks, shutdown).
 */
export const run = (
  socket: Socket.Socket,
  raw: RawSocket,
  options: Options & { readonly register: (handle: Handle) => Effect.Effect<void, never, Scope.Scope> }
): Effect.Effect<void, never, Requirements> =>
  Effect.gen(function*() {
    const hub = yield* LiveHub
    const log = yield* ChangeLog
    const authorizer = yield* Authorizer.Authorizer
    const pages = yield* Page.LivePages
    const engine = yield* SyncEngine
    const sessionScope = yield* Effect.scope
    const write = yield* socket.writer
    const idleMillis = Duration.toMillis(options.idleTimeout ?? "60 seconds")
    const maxScopes = options.maxScopes ?? 100
    const maxPending = options.maxPendingBytes ?? 1024 * 1024
    const highWater = options.highWaterBytes ?? 64 * 1024

    const inbox = yield* Queue.unbounded<Event>()
    yield* Effect.addFinalizer(() => Queue.shutdown(inbox))

    const id = crypto.randomUUID()
    let joined = false
    let token: string | undefined
    let lastIncoming = Date.now()
    let closed = false
    /** scope -> the Scope holding its hub subscription */
    const subscriptions = new Map<string, Scope.CloseableScope>()
    /** topic -> the Scope holding this session's presence on it */
    const presence = new Map<string, Scope.CloseableScope>()
    /** conflated pokes: scope -> newest cursor not yet written */
    const pendingPokes = new Map<string, number>()
    /** frames waiting for the socket to drain */
    const backlog: Array<string> = []
    let pendingBytes = 0

    const send = (frame: Live.ServerFrame) => write(Live.encodeServerFrame(frame)).pipe(Effect.ignore)
    const reply = (ref: number | undefined, payload: Live.ReplyPayload) =>
      send({ type: FrameType.REPLY, ...(ref === undefined ? {} : { ref }), payload })
    const replyError = (ref: number | undefined, reason: string, message?: string) =>
      reply(ref, { status: "error", reason, ...(message === undefined ? {} : { message }) })
    const error = (code: string, message: string, recoverable = true) =>
      send({ type: FrameType.ERROR, payload: { code, message, recoverable } })
    const close = (reason: string, code: number, message?: string) =>
      Effect.gen(function*() {
        if (closed) return
        closed = true
        yield* send({ type: FrameType.CLOSE, payload: { reason, ...(message === undefined ? {} : { message }) } })
        yield* write(new Socket.CloseEvent(code, reason)).pipe(Effect.ignore)
      })

    /** Set when the pending bytes pass the limit; the session fiber closes on its next event. */
    let slow = false
    const slowConsumer = () => {
      if (slow || closed) return
      slow = true
      Queue.unsafeOffer(inbox, TICK)
    }
    // The CLOSE frame and the close code reach a peer that reads again within the grace period;
    // one that never reads is cut off then, so it holds no memory.
    const closeSlow = Effect.gen(function*() {
      yield* Metric.increment(Metrics.slowConsumerCloses)
      yield* close("slow_consumer", 4008)
      yield* Effect.sync(() => setTimeout(raw.terminate, 5000).unref())
    })

    // -- what the hub reaches -------------------------------------------------
    /** The session fiber is parked on its inbox: nothing queued, nothing being handled. */
    const parked = () => {
      const size = inbox.unsafeSize()
      return size._tag === "Some" && size.value < 0
    }
    const sink = {
      id,
      poke: (scope: string, cursor: number) => {
        if (closed) return
        // Fast path: an idle, uncongested session gets the POKE written now, in the hub's
        // dispatch loop, without waking its fiber; it is what that fiber would write next anyway.
        if (joined && pendingPokes.size === 0 && backlog.length === 0 && !congested() && parked()) {
          raw.send(pokeFrame(scope, cursor))
          Metrics.pokesSent.unsafeUpdate(1, [])
          return
        }
        const prev = pendingPokes.get(scope)
        if (prev === undefined) {
          pendingPokes.set(scope, cursor)
          Queue.unsafeOffer(inbox, { _tag: "Poke", scope })
        } else if (cursor > prev) {
          pendingPokes.set(scope, cursor)
        }
      },
      send: (frame: string) => {
        if (closed) return
        pendingBytes += frame.length
        if (pendingBytes + raw.bufferedAmount() > maxPending) return slowConsumer()
        Queue.unsafeOffer(inbox, { _tag: "Send", frame })
      }
    }

    const congested = () => raw.bufferedAmount() > highWater

    const flush = Effect.gen(function*() {
      while (backlog.length > 0 && !congested()) {
        const frame = backlog.shift() as string
        pendingBytes -= frame.length
        yield* write(frame).pipe(Effect.ignore)
      }
      if (congested()) return
      for (const [scope, cursor] of pendingPokes) {
        pendingPokes.delete(scope)
        yield* send({ type: FrameType.POKE, payload: { scope, cursor } })
        yield* Metric.increment(Metrics.pokesSent)
      }
    })

    // -- subscriptions ----------------------------------------------------------
    const authorizeAll = (scopes: ReadonlyArray<string>) =>
      Effect.forEach(
        new Set(scopes),
        (scope) => authorizer.authorize({ action: "subscribe", scope, token, clientId: undefined, headers: {} }),
        { discard: true }
      )

    /** Subscribe to scopes (all or nothing) and return their heads. */
    const subscribe = (scopes: ReadonlyArray<string>) =>
      Effect.gen(function*() {
        const wanted = [...new Set(scopes)]
        const fresh = wanted.filter((s) => !subscriptions.has(s))
        if (subscriptions.size + fresh.length > maxScopes) {
          return Either.left({ reason: "too_many_scopes", message: `at most ${maxScopes} scopes per session` })
        }
        const denied = yield* authorizeAll(wanted).pipe(Effect.flip, Effect.option)
        // PROTOCOL.md: a scope the caller may not read is `forbidden` on live, whether the token is bad or the scope not its
        if (denied._tag === "Some") return Either.left({ reason: "forbidden", message: denied.value.message })
        for (const scope of fresh) {
          const child = yield* Scope.fork(sessionScope, ExecutionStrategy.sequential)
          yield* hub.subscribe(scope, sink).pipe(Scope.extend(child))
          subscriptions.set(scope, child)
        }
        const heads = yield* Effect.forEach(wanted, (scope) => Effect.map(log.head(scope), (head) => [scope, head] as const)).pipe(
          Effect.either
        )
        if (Either.isLeft(heads)) return Either.left({ reason: "unavailable", message: "storage unavailable, retry later" })
        return Either.right(Object.fromEntries(heads.right))
      })

    const unsubscribe = (scopes: ReadonlyArray<string>) =>
      Effect.forEach(scopes, (scope) =>
        Effect.gen(function*() {
          const tracked = presence.get(scope)
          if (tracked !== undefined) {
            presence.delete(scope)
            yield* Scope.close(tracked, Exit.void)
          }
          const sub = subscriptions.get(scope)
          if (sub !== undefined) {
            subscriptions.delete(scope)
            pendingPokes.delete(scope)
            yield* Scope.close(sub, Exit.void)
          }
        }), { discard: true })

    // -- live page ----------------------------------------------------------------
    interface Mounted {
      readonly def: Page.Any
      state: unknown
      readonly rendered: Map<string, string>
      readonly ctx: Page.PageContext
      commands: Array<Page.Command>
      redirect: { readonly to: string; readonly replace: boolean } | undefined
      title: string | undefined
    }
    let mounted: Mounted | undefined
    let pageMutationId = 0
    /** scope -> the Scope holding the page's own subscription (pokes and broadcasts go to `info`) */
    const pageSubscriptions = new Map<string, Scope.CloseableScope>()
    const pageSink = {
      id,
      poke: (scope: string, cursor: number) => {
        if (!closed) Queue.unsafeOffer(inbox, { _tag: "PageInfo", info: { _tag: "Poke", scope, cursor } })
      },
      send: () => {},
      broadcast: (topic: string, event: string, payload: unknown, from: string) => {
        if (!closed) Queue.unsafeOffer(inbox, { _tag: "PageInfo", info: { _tag: "Broadcast", topic, event, payload, from } })
      }
    }
    const pageSubscribe = (scope: string) =>
      Effect.gen(function*() {
        if (!pageSubscriptions.has(scope)) {
          const child = yield* Scope.fork(sessionScope, ExecutionStrategy.sequential)
          yield* hub.subscribe(scope, pageSink).pipe(Scope.extend(child))
          pageSubscriptions.set(scope, child)
        }
      })

    const makePageContext = (def: Page.Any, params: Readonly<Record<string, unknown>>): Page.PageContext => ({
      sessionId: id,
      params,
      pushMutation: (mutation) =>
        engine.push(
          { client_id: `page.${id}`, mutations: [{ ...mutation, id: ++pageMutationId }] },
          { token, headers: {} }
        ).pipe(Effect.map((response) => response.results[0])),
      broadcast: (event, payload, topic) => hub.broadcast(topic ?? def.topic ?? `page:${def.path}`, event, payload, id),
      subscribe: (scope) =>
        Effect.gen(function*() {
          const denied = yield* authorizeAll([scope]).pipe(Effect.flip, Effect.option)
          if (denied._tag === "Some") {
            return yield* new ProtocolError({ code: denied.value.reason, message: denied.value.message })
          }
          yield* pageSubscribe(scope)
          return yield* log.head(scope).pipe(
            Effect.mapError(() => new ProtocolError({ code: "unavailable", message: "storage unavailable, retry later" }))
          )
        }),
      sendAfter: (message, delay) =>
        Effect.sleep(delay).pipe(
          Effect.zipRight(Effect.sync(() => {
            if (!closed) Queue.unsafeOffer(inbox, { _tag: "PageInfo", info: { _tag: "Message", message } })
          })),
          Effect.forkIn(sessionScope),
          Effect.asVoid
        ),
      command: (...commands) =>
        Effect.sync(() => {
          if (mounted !== undefined) mounted.commands.push(...commands)
        }),
      redirect: (to, replace = false) =>
        Effect.sync(() => {
          if (mounted !== undefined) mounted.redirect = { to, replace }
        })
    })

    /** Run a page step; on success keep the new state and send what changed (PATCH, COMMAND, REDIRECT). */
    const runPage = (
      m: Mounted,
      step: Effect.Effect<unknown, Page.PageError, any>,
      before: Effect.Effect<void> = Effect.void
    ): Effect.Effect<Either.Either<void, string>> =>
      pages.provide(step as Effect.Effect<unknown, Page.PageError>).pipe(
        Effect.flatMap((next) => Page.checkState(m.def, next)),
        Effect.either,
        Effect.catchAllCause((cause) =>
          Effect.as(
            Effect.logError("live page handler failed", cause),
            Either.left(new Page.PageError({ message: "internal error" })) as Either.Either<unknown, Page.PageError>
          )
        ),
        Effect.flatMap((result): Effect.Effect<Either.Either<void, string>> => {
          if (Either.isLeft(result)) return Effect.succeed(Either.left(result.left.message))
          m.state = result.right
          return before.pipe(Effect.zipRight(sendRender(m)), Effect.as(Either.right(undefined)))
        })
      )

    const sendRender = (m: Mounted) =>
      Effect.gen(function*() {
        const regions = Page.diff(m.rendered, m.def.render(m.state))
        const title = m.def.title?.(m.state)
        const titleChanged = title !== undefined && title !== m.title
        m.title = title
        if (regions.length > 0 || titleChanged) {
          yield* send({ type: FrameType.PATCH, payload: { regions, ...(titleChanged && title !== undefined ? { title } : {}) } })
        }
        if (m.commands.length > 0) {
          const commands = m.commands
          m.commands = []
          yield* send({ type: FrameType.COMMAND, payload: { commands } })
        }
        if (m.redirect !== undefined) {
          const { replace, to } = m.redirect
          m.redirect = undefined
          yield* send({ type: FrameType.REDIRECT, payload: { to, replace } })
        }
      })

    const mountPage = (def: Page.Any, url: string, params: Readonly<Record<string, unknown>>) =>
      Effect.gen(function*() {
        const query = Object.fromEntries(new URL(url, "http://x").searchParams)
        const ctx = makePageContext(def, { ...query, ...params })
        const m: Mounted = { def, state: undefined, rendered: new Map(), ctx, commands: [], redirect: undefined, title: undefined }
        mounted = m
        yield* pageSubscribe(def.topic ?? `page:${def.path}`)
        const state = yield* pages.provide(def.mount(ctx)).pipe(
          Effect.flatMap((s) => Page.checkState(def, s)),
          Effect.either,
          Effect.catchAllCause((cause) =>
            Effect.as(Effect.logError("live page mount failed", cause), Either.left(new Page.PageError({ message: "internal error" })))
          )
        )
        if (Either.isLeft(state)) {
          mounted = undefined
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

    // -- client frames ----------------------------------------------------------
    const onFrame = (frame: Live.ClientFrame): Effect.Effect<void> => {
      if (!joined && frame.type !== FrameType.JOIN) {
        return error("not_joined", "the first frame must be JOIN")
      }
      switch (frame.type) {
        case FrameType.JOIN: {
          if (joined) return replyError(frame.ref, "already_joined", "this session has joined")
          token = frame.payload.token
          const url = frame.payload.url
          const def = url === undefined ? undefined : pages.find(url)
          if (url !== undefined && def === undefined) {
            return Effect.zipRight(
              send({ type: FrameType.ERROR, payload: { code: "page_not_found", message: `no live page at ${url}`, recoverable: false } }),
              close("page_not_found", 1008)
            )
          }
          return Effect.gen(function*() {
            const result = yield* subscribe(frame.payload.scopes ?? [])
            if (Either.isLeft(result)) return yield* replyError(frame.ref, result.left.reason, result.left.message)
            if (def !== undefined && url !== undefined) {
              const regions = yield* mountPage(def, url, frame.payload.params ?? {})
              if (Either.isLeft(regions)) return yield* replyError(frame.ref, "mount_failed", regions.left)
              joined = true
              return yield* reply(frame.ref, { status: "ok", session_id: id, cursors: result.right, regions: regions.right })
            }
            joined = true
            yield* reply(frame.ref, { status: "ok", session_id: id, cursors: result.right })
          })
        }
        case FrameType.SUBSCRIBE:
          return Effect.flatMap(subscribe(frame.payload.scopes), (result) =>
            Either.isLeft(result)
              ? replyError(frame.ref, result.left.reason, result.left.message)
              : reply(frame.ref, { status: "ok", cursors: result.right }))
        case FrameType.UNSUBSCRIBE:
          return Effect.zipRight(unsubscribe(frame.payload.scopes), reply(frame.ref, { status: "ok" }))
        case FrameType.HEARTBEAT:
          return send({
            type: FrameType.HEARTBEAT,
            ...(frame.ref === undefined ? {} : { ref: frame.ref }),
            payload: frame.payload.ping === undefined ? {} : { pong: frame.payload.ping }
          })
        case FrameType.LEAVE:
          return close("normal", 1000)
        case FrameType.EVENT: {
          const topic = frame.topic ?? (typeof frame.payload["topic"] === "string" ? frame.payload["topic"] : undefined)
          if (topic === undefined && mounted !== undefined) {
            const m = mounted
            const event: Page.PageEvent = { name: frame.payload.name, values: frame.payload.values ?? {} }
            // EVENT -> REPLY ok -> PATCH; a failed handler answers REPLY error and keeps the session.
            return Effect.flatMap(
              runPage(m, m.def.handle(event, m.state, m.ctx), reply(frame.ref, { status: "ok" })),
              (result) => Either.isLeft(result) ? replyError(frame.ref, "handler_error", result.left) : Effect.void
            )
          }
          if (topic === undefined) return replyError(frame.ref, "no_handler", "EVENT needs a topic")
          if (!subscriptions.has(topic)) return replyError(frame.ref, "not_subscribed", `not subscribed to ${topic}`)
          const ok = frame.ref === undefined ? Effect.void : reply(frame.ref, { status: "ok" })
          if (frame.payload.name === "presence") {
            return Effect.gen(function*() {
              const previous = presence.get(topic)
              if (previous !== undefined) yield* Scope.close(previous, Exit.void)
              const child = yield* Scope.fork(sessionScope, ExecutionStrategy.sequential)
              yield* hub.track(topic, id, frame.payload.values ?? {}).pipe(Scope.extend(child))
              presence.set(topic, child)
              yield* ok
            })
          }
          const payload = frame.payload.values ?? frame.payload["payload"]
          return Effect.zipRight(hub.broadcast(topic, frame.payload.name, payload, id), ok)
        }
      }
    }

    const handle = (event: Event): Effect.Effect<boolean> => {
      if (slow) return Effect.as(closeSlow, false)
      switch (event._tag) {
        case "Frame": {
          lastIncoming = Date.now()
          const decoded = Live.decodeClientFrame(event.text)
          if (Either.isLeft(decoded)) return Effect.as(error("invalid_message", decoded.left), true)
          return Effect.as(onFrame(decoded.right), true).pipe(Effect.map(() => !closed))
        }
        case "Binary":
          lastIncoming = Date.now()
          return Effect.as(error("invalid_message", "frames must be JSON text"), true)
        case "Poke": {
          if (congested()) return Effect.succeed(true) // stays conflated in pendingPokes until a tick flushes
          const cursor = pendingPokes.get(event.scope)
          if (cursor === undefined) return Effect.succeed(true)
          pendingPokes.delete(event.scope)
          return Effect.as(
            Effect.zipRight(send({ type: FrameType.POKE, payload: { scope: event.scope, cursor } }), Metric.increment(Metrics.pokesSent)),
            true
          )
        }
        case "Send": {
          if (backlog.length > 0 || congested()) {
            backlog.push(event.frame)
            return Effect.succeed(true)
          }
          pendingBytes -= event.frame.length
          return Effect.as(write(event.frame).pipe(Effect.ignore), true)
        }
        case "Tick": {
          tickQueued = false
          if (Date.now() - lastIncoming > idleMillis) {
            return Effect.as(close("idle_timeout", 1000, `no frame for ${idleMillis} ms`), false)
          }
          if (pendingBytes + raw.bufferedAmount() > maxPending) return Effect.as(closeSlow, false)
          return Effect.as(flush, true)
        }
        case "PageInfo": {
          const m = mounted
          if (m === undefined || m.def.info === undefined) return Effect.succeed(true)
          return Effect.as(
            Effect.flatMap(runPage(m, m.def.info(event.info, m.state, m.ctx)), (result) =>
              Either.isLeft(result)
                ? send({ type: FrameType.ERROR, payload: { code: "handler_error", message: result.left, recoverable: true } })
                : Effect.void),
            true
          )
        }
        case "Shutdown":
          return Effect.as(close("shutdown", 1001), false)
        case "Closed":
          return Effect.succeed(false)
      }
    }

    // A tick only matters to a session with something to flush, a slow consumer to close or an
    // idle deadline passed; the rest are not woken (an idle session costs the ticker a few checks,
    // not a trip through its inbox), and at most one TICK waits in an inbox.
    let tickQueued = false
    const needsTick = () =>
      slow || backlog.length > 0 || pendingPokes.size > 0 || pendingBytes + raw.bufferedAmount() > maxPending ||
      Date.now() - lastIncoming > idleMillis
    yield* options.register({
      id,
      tick: () => {
        if (tickQueued || !needsTick()) return
        tickQueued = true
        Queue.unsafeOffer(inbox, TICK)
      },
      shutdown: () => Queue.unsafeOffer(inbox, SHUTDOWN)
    })

    // The reader: every frame into the inbox; the end of the socket too.
    yield* socket.runRaw((data) => {
      Queue.unsafeOffer(inbox, typeof data === "string" ? { _tag: "Frame", text: data } : BINARY)
    }).pipe(
      Effect.ignore,
      Effect.ensuring(Effect.sync(() => {
        closed = true
        Queue.unsafeOffer(inbox, CLOSED)
      })),
      Effect.forkScoped
    )

    yield* Stream.fromQueue(inbox).pipe(Stream.runForEachWhile(handle))
  }).pipe(Effect.withSpan("LiveSession"))
