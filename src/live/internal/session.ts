/**
 * A session's assembly: the socket adapter (reader + `Connection`), the
 * inbox that merges its messages with the hub's deliveries, and the session
 * protocol reading that inbox as its input stream. The session's own
 * `Scope`, closed when it ends for whatever cause (its end, a defect,
 * interruption), releases its server registration and lease, its hub
 * subscriptions, its presence and its socket, in one finalizer.
 *
 * An idle session is a fiber parked on its inbox, held 10,000+ times: the
 * fiber's stack is kept short (no generator, no context provided around the
 * whole run: the scope is passed, not provided).
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as Queue from "effect/Queue"
import * as Scope from "effect/Scope"
import type { WebSocket } from "ws"
import * as Metrics from "../../Metrics.js"
import type { Lease, Options, Requirements, SessionRegistry } from "../Session.js"
import { SessionInbox } from "./sessionInbox.js"
import { limitsOf } from "./sessionLimits.js"
import * as Protocol from "./sessionProtocol.js"
import { SocketAdapter } from "./socketAdapter.js"

/** Everything the session holds, released (the finalizer of its Scope). */
const release = (
  socket: SocketAdapter,
  inbox: SessionInbox,
  session: Protocol.SessionProtocol,
  registry: SessionRegistry,
  lease: Lease | undefined
): Effect.Effect<void> =>
  Effect.suspend(() => {
    socket.release()
    registry.delete(session)
    lease?.release()
    Queue.unsafeOffer(inbox.queue, Protocol.END)
    return Effect.all([
      session.release(),
      Queue.shutdown(inbox.queue),
      Metric.incrementBy(Metrics.sessionsOpen, -1)
    ], { discard: true })
  })

/** `Session.run`: a session over an upgraded `ws` socket until it ends, in a Scope of its own. */
export const run = (
  ws: WebSocket,
  options: Options & { readonly registry: SessionRegistry },
  lease?: Lease
): Effect.Effect<void, never, Exclude<Requirements, Scope.Scope>> =>
  Effect.scopedWith((scope) =>
    Effect.flatMap(Queue.unbounded<Protocol.Input>(), (queue) => {
      const inbox = new SessionInbox(queue)
      const socket = new SocketAdapter(ws, limitsOf(options), inbox)
      return Effect.flatMap(Protocol.makeIn(options, socket, inbox, scope), (session) => {
        inbox.consumer = session
        const registry = options.registry
        // registered and released as one: once the socket is read, the finalizer is in the scope
        const started = Effect.uninterruptible(Effect.zipRight(
          Effect.sync(() => {
            socket.listen()
            registry.add(session)
          }),
          Effect.zipRight(
            Metric.increment(Metrics.sessionsOpen),
            Scope.addFinalizer(scope, release(socket, inbox, session, registry, lease))
          )
        ))
        return Effect.zipRight(
          Effect.zipRight(Effect.annotateCurrentSpan("live.session_id", session.id), started),
          Protocol.run(inbox.input, session)
        )
      })
    })
  )
