/**
 * The one WebSocket client of the live protocol, shared by `LiveClient` and
 * the live-page runtime: the socket (`mizu-live-v1`), JOIN, requests
 * answered by the REPLY (or ERROR) with their `ref`, heartbeats, the idle
 * timeout and the reconnect policy.
 *
 * Invariants:
 * - Every incoming frame is decoded with the protocol Schemas; one that does
 *   not decode goes to `onInvalid` and is otherwise ignored.
 * - A request waits for the REPLY (or ERROR) with its `ref`, for at most the
 *   request timeout; it fails `disconnected` when the connection ends first.
 * - A connection counts as up once the session's `join` succeeded; only
 *   then does `online` run (interrupted when the connection ends) and, when
 *   it ends, `offline`.
 * - Reconnects use `Backoff.resetWhen`: the delays start over after a
 *   connection that joined, unless the server closed it for what the
 *   client did (`rate_limited`, `slow_consumer`, `unauthorized`); CLOSE
 *   reasons in `stopOn` end the retries.
 *
 * @since 0.1.0
 * @internal
 */
import * as Socket from "@effect/platform/Socket"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as SubscriptionRef from "effect/SubscriptionRef"
import * as Live from "../../protocol/Live.js"
import * as Backoff from "../Backoff.js"
import { LiveError, type LiveStatus } from "../LiveClient.js"

/** An open connection, as the session sees it. */
export interface Connection {
  /** Write a frame (a write on a closed socket is dropped). */
  readonly write: (frame: typeof Live.ClientFrame.Encoded) => Effect.Effect<void>
  /** Send a frame with a fresh `ref` and wait for its REPLY; an ERROR with that `ref` fails it `refused`. */
  readonly request: (frame: (ref: number) => typeof Live.ClientFrame.Encoded) => Effect.Effect<Live.ReplyPayload, LiveError>
  /** End this connection now (a reconnect follows). */
  readonly drop: Effect.Effect<void>
}

/** How to connect and when to give up. */
export interface Settings {
  /** Asked on every connect. */
  readonly url: () => string
  readonly heartbeat: Duration.Duration
  /** A connection with no incoming frame for this long is dropped. */
  readonly idle: Duration.Duration
  /** For the socket to open and for each REPLY. */
  readonly requestTimeout: Duration.Duration
  readonly backoff: Backoff.Options
  /** CLOSE reasons after which the client does not reconnect. */
  readonly stopOn?: ReadonlySet<string>
}

/** What a client does on each connection. */
export interface Session<J> {
  /** JOIN (and anything before the connection counts as up); a failure ends the connection. */
  readonly join: (conn: Connection) => Effect.Effect<J, LiveError>
  /** While the connection is up; interrupted when it ends. */
  readonly online: (conn: Connection, joined: J) => Effect.Effect<void>
  /** After a connection that was up ended (before the reconnect delay). */
  readonly offline: Effect.Effect<void>
  /** Every decoded frame but REPLY and HEARTBEAT (an ERROR with a `ref` also fails its request). */
  readonly onFrame: (frame: typeof Live.ServerFrame.Type) => Effect.Effect<void>
  /** A frame that did not decode. */
  readonly onInvalid: (message: string) => Effect.Effect<void>
  /** The socket could not even be made (no WebSocket here, a malformed URL): reported, then retried. */
  readonly onDefect: (defect: unknown) => Effect.Effect<void>
}

/** How a connection ended: whether it had joined, and the CLOSE reason the server gave, if any. */
export class ConnectionLost extends Data.TaggedError("ConnectionLost")<{
  readonly joined: boolean
  readonly closedFor: string | undefined
}> {}

/** CLOSE reasons after which the reconnect delay keeps growing instead of starting over. */
const backsOff: ReadonlySet<string> = new Set(["rate_limited", "slow_consumer", "unauthorized"])

/** The reconnect delays start over after a connection that joined and was not closed for what the client did. */
const startsOver = (lost: ConnectionLost): boolean => lost.joined && (lost.closedFor === undefined || !backsOff.has(lost.closedFor))

/** The error of a request whose connection ended first. */
export const disconnected = (): LiveError => new LiveError({ reason: "disconnected", message: "the connection closed" })

/** A connection's mutable bookkeeping, owned by `connectOnce`. */
interface Wire {
  ref: number
  lastIncoming: number
  closedFor: string | undefined
  joined: boolean
  readonly replies: Map<number, Deferred.Deferred<Live.ReplyPayload, LiveError>>
}

const takeReply = (wire: Wire, ref: number | undefined) => {
  if (ref === undefined) return undefined
  const waiting = wire.replies.get(ref)
  wire.replies.delete(ref)
  return waiting
}

/** One decoded frame: replies to their request, CLOSE remembered, the rest to the session. */
const dispatch = <J>(wire: Wire, session: Session<J>) => (frame: typeof Live.ServerFrame.Type): Effect.Effect<void> => {
  switch (frame.type) {
    case Live.FrameType.REPLY: {
      const waiting = takeReply(wire, frame.ref)
      return waiting === undefined ? Effect.void : Deferred.succeed(waiting, frame.payload)
    }
    case Live.FrameType.HEARTBEAT:
      return Effect.void
    case Live.FrameType.ERROR: {
      const waiting = takeReply(wire, frame.ref)
      const refused = new LiveError({ reason: "refused", message: `${frame.payload.code}: ${frame.payload.message ?? ""}` })
      return waiting === undefined ? session.onFrame(frame) : Effect.zipRight(session.onFrame(frame), Deferred.fail(waiting, refused))
    }
    case Live.FrameType.CLOSE:
      wire.closedFor = frame.payload.reason
      return session.onFrame(frame)
    default:
      return session.onFrame(frame)
  }
}

const makeConnection = (
  wire: Wire,
  write: (chunk: string) => Effect.Effect<void, Socket.SocketError>,
  ended: Deferred.Deferred<void>,
  requestTimeout: Duration.Duration
): Connection => {
  const send = (frame: typeof Live.ClientFrame.Encoded) => write(Live.encodeClientFrame(frame)).pipe(Effect.ignore)
  return {
    write: send,
    request: (frame) =>
      Effect.gen(function*() {
        const ref = ++wire.ref
        const deferred = yield* Deferred.make<Live.ReplyPayload, LiveError>()
        wire.replies.set(ref, deferred)
        yield* send(frame(ref))
        return yield* Deferred.await(deferred)
      }).pipe(
        Effect.timeoutFail({ duration: requestTimeout, onTimeout: () => new LiveError({ reason: "timeout", message: "no REPLY in time" }) })
      ),
    drop: Effect.asVoid(Deferred.succeed(ended, undefined))
  }
}

/** A HEARTBEAT every `interval`; ends (so the connection is dropped) once nothing came in for `idle`. */
const heartbeat = (conn: Connection, wire: Wire, settings: Settings): Effect.Effect<void> => {
  let ping = 0
  const idle = Duration.toMillis(settings.idle)
  return Effect.sleep(settings.heartbeat).pipe(
    Effect.zipRight(Effect.suspend(() =>
      Date.now() - wire.lastIncoming > idle
        ? Effect.succeed(true)
        : Effect.as(conn.write({ type: Live.FrameType.HEARTBEAT, payload: { ping: ++ping } }), false)
    )),
    Effect.repeat({ until: (stop) => stop }),
    Effect.asVoid
  )
}

/**
 * One connection, from open to close; always fails with how it ended. The
 * session's `join` races the socket's end; once it succeeded the
 * connection is up until the socket ends, the idle timeout, or `drop`.
 */
const connectOnce = <J>(
  settings: Settings,
  session: Session<J>,
  status: SubscriptionRef.SubscriptionRef<LiveStatus>
): Effect.Effect<never, ConnectionLost, Socket.WebSocketConstructor> =>
  Effect.scoped(Effect.gen(function*() {
    yield* SubscriptionRef.set(status, "connecting")
    const socket = yield* Socket.makeWebSocket(settings.url(), { protocols: Live.SUBPROTOCOL, openTimeout: settings.requestTimeout })
    const write = yield* socket.writer
    const ended = yield* Deferred.make<void>()
    const wire: Wire = { ref: 0, lastIncoming: Date.now(), closedFor: undefined, joined: false, replies: new Map() }
    const conn = makeConnection(wire, write, ended, settings.requestTimeout)
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        const waiting = [...wire.replies.values()]
        wire.replies.clear()
        return Effect.zipRight(
          Effect.forEach(waiting, (d) => Deferred.fail(d, disconnected()), { discard: true }),
          wire.joined ? session.offline : Effect.void
        )
      })
    )
    const lost = () => new ConnectionLost({ joined: wire.joined, closedFor: wire.closedFor })
    const handle = dispatch(wire, session)
    const decoder = new TextDecoder()
    const runner = yield* socket.runRaw((data) => {
      wire.lastIncoming = Date.now()
      const decoded = Live.decodeServerFrame(typeof data === "string" ? data : decoder.decode(data))
      return Either.isRight(decoded) ? handle(decoded.right) : session.onInvalid(decoded.left)
    }).pipe(Effect.either, Effect.forkScoped)
    const socketEnded = Effect.zipRight(Fiber.join(runner), Effect.fail(disconnected()))

    const joined = yield* session.join(conn).pipe(Effect.raceFirst(socketEnded), Effect.mapError(lost))
    wire.joined = true
    yield* SubscriptionRef.set(status, "connected")
    yield* Effect.raceAll([
      Effect.asVoid(Fiber.join(runner)),
      heartbeat(conn, wire, settings),
      Deferred.await(ended),
      Effect.zipRight(session.online(conn, joined), Effect.never)
    ])
    return yield* lost()
  }))

/**
 * Connect, and reconnect with `Backoff` for as long as the caller's fiber
 * runs (or until the server closes for a reason in `stopOn`). `status` is
 * `connecting` while a connection opens and joins, `connected` while it is
 * up, `disconnected` between connections.
 */
export const keepConnected = <J>(
  settings: Settings,
  session: Session<J>,
  status: SubscriptionRef.SubscriptionRef<LiveStatus>
): Effect.Effect<never, ConnectionLost, Socket.WebSocketConstructor> =>
  connectOnce(settings, session, status).pipe(
    Effect.catchAllDefect((defect) =>
      Effect.zipRight(session.onDefect(defect), Effect.fail(new ConnectionLost({ joined: false, closedFor: undefined })))
    ),
    Effect.tapError(() => SubscriptionRef.set(status, "disconnected")),
    Effect.retry({
      schedule: Backoff.resetWhen(settings.backoff, startsOver),
      while: (lost) => lost.closedFor === undefined || settings.stopOn === undefined || !settings.stopOn.has(lost.closedFor)
    })
  )
