/**
 * The production merge of a session's two sources: the socket adapter's
 * decoded client messages and the hub's deliveries (with the session's own
 * signals) go into ONE inbox queue, and the session protocol reads
 * `Stream.fromQueue(inbox)` as its input. This is `Stream.merge(client, hub)`
 * with arrival order, at the cost of one queue and no fiber per source (an
 * idle session is held 10,000+ times; a `Stream.merge` costs two fibers and
 * their channels per session).
 *
 * Bounds: client messages are bounded by the socket adapter (it pauses the
 * socket above `maxQueuedFrames`), pokes by conflation (one per scope),
 * presence states by topic, and hub frames by `maxPendingBytes` (their bytes
 * are counted while they wait).
 *
 * Direct delivery — the one optimisation of the path: a synchronous hub
 * delivery (POKE, a ready-encoded frame, a presence state) offered while the
 * consumer is parked on an empty inbox is handed to the protocol's step at
 * once, in the offerer's stack, instead of being queued and waking the
 * consumer's fiber. It is the same step and the same writes the consumer
 * would do next, in the same order (nothing is ahead of it and nothing is
 * being handled), so it changes cost, not behaviour.
 *
 * @internal
 */
import * as Queue from "effect/Queue"
import * as Stream from "effect/Stream"
import { type Feed, type Input, isSynchronous, type SessionProtocol } from "./sessionProtocol.js"

/** One session's inbox: what the socket adapter and the session's `Feed` offer, in arrival order. */
export class SessionInbox implements Feed {
  /** The protocol reading this inbox (set once it is made): the target of direct delivery. */
  consumer: SessionProtocol | undefined = undefined

  constructor(readonly queue: Queue.Queue<Input>) {}

  /** The session's input stream. */
  get input(): Stream.Stream<Input> {
    return Stream.fromQueue(this.queue)
  }

  offer(input: Input): void {
    const consumer = this.consumer
    if (consumer !== undefined && isSynchronous(input) && this.parked()) return consumer.deliver(input)
    Queue.unsafeOffer(this.queue, input)
  }

  /** The consumer is parked on the inbox: nothing queued, nothing being handled. */
  parked(): boolean {
    const size = this.queue.unsafeSize()
    return size._tag === "Some" && size.value < 0
  }
}
