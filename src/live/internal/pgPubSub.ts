/**
 * `LivePubSub` over PostgreSQL LISTEN/NOTIFY, through `PgClient.listen` and
 * `pg_notify`, on one channel for every topic (`pgNotify.ts`): each process
 * keeps the notifications of the topics it has subscribers for.
 *
 * Invariants:
 * - Publishing never waits on Postgres; a batch of messages is one
 *   `pg_notify` statement, so a message's fragments share a transaction.
 * - The listening connection can die without a word (`PgClient.listen`
 *   swallows its connection's errors), so the listener probes itself: every
 *   `probeInterval` it NOTIFYs a probe and expects to hear it back within
 *   twice that. If it does not, it listens again on a new connection,
 *   retried on `retrySchedule` until Postgres answers; what was published in
 *   between is lost (pokes are hints).
 *
 * @internal
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Metrics from "../../Metrics.js"
import type { LivePubSub } from "../LivePubSub.js"
import type { Options } from "../pg/PgPubSub.js"
import * as Notify from "./pgNotify.js"
import { makePublisher, type Outgoing } from "./pubsubPublisher.js"
import * as Topics from "./pubsubTopics.js"

/** Listening again after a lost LISTEN: 100 ms doubling, at most 5 s. */
const retrySchedule = Schedule.exponential("100 millis").pipe(Schedule.union(Schedule.spaced("5 seconds")))

class ListenLost extends Data.TaggedError("ListenLost")<{ readonly message: string }> {}

/** The listener's state: the probe in flight, ids, and whether an outage is being logged. */
interface Listener {
  readonly node: string
  /** the probe this process is waiting to hear back */
  probe: { readonly id: string; readonly heard: Deferred.Deferred<void> } | undefined
  sequence: number
  /** the listener failed and has not been heard working since (log once per episode) */
  lost: boolean
}

const nextId = (listener: Listener) => () => `${listener.node}:${(++listener.sequence).toString(36)}`

type Notify = (payloads: ReadonlyArray<string>) => Effect.Effect<unknown, unknown>

/** One probe: NOTIFY it and hear it back within twice `interval`, or fail with `ListenLost`. */
const probeOnce = (listener: Listener, notify: Notify, interval: Duration.Duration) =>
  Effect.gen(function*() {
    const heard = yield* Deferred.make<void>()
    const id = nextId(listener)()
    listener.probe = { id, heard }
    const heardBack = yield* notify([Notify.probe(id)]).pipe(
      Effect.zipRight(Deferred.await(heard)),
      Effect.timeout(Duration.sum(interval, interval)),
      Effect.isSuccess
    )
    if (!heardBack) {
      return yield* new ListenLost({ message: "the LISTEN connection does not deliver (a probe was not heard back)" })
    }
    if (listener.lost) {
      listener.lost = false
      yield* Effect.logInfo("postgres LISTEN works again")
    }
  })

/** LISTEN, raced with a probe every `interval`; listened again (on `retrySchedule`) when either fails. */
const listenForever = (
  pg: PgClient.PgClient,
  listener: Listener,
  notify: Notify,
  receive: (raw: string) => void,
  interval: Duration.Duration
) => {
  const listen = pg.listen(Notify.CHANNEL).pipe(
    Stream.runForEach((raw) => Effect.sync(() => receive(raw))),
    // A dead connection's UNLISTEN may never answer: do not wait for it to listen again.
    Effect.disconnect
  )
  const watchdog = Effect.schedule(probeOnce(listener, notify, interval), Schedule.spaced(interval))
  return Effect.raceFirst(listen, watchdog).pipe(
    Effect.tapErrorCause((cause) => {
      const first = !listener.lost
      listener.lost = true
      return first ? Effect.logWarning("postgres LISTEN lost; listening again until it works", cause) : Effect.void
    }),
    Effect.retry(retrySchedule)
  )
}

/** A batch as one NOTIFY statement; a message over `MAX_MESSAGE_BYTES` is dropped and counted. */
const sendBatch = (notify: Notify, id: () => string) => (batch: ReadonlyArray<Outgoing>) =>
  Effect.suspend(() => {
    const payloads: Array<string> = []
    let tooLarge = 0
    for (const outgoing of batch) {
      const encoded = Notify.encode(outgoing, id)
      if (encoded === undefined) tooLarge++
      else payloads.push(...encoded)
    }
    const dropped = tooLarge === 0 ? Effect.void : Effect.zipRight(
      Metrics.pubsubDrop("too_large", tooLarge),
      Effect.logWarning(`live message over ${Notify.MAX_MESSAGE_BYTES} bytes; dropped`, { count: tooLarge })
    )
    return Effect.zipRight(dropped, payloads.length === 0 ? Effect.void : Effect.asVoid(notify(payloads)))
  })

/** @internal */
export const make = (options: Options = {}): Effect.Effect<LivePubSub["Type"], never, PgClient.PgClient | Scope.Scope> =>
  Effect.gen(function*() {
    const pg = yield* PgClient.PgClient
    const probeInterval = Duration.decode(options.probeInterval ?? "5 seconds")
    const listener: Listener = { node: crypto.randomUUID(), probe: undefined, sequence: 0, lost: false }
    const topics = yield* Topics.make()
    const receive = Notify.makeReceiver(topics.deliver, (id) => {
      if (listener.probe !== undefined && listener.probe.id === id) Deferred.unsafeDone(listener.probe.heard, Exit.void)
    })
    const notify: Notify = (payloads) =>
      // `pg_notify` rather than `PgClient.notify` (`NOTIFY channel, $1` is rejected: NOTIFY takes no
      // bind parameters); one statement for the batch, so a message's fragments share a transaction.
      pg`SELECT pg_notify(${Notify.CHANNEL}, p) FROM json_array_elements_text(${JSON.stringify(payloads)}::json) AS p`

    yield* listenForever(pg, listener, notify, receive, probeInterval).pipe(Effect.interruptible, Effect.forkScoped)
    const publish = yield* makePublisher("postgres", sendBatch(notify, nextId(listener)), options)
    return { publish, subscribe: topics.subscribe }
  })
