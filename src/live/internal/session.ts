/**
 * A session's assembly: the socket adapter (reader + `Connection`), the
 * inbox that merges its messages with the hub's deliveries, and the session
 * protocol reading that inbox as its input stream. Closing the session's
 * `Scope`, for whatever cause, releases its server registration and lease,
 * its hub subscriptions, its presence and its socket, in one finalizer.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as Queue from "effect/Queue"
import type { WebSocket } from "ws"
import * as Metrics from "../../Metrics.js"
import type { Lease, Options, Requirements, SessionRegistry } from "../Session.js"
import { SessionInbox } from "./sessionInbox.js"
import { limitsOf } from "./sessionLimits.js"
import * as Protocol from "./sessionProtocol.js"
import { SocketAdapter } from "./socketAdapter.js"

/** `Session.run`: a session over an upgraded `ws` socket until it ends. */
export const run = (
  ws: WebSocket,
  options: Options & { readonly registry: SessionRegistry },
  lease?: Lease
): Effect.Effect<void, never, Requirements> =>
  Effect.gen(function*() {
    const inbox = new SessionInbox(yield* Queue.unbounded<Protocol.Input>())
    const socket = new SocketAdapter(ws, limitsOf(options), inbox)
    const session = yield* Protocol.make(options, socket, inbox)
    inbox.consumer = session
    yield* Effect.annotateCurrentSpan("live.session_id", session.id)
    const registry = options.registry
    yield* Effect.acquireRelease(
      Effect.zipRight(
        Effect.sync(() => {
          socket.listen()
          registry.add(session)
        }),
        Metric.increment(Metrics.sessionsOpen)
      ),
      () =>
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
    )
    yield* Protocol.run(inbox.input, session)
  }).pipe(Effect.withSpan("LiveSession", { captureStackTrace: false }))
