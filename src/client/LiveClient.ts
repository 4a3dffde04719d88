/**
 * The live connection of a client (PROTOCOL.md section 2): one WebSocket to
 * `/_live/websocket` with the `mizu-live-v1` subprotocol, kept up for as long
 * as the layer's scope is open.
 *
 * Invariants:
 * - The wanted scopes (`scopes`: the options' and every `subscribe`, minus
 *   `unsubscribe`) are forgotten only when the server refuses them as
 *   `forbidden` (a `Forbidden` event says which). Any other refusal
 *   (`unavailable`, `too_many_scopes`) or a timeout keeps them wanted, and
 *   they are asked for again with backoff until the server accepts them;
 *   each accepted SUBSCRIBE is a `Subscribed` event with the heads.
 * - JOIN is the first frame of every connection and carries every wanted
 *   scope, so after a reconnect the subscriptions are back without the
 *   caller doing anything, and the JOIN reply's `cursors` reach subscribers as
 *   an `Online` event. If the server refuses the JOIN, the client joins with
 *   no scope and subscribes scope by scope, dropping (and reporting) only the
 *   forbidden ones; the others that failed are retried in the background.
 * - Reconnects and retries use `Backoff` (capped exponential, full jitter:
 *   0.5 s doubling to 20 s by default); the reconnect backoff restarts after
 *   a JOIN is accepted. A heartbeat goes out every 30 s; a connection with no
 *   incoming frame for the idle timeout (60 s) is dropped and reconnected.
 * - A request (`subscribe`, `unsubscribe`) is answered by the REPLY with its
 *   `ref`; if the connection drops before the reply, `subscribe` waits for
 *   the next connection and asks again (the scope is in the JOIN anyway).
 * - Presence values set with `presence` are re-sent after every reconnect,
 *   since the server forgets a session's presence when it disconnects.
 * - Every incoming frame is decoded with the protocol Schemas; a frame that
 *   does not decode is reported as an `Error` event and otherwise ignored.
 *
 * The WebSocket constructor comes from `Socket.WebSocketConstructor`:
 * `Socket.layerWebSocketConstructorGlobal` in browsers, the `ws` package in
 * Node (`mizu-sync-live/client/node`), so this module imports nothing of Node.
 *
 * @since 0.1.0
 */
import * as Socket from "@effect/platform/Socket"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import * as Queue from "effect/Queue"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import * as Live from "../protocol/Live.js"
import * as Protocol from "../protocol/Sync.js"
import * as Backoff from "./Backoff.js"
import * as Token from "./Token.js"

/** The state of the connection. `closed`: the client was stopped and will not reconnect. */
export type LiveStatus = "connecting" | "connected" | "disconnected" | "closed"

/** What a live client reports. */
export type LiveEvent =
  /** A JOIN was accepted: `cursors` holds the head of every subscribed scope. */
  | { readonly _tag: "Online"; readonly sessionId: string | undefined; readonly cursors: Readonly<Record<string, number>>; readonly reconnect: boolean }
  /** A SUBSCRIBE was accepted (asked by `subscribe`, or again after a transient refusal): the heads of its scopes. */
  | { readonly _tag: "Subscribed"; readonly cursors: Readonly<Record<string, number>> }
  /** The server refused these scopes as `forbidden`: they are no longer wanted (not asked for again). */
  | { readonly _tag: "Forbidden"; readonly scopes: ReadonlyArray<string>; readonly message: string | undefined }
  /** The connection went down (a reconnect follows unless the client is closed). */
  | { readonly _tag: "Offline"; readonly reason: string }
  | { readonly _tag: "Poke"; readonly scope: string; readonly cursor: number }
  | { readonly _tag: "Broadcast"; readonly topic: string; readonly event: string; readonly payload: unknown; readonly from: string | undefined }
  /** A PRESENCE frame, with `current`: the topic's whole presence state after applying it. */
  | {
    readonly _tag: "Presence"
    readonly topic: string
    readonly current: Readonly<Record<string, unknown>>
    readonly joins: Readonly<Record<string, unknown>> | undefined
    readonly leaves: Readonly<Record<string, unknown>> | undefined
  }
  /** An ERROR frame, or a frame the client could not decode (`code: "invalid_frame"`). */
  | { readonly _tag: "Error"; readonly code: string; readonly message: string | undefined; readonly recoverable: boolean | undefined }
  /** A CLOSE frame from the server (`shutdown`, `slow_consumer`, `normal`, …). */
  | { readonly _tag: "Closed"; readonly reason: string; readonly message: string | undefined }
  /** Frames for live pages (PATCH, COMMAND, REDIRECT), passed through decoded. */
  | { readonly _tag: "Page"; readonly frame: typeof Live.ServerFrame.Type }

/** A live request that could not be completed. */
export class LiveError extends Data.TaggedError("LiveError")<{
  readonly reason: "disconnected" | "timeout" | "refused" | "invalid" | "closed"
  readonly message: string
}> {}

/** Options of a live client. */
export interface Options {
  /** The WebSocket URL, e.g. `wss://app.example.com/_live/websocket` (see `websocketUrl`). */
  readonly url: string | (() => string)
  /** Scopes (and topics) to subscribe to from the first JOIN. */
  readonly scopes?: ReadonlyArray<string>
  /** Sent as JOIN's `token`: a string, or a function or Effect asked on every connect. */
  readonly token?: Token.Source
  /** Sent as JOIN's `url`: the page this client belongs to, for live pages. */
  readonly page?: string
  /** Sent as JOIN's `params`. */
  readonly params?: Readonly<Record<string, unknown>>
  /** 30 s by default. */
  readonly heartbeatInterval?: Duration.DurationInput
  /** A connection with no incoming frame for this long is dropped; 60 s by default. */
  readonly idleTimeout?: Duration.DurationInput
  /** First reconnect (and re-subscribe) backoff cap, 500 ms by default (doubling per attempt). */
  readonly reconnectInitial?: Duration.DurationInput
  /** Largest reconnect (and re-subscribe) backoff cap, 20 s by default. */
  readonly reconnectMax?: Duration.DurationInput
  /** How long to wait for the socket to open and for a REPLY; 10 s by default. */
  readonly requestTimeout?: Duration.DurationInput
}

/** The live connection service: one socket kept up, subscriptions kept across reconnects. */
export class LiveClient extends Context.Tag("@mizu/client/LiveClient")<LiveClient, {
  /** The current status. */
  readonly status: Effect.Effect<LiveStatus>
  /** The current status, then every change. */
  readonly statusChanges: Stream.Stream<LiveStatus>
  /** Every event from now on (subscribe before acting, so nothing falls in between). */
  readonly subscribeEvents: Effect.Effect<Queue.Dequeue<LiveEvent>, never, Scope.Scope>
  /** Every event from when the stream is run. */
  readonly events: Stream.Stream<LiveEvent>
  /**
   * Subscribe to scopes (or topics); resolves with their heads from the
   * server's REPLY. Waits for a connection when offline; a transient refusal
   * (`unavailable`, `too_many_scopes`, a timeout) is retried with backoff.
   * Fails with `refused` when the server refuses some as `forbidden`: those
   * are forgotten (a `Forbidden` event), the others of the call stay.
   */
  readonly subscribe: (scopes: ReadonlyArray<string>) => Effect.Effect<Readonly<Record<string, number>>, LiveError>
  /** Stop receiving pokes for scopes; resolves once the server confirmed, or at once when offline. */
  readonly unsubscribe: (scopes: ReadonlyArray<string>) => Effect.Effect<void, LiveError>
  /** The wanted scopes: kept subscribed across reconnects, asked for again after transient refusals. */
  readonly scopes: Effect.Effect<ReadonlyArray<string>>
  /** Send an ephemeral event to the other subscribers of `topic` (dropped, with `disconnected`, when offline). */
  readonly broadcast: (topic: string, event: string, values?: Readonly<Record<string, unknown>>) => Effect.Effect<void, LiveError>
  /** Announce this session's presence on `topic` with `values`; kept and re-sent after reconnects. */
  readonly presence: (topic: string, values: Readonly<Record<string, unknown>>) => Effect.Effect<void>
  /** The last known presence state of `topic` (`key → meta`). */
  readonly presenceState: (topic: string) => Effect.Effect<Readonly<Record<string, unknown>>>
  /** Drop the current connection now (a reconnect with backoff follows). For apps that know the network changed, and tests. */
  readonly reconnect: Effect.Effect<void>
}>() {}

/** `http(s)://host` → `ws(s)://host/_live/websocket`. */
export const websocketUrl = (baseUrl: string, path = "/_live/websocket"): string =>
  `${baseUrl.replace(/^http/, "ws")}${path}`

/** A request waiting for its REPLY. */
interface Waiting {
  readonly deferred: Deferred.Deferred<Live.ReplyPayload, LiveError>
}

interface Connection {
  readonly write: (frame: typeof Live.ClientFrame.Encoded) => Effect.Effect<void>
  readonly replies: Map<number, Waiting>
  readonly drop: Effect.Effect<void>
  /** The scopes the server accepted on this connection. */
  readonly subscribed: Set<string>
}

/** What a SUBSCRIBE came to: accepted with heads, refused as forbidden (forget), or failed for now (ask again later). */
type SubscribeOutcome =
  | { readonly _tag: "Ok"; readonly cursors: Readonly<Record<string, number>> }
  | { readonly _tag: "Forbidden"; readonly message: string | undefined }
  | { readonly _tag: "Transient"; readonly reason: string; readonly message: string | undefined }

const validateScopes = Schema.decodeUnknownEither(Schema.Array(Protocol.Scope))

/** CLOSE reasons after which the reconnect delay keeps growing instead of starting over. */
const backsOff: ReadonlySet<string> = new Set(["rate_limited", "slow_consumer", "unauthorized"])

const disconnected = () => new LiveError({ reason: "disconnected", message: "the connection closed" })

/** Build a live client whose connection lives as long as the scope. */
export const make = (options: Options): Effect.Effect<LiveClient["Type"], never, Socket.WebSocketConstructor | Scope.Scope> =>
  Effect.gen(function*() {
    const heartbeat = Duration.decode(options.heartbeatInterval ?? Duration.seconds(30))
    const idle = Duration.toMillis(options.idleTimeout ?? Duration.seconds(60))
    const backoffOptions: Backoff.Options = {
      initial: options.reconnectInitial ?? Duration.millis(500),
      max: options.reconnectMax ?? Duration.seconds(20)
    }
    const requestTimeout = Duration.decode(options.requestTimeout ?? Duration.seconds(10))

    const pubsub = yield* Effect.acquireRelease(PubSub.unbounded<LiveEvent>(), PubSub.shutdown)
    const status = yield* SubscriptionRef.make<LiveStatus>("connecting")
    const current = yield* SubscriptionRef.make<Option.Option<Connection>>(Option.none())
    /** The wanted scopes: what every JOIN asks for; left only by `unsubscribe` and a `forbidden` refusal. */
    const desired = new Set<string>(options.scopes ?? [])
    /** Scopes a `subscribe` call is asking for (and retrying) itself: the background retry leaves them to it. */
    const inflight = new Map<string, number>()
    /** Wakes the background retry of wanted scopes (a `subscribe` ended, an `unsubscribe` freed room). */
    const retryWake = yield* Queue.sliding<void>(1)
    const presenceValues = new Map<string, Readonly<Record<string, unknown>>>()
    const presence = new Map<string, Record<string, unknown>>()
    let ref = 0
    let sessionId: string | undefined
    let joinedOnce = false
    /** The CLOSE reason of the current connection, if the server sent one. */
    let closedFor: string | undefined
    const decoder = new TextDecoder()

    const publish = (event: LiveEvent) => PubSub.publish(pubsub, event)

    const applyPresence = (p: Live.PresencePayload): Record<string, unknown> => {
      const state: Record<string, unknown> = p.state !== undefined ? { ...p.state } : { ...presence.get(p.topic) }
      for (const key of Object.keys(p.leaves ?? {})) delete state[key]
      Object.assign(state, p.joins ?? {})
      presence.set(p.topic, state)
      return state
    }

    const takeWaiting = (conn: Connection, r: number | undefined) => {
      if (r === undefined) return undefined
      const waiting = conn.replies.get(r)
      conn.replies.delete(r)
      return waiting
    }

    const onFrame = (conn: Connection) => (frame: typeof Live.ServerFrame.Type): Effect.Effect<void> => {
      switch (frame.type) {
        case Live.FrameType.REPLY: {
          const waiting = takeWaiting(conn, frame.ref)
          if (waiting === undefined) return Effect.void
          return Deferred.succeed(waiting.deferred, frame.payload)
        }
        case Live.FrameType.POKE:
          return publish({ _tag: "Poke", scope: frame.payload.scope, cursor: frame.payload.cursor })
        case Live.FrameType.BROADCAST:
          return publish({
            _tag: "Broadcast",
            topic: frame.payload.topic,
            event: frame.payload.event,
            payload: frame.payload.payload,
            from: frame.payload.from
          })
        case Live.FrameType.PRESENCE: {
          const state = applyPresence(frame.payload)
          return publish({ _tag: "Presence", topic: frame.payload.topic, current: state, joins: frame.payload.joins, leaves: frame.payload.leaves })
        }
        case Live.FrameType.ERROR: {
          const event = publish({ _tag: "Error", code: frame.payload.code, message: frame.payload.message, recoverable: frame.payload.recoverable })
          const waiting = takeWaiting(conn, frame.ref)
          if (waiting === undefined) return event
          return Effect.zipRight(event, Deferred.fail(waiting.deferred, new LiveError({ reason: "refused", message: `${frame.payload.code}: ${frame.payload.message ?? ""}` })))
        }
        case Live.FrameType.CLOSE:
          closedFor = frame.payload.reason
          return publish({ _tag: "Closed", reason: frame.payload.reason, message: frame.payload.message })
        case Live.FrameType.HEARTBEAT:
          return Effect.void
        default:
          return publish({ _tag: "Page", frame })
      }
    }

    /** Send a frame with a fresh `ref` and wait for its REPLY (fails `disconnected` if the connection closes first). */
    const request = (
      conn: Connection,
      frame: (ref: number) => typeof Live.ClientFrame.Encoded
    ): Effect.Effect<Live.ReplyPayload, LiveError> =>
      Effect.gen(function*() {
        const r = ++ref
        const deferred = yield* Deferred.make<Live.ReplyPayload, LiveError>()
        conn.replies.set(r, { deferred })
        yield* conn.write(frame(r))
        return yield* Deferred.await(deferred)
      }).pipe(
        Effect.timeoutFail({ duration: requestTimeout, onTimeout: () => new LiveError({ reason: "timeout", message: "no REPLY in time" }) })
      )

    const joinFrame = (scopes: ReadonlyArray<string>, token: string | undefined) => (r: number): typeof Live.ClientFrame.Encoded => ({
      type: Live.FrameType.JOIN,
      ref: r,
      payload: {
        scopes,
        ...(token === undefined ? {} : { token }),
        ...(options.params === undefined ? {} : { params: options.params }),
        ...(options.page === undefined ? {} : { url: options.page }),
        ...(sessionId === undefined ? {} : { session: sessionId }),
        ...(joinedOnce ? { reconnect: true } : {})
      }
    })

    /** A SUBSCRIBE on `conn`, classified; a timeout is transient, a closed connection fails `disconnected`. */
    const trySubscribe = (conn: Connection, scopes: ReadonlyArray<string>): Effect.Effect<SubscribeOutcome, LiveError> =>
      request(conn, (r) => ({ type: Live.FrameType.SUBSCRIBE, ref: r, payload: { scopes } })).pipe(
        Effect.map((reply): SubscribeOutcome => {
          if (reply.status === "ok") return { _tag: "Ok", cursors: reply.cursors ?? {} }
          if (reply.reason === "forbidden") return { _tag: "Forbidden", message: reply.message }
          return { _tag: "Transient", reason: reply.reason ?? "refused", message: reply.message }
        }),
        Effect.catchIf((e) => e.reason === "timeout", (e) => Effect.succeed<SubscribeOutcome>({ _tag: "Transient", reason: "timeout", message: e.message }))
      )

    interface Subscribed {
      readonly cursors: Record<string, number>
      readonly forbidden: Array<string>
      readonly failed: Array<string>
    }

    /**
     * Subscribe `scopes` on `conn`: in one request, or one by one when that
     * is refused (so one bad scope does not hold back the others). Forbidden
     * scopes are forgotten; the others that failed stay wanted. `announce`:
     * publish the accepted heads as a `Subscribed` event (JOIN reports its
     * own in `Online`).
     */
    const subscribeOn = (conn: Connection, scopes: ReadonlyArray<string>, announce: boolean): Effect.Effect<Subscribed, LiveError> =>
      Effect.gen(function*() {
        const out: Subscribed = { cursors: {}, forbidden: [], failed: [] }
        const record = (asked: ReadonlyArray<string>, outcome: SubscribeOutcome) => {
          if (outcome._tag === "Ok") {
            for (const s of asked) {
              out.cursors[s] = outcome.cursors[s] ?? 0
              if (desired.has(s)) conn.subscribed.add(s)
            }
          } else {
            ;(outcome._tag === "Forbidden" ? out.forbidden : out.failed).push(...asked)
          }
        }
        const all = yield* trySubscribe(conn, scopes)
        let why: string | undefined = all._tag === "Ok" ? undefined : all.message ?? (all._tag === "Transient" ? all.reason : "forbidden")
        if (all._tag === "Ok" || scopes.length === 1) record(scopes, all)
        else {
          for (const scope of scopes) {
            const one = yield* trySubscribe(conn, [scope])
            if (one._tag !== "Ok") why = one.message ?? (one._tag === "Transient" ? one.reason : "forbidden")
            record([scope], one)
          }
        }
        yield* forget(conn, out.forbidden, why)
        if (out.failed.length > 0) {
          yield* publish({ _tag: "Error", code: "subscribe_failed", message: `${out.failed.join(", ")}: ${why ?? ""} (asked again later)`, recoverable: true })
        }
        if (announce && Object.keys(out.cursors).length > 0) yield* publish({ _tag: "Subscribed", cursors: out.cursors })
        return out
      })

    /** The server refused these scopes as forbidden: no longer wanted. */
    const forget = (conn: Connection, scopes: ReadonlyArray<string>, message: string | undefined) =>
      scopes.length === 0 ? Effect.void : Effect.suspend(() => {
        for (const s of scopes) {
          desired.delete(s)
          conn.subscribed.delete(s)
        }
        return publish({ _tag: "Forbidden", scopes, message })
      })

    /**
     * JOIN with every wanted scope. If the server refuses (one scope may
     * have become forbidden, or storage failed), JOIN with none and subscribe
     * scope by scope: forbidden ones are forgotten (and reported), the others
     * that failed are left to `retryWanted`, so one bad scope never keeps the
     * client offline.
     */
    const join = (conn: Connection): Effect.Effect<{ readonly sessionId: string | undefined; readonly cursors: Record<string, number> }, LiveError> =>
      Effect.gen(function*() {
        const token = yield* Token.resolve(options.token).pipe(
          Effect.tapError((e) => publish({ _tag: "Error", code: "token_failed", message: e.message, recoverable: true })),
          Effect.mapError((e) => new LiveError({ reason: "refused", message: e.message }))
        )
        const scopes = [...desired]
        const first = yield* request(conn, joinFrame(scopes, token))
        if (first.status === "ok") {
          for (const s of scopes) if (desired.has(s)) conn.subscribed.add(s)
          return { sessionId: first.session_id, cursors: { ...first.cursors } }
        }
        yield* publish({ _tag: "Error", code: first.reason ?? "join_failed", message: first.message, recoverable: true })
        if (scopes.length === 0) return yield* new LiveError({ reason: "refused", message: first.reason ?? "JOIN refused" })
        const bare = yield* request(conn, joinFrame([], token))
        if (bare.status === "error") return yield* new LiveError({ reason: "refused", message: bare.reason ?? "JOIN refused" })
        const result = yield* subscribeOn(conn, scopes, false)
        return { sessionId: bare.session_id, cursors: result.cursors }
      })

    /** Ask again, with backoff, for the wanted scopes this connection does not have (and no `subscribe` call is asking for). */
    const retryWanted = (conn: Connection): Effect.Effect<void> =>
      Effect.gen(function*() {
        const backoff = yield* Backoff.make(backoffOptions, retryWake)
        while (true) {
          const missing = [...desired].filter((s) => !conn.subscribed.has(s) && !inflight.has(s))
          if (missing.length === 0) {
            yield* backoff.reset
            yield* Queue.take(retryWake)
            continue
          }
          const result = yield* Effect.either(subscribeOn(conn, missing, true))
          if (Either.isLeft(result) && result.left.reason === "disconnected") return
          if (Either.isLeft(result) || result.right.failed.length > 0) yield* backoff.wait
          else yield* backoff.reset
        }
      })

    /** One connection, from open to close. Returns whether a JOIN was accepted. */
    const connectOnce: Effect.Effect<boolean, never, Socket.WebSocketConstructor> = Effect.scoped(Effect.gen(function*() {
      yield* SubscriptionRef.set(status, "connecting")
      const url = typeof options.url === "function" ? options.url() : options.url
      const socket = yield* Socket.makeWebSocket(url, { protocols: Live.SUBPROTOCOL, openTimeout: requestTimeout })
      const write = yield* socket.writer
      const ended = yield* Deferred.make<void>()
      const conn: Connection = {
        replies: new Map(),
        write: (frame) => write(Live.encodeClientFrame(frame)).pipe(Effect.ignore),
        drop: Deferred.succeed(ended, undefined).pipe(Effect.asVoid),
        subscribed: new Set()
      }
      let joined = false
      yield* Effect.addFinalizer(() =>
        Effect.gen(function*() {
          for (const waiting of conn.replies.values()) yield* Deferred.fail(waiting.deferred, disconnected())
          conn.replies.clear()
          if (!joined) return
          yield* SubscriptionRef.set(current, Option.none())
          yield* publish({ _tag: "Offline", reason: "the connection closed" })
        })
      )
      let lastIncoming = Date.now()
      const handle = onFrame(conn)
      const runner = yield* socket.runRaw((data) => {
        lastIncoming = Date.now()
        const decoded = Live.decodeServerFrame(typeof data === "string" ? data : decoder.decode(data))
        return Either.isRight(decoded)
          ? handle(decoded.right)
          : publish({ _tag: "Error", code: "invalid_frame", message: decoded.left, recoverable: true })
      }).pipe(Effect.either, Effect.forkScoped)
      const socketEnded = Effect.zipRight(Fiber.join(runner), Effect.fail(disconnected()))

      const accepted = yield* join(conn).pipe(Effect.raceFirst(socketEnded), Effect.either)
      if (Either.isLeft(accepted)) return false
      const isReconnect = joinedOnce
      joined = true
      joinedOnce = true
      sessionId = accepted.right.sessionId ?? sessionId
      yield* SubscriptionRef.set(current, Option.some(conn))
      yield* SubscriptionRef.set(status, "connected")
      yield* publish({ _tag: "Online", sessionId: accepted.right.sessionId, cursors: accepted.right.cursors, reconnect: isReconnect })
      for (const [topic, values] of presenceValues) yield* conn.write(presenceFrame(topic, values))
      const retrying = yield* Effect.forkScoped(retryWanted(conn))

      const beat = Effect.gen(function*() {
        let n = 0
        while (true) {
          yield* Effect.sleep(heartbeat)
          if (Date.now() - lastIncoming > idle) return
          yield* conn.write({ type: Live.FrameType.HEARTBEAT, payload: { ping: ++n } })
        }
      })
      yield* Effect.raceAll([Fiber.join(runner).pipe(Effect.asVoid), beat, Deferred.await(ended)])
      yield* Fiber.interrupt(retrying)
      return true
    }))

    const loop = Effect.gen(function*() {
      const backoff = yield* Backoff.make(backoffOptions)
      while (true) {
        closedFor = undefined
        // a constructor that throws (no WebSocket here, a malformed URL) is reported and retried, never fatal
        const joined = yield* connectOnce.pipe(
          Effect.catchAllDefect((defect) =>
            Effect.as(publish({ _tag: "Error", code: "connect_failed", message: String(defect), recoverable: true }), false)
          )
        )
        yield* SubscriptionRef.set(status, "disconnected")
        // a session the server closed for what it did (too many frames, too slow, credentials no
        // longer valid) reconnects after a growing delay, not at once: the backoff goes on
        if (joined && (closedFor === undefined || !backsOff.has(closedFor))) yield* backoff.reset
        yield* backoff.wait
      }
    })
    yield* Effect.forkScoped(loop)
    yield* Effect.addFinalizer(() => SubscriptionRef.set(status, "closed"))

    const awaitConnection: Effect.Effect<Connection> = current.changes.pipe(
      Stream.filterMap((c) => c),
      Stream.take(1),
      Stream.runHead,
      Effect.flatMap(Option.match({ onNone: () => Effect.never, onSome: Effect.succeed }))
    )

    const checkScopes = (scopes: ReadonlyArray<string>) =>
      Either.match(validateScopes(scopes), {
        onLeft: (e) => Effect.fail(new LiveError({ reason: "invalid", message: Protocol.formatParseError(e) })),
        onRight: (s) => Effect.succeed(s)
      })

    /** While `self` runs, the background retry leaves `scopes` to it; afterwards it looks again. */
    const asking = <A, E>(scopes: ReadonlyArray<string>, self: Effect.Effect<A, E>): Effect.Effect<A, E> =>
      Effect.acquireUseRelease(
        Effect.sync(() => {
          for (const s of scopes) inflight.set(s, (inflight.get(s) ?? 0) + 1)
        }),
        () => self,
        () =>
          Effect.zipRight(
            Effect.sync(() => {
              for (const s of scopes) {
                const n = (inflight.get(s) ?? 1) - 1
                if (n > 0) inflight.set(s, n)
                else inflight.delete(s)
              }
            }),
            Queue.offer(retryWake, undefined)
          )
      )

    const subscribe = (scopes: ReadonlyArray<string>) =>
      Effect.gen(function*() {
        yield* checkScopes(scopes)
        // wanted from now on: a reconnect's JOIN asks for them, whatever this call comes to
        for (const s of scopes) desired.add(s)
        const backoff = yield* Backoff.make(backoffOptions)
        const cursors: Record<string, number> = {}
        let remaining: ReadonlyArray<string> = scopes
        while (true) {
          const conn = yield* awaitConnection
          const result = yield* Effect.either(subscribeOn(conn, remaining, true))
          if (Either.isLeft(result)) {
            if (result.left.reason === "disconnected") continue
            return yield* result.left
          }
          Object.assign(cursors, result.right.cursors)
          if (result.right.forbidden.length > 0) {
            return yield* new LiveError({ reason: "refused", message: `forbidden: ${result.right.forbidden.join(", ")}` })
          }
          remaining = result.right.failed.filter((s) => desired.has(s))
          if (remaining.length === 0) return cursors
          yield* backoff.wait
        }
      }).pipe((self) => asking(scopes, self))

    const unsubscribe = (scopes: ReadonlyArray<string>) =>
      Effect.gen(function*() {
        yield* checkScopes(scopes)
        for (const s of scopes) desired.delete(s)
        const conn = yield* SubscriptionRef.get(current)
        if (Option.isNone(conn)) return
        for (const s of scopes) conn.value.subscribed.delete(s)
        const reply = yield* request(conn.value, (r) => ({ type: Live.FrameType.UNSUBSCRIBE, ref: r, payload: { scopes } })).pipe(
          Effect.catchTag("LiveError", (e) => e.reason === "disconnected" ? Effect.succeed(undefined) : Effect.fail(e))
        )
        // room freed (too_many_scopes): the background retry may get the others now
        yield* Queue.offer(retryWake, undefined)
        if (reply !== undefined && reply.status === "error") {
          return yield* new LiveError({ reason: "refused", message: reply.reason ?? reply.message ?? "refused" })
        }
      })

    const presenceFrame = (topic: string, values: Readonly<Record<string, unknown>>): typeof Live.ClientFrame.Encoded => ({
      type: Live.FrameType.EVENT,
      topic,
      payload: { name: "presence", topic, values }
    })

    return LiveClient.of({
      status: SubscriptionRef.get(status),
      statusChanges: status.changes,
      subscribeEvents: PubSub.subscribe(pubsub),
      events: Stream.fromPubSub(pubsub),
      subscribe,
      unsubscribe,
      scopes: Effect.sync(() => [...desired]),
      broadcast: (topic, event, values) =>
        Effect.flatMap(SubscriptionRef.get(current), Option.match({
          onNone: () => Effect.fail(new LiveError({ reason: "disconnected", message: "not connected; ephemeral events are not queued" })),
          onSome: (conn) =>
            conn.write({ type: Live.FrameType.EVENT, topic, payload: { name: event, topic, ...(values === undefined ? {} : { values }) } })
        })),
      presence: (topic, values) =>
        Effect.flatMap(Effect.sync(() => presenceValues.set(topic, values)), () =>
          Effect.flatMap(SubscriptionRef.get(current), Option.match({
            onNone: () => Effect.void,
            onSome: (conn) => conn.write(presenceFrame(topic, values))
          }))),
      presenceState: (topic) => Effect.sync(() => ({ ...presence.get(topic) })),
      reconnect: Effect.flatMap(SubscriptionRef.get(current), Option.match({ onNone: () => Effect.void, onSome: (c) => c.drop }))
    })
  })

/** A live client for the layer's lifetime; needs a `Socket.WebSocketConstructor`. */
export const layer = (options: Options): Layer.Layer<LiveClient, never, Socket.WebSocketConstructor> =>
  Layer.scoped(LiveClient, make(options))

/** A live client on the global `WebSocket` (browsers, Deno, Node 22+). */
export const layerGlobal = (options: Options): Layer.Layer<LiveClient> =>
  layer(options).pipe(Layer.provide(Socket.layerWebSocketConstructorGlobal))

/**
 * A `Socket.WebSocketConstructor` from a constructor you pass (the `ws`
 * package's `WebSocket` in Node, a test double, …).
 */
export const layerWebSocketConstructor = (
  ctor: new(url: string, protocols?: string | Array<string>) => unknown
): Layer.Layer<Socket.WebSocketConstructor> =>
  Layer.succeed(Socket.WebSocketConstructor, (url, protocols) => new ctor(url, protocols) as globalThis.WebSocket)
