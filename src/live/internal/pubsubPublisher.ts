/**
 * The `publish` of a distributed `LivePubSub` layer (Redis, Postgres): it
 * never waits on the network.
 *
 * Invariants: a message is put in a bounded in-process queue and `publish`
 * returns at once; one fiber (in the layer's `Scope`) hands what is queued to
 * `send`, in publish order, at most `MAX_BATCH` at a time. A message that
 * finds the queue full is dropped, and so is every message of a batch that
 * fails or takes longer than `publishTimeout`; each is counted in
 * `mizu_pubsub_dropped_total` (clients' interval pull is the safety net).
 * Trouble is logged once per episode, not once per message.
 *
 * @internal
 */
import * as Chunk from "effect/Chunk"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Metrics from "../../Metrics.js"
import type { LivePubSub, PublishOptions } from "../LivePubSub.js"

/** One message on its way to the transport. @internal */
export interface Outgoing {
  readonly topic: string
  readonly message: string
}

/** Most messages one send carries (one Redis pipeline, one NOTIFY statement). */
const MAX_BATCH = 512

/** What the publisher has logged, so an episode of trouble is logged once. */
interface Episode {
  /** the last batch failed */
  failing: boolean
  /** the queue has been full since the last successful batch */
  full: boolean
}

/** Send one batch; count and log (once per episode) what it drops. */
const sendBatch = (
  name: string,
  send: (batch: ReadonlyArray<Outgoing>) => Effect.Effect<void, unknown>,
  timeout: Duration.Duration,
  episode: Episode
) =>
(batch: ReadonlyArray<Outgoing>): Effect.Effect<void> =>
  send(batch).pipe(
    Effect.timeoutFail({ duration: timeout, onTimeout: () => `no answer in ${Duration.format(timeout)}` }),
    Effect.matchCauseEffect({
      onFailure: (cause) => {
        const first = !episode.failing
        episode.failing = true
        return Effect.zipRight(
          Metrics.pubsubDrop("publish_failed", batch.length),
          first ? Effect.logWarning(`${name} publish failed; live messages are dropped until it answers`, cause) : Effect.void
        )
      },
      onSuccess: () => {
        const recovered = episode.failing
        episode.failing = false
        episode.full = false
        return recovered ? Effect.logInfo(`${name} publish works again`) : Effect.void
      }
    })
  )

/** @internal */
export const makePublisher = (
  name: string,
  send: (batch: ReadonlyArray<Outgoing>) => Effect.Effect<void, unknown>,
  options: PublishOptions = {}
): Effect.Effect<LivePubSub["Type"]["publish"], never, Scope.Scope> =>
  Effect.gen(function*() {
    const timeout = Duration.decode(options.publishTimeout ?? "5 seconds")
    const queue = yield* Effect.acquireRelease(Queue.dropping<Outgoing>(options.publishCapacity ?? 10_000), Queue.shutdown)
    const episode: Episode = { failing: false, full: false }
    const sendOne = sendBatch(name, send, timeout, episode)

    yield* Queue.takeBetween(queue, 1, MAX_BATCH).pipe(
      Effect.flatMap((chunk) => sendOne(Chunk.toReadonlyArray(chunk))),
      Effect.forever,
      Effect.interruptible,
      Effect.forkScoped
    )

    return (topic: string, message: string) =>
      Effect.suspend(() => {
        if (Queue.unsafeOffer(queue, { topic, message })) return Effect.void
        const first = !episode.full
        episode.full = true
        return Effect.zipRight(
          Metrics.pubsubDrop("queue_full"),
          first ? Effect.logWarning(`${name} publish queue full; live messages are dropped until it drains`) : Effect.void
        )
      })
  })
