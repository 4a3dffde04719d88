/**
 * `LivePubSub` over PostgreSQL LISTEN/NOTIFY, through `PgClient.listen` and
 * `pg_notify`. All topics share one channel (`mizu_live`): a notification
 * carries `{t: topic, m: message}` and each process keeps the ones it has
 * subscribers for. NOTIFY payloads are limited to 8000 bytes by PostgreSQL;
 * a larger message is dropped and logged. The listener reconnects by itself
 * when the connection is lost.
 *
 * @since 0.1.0
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { LivePubSub } from "../LivePubSub.js"

export const CHANNEL = "mizu_live"
const CAPACITY = 4096
const MAX_PAYLOAD = 7999

const Notification = Schema.parseJson(Schema.Struct({ t: Schema.String, m: Schema.String }))
const decode = Schema.decodeUnknownEither(Notification)

export const make = Effect.gen(function*() {
  const pg = yield* PgClient.PgClient
  const topics = new Map<string, Set<Queue.Queue<string>>>()

  yield* pg.listen(CHANNEL).pipe(
    Stream.runForEach((raw) =>
      Effect.sync(() => {
        const n = decode(raw)
        if (Either.isLeft(n)) return
        const queues = topics.get(n.right.t)
        if (queues === undefined) return
        for (const queue of queues) Queue.unsafeOffer(queue, n.right.m)
      })
    ),
    Effect.tapErrorCause((cause) => Effect.logWarning("postgres LISTEN failed; retrying", cause)),
    Effect.retry(Schedule.exponential("100 millis").pipe(Schedule.union(Schedule.spaced("5 seconds")))),
    Effect.interruptible,
    Effect.forkScoped
  )

  return LivePubSub.of({
    publish: (topic, message) => {
      const payload = JSON.stringify({ t: topic, m: message })
      if (Buffer.byteLength(payload) > MAX_PAYLOAD) {
        return Effect.logWarning("live message over the NOTIFY limit; dropped", { topic, bytes: payload.length })
      }
      // `pg_notify` rather than `PgClient.notify`: the latter sends `NOTIFY channel, $1`,
      // which PostgreSQL rejects (NOTIFY takes no bind parameters).
      return pg`SELECT pg_notify(${CHANNEL}, ${payload})`.pipe(
        Effect.catchAll((e) => Effect.logWarning("postgres NOTIFY failed; message dropped", e)),
        Effect.asVoid
      )
    },
    subscribe: (topic) =>
      Effect.acquireRelease(
        Effect.gen(function*() {
          const queue = yield* Queue.sliding<string>(CAPACITY)
          let queues = topics.get(topic)
          if (queues === undefined) {
            queues = new Set()
            topics.set(topic, queues)
          }
          queues.add(queue)
          return queue
        }),
        (queue) =>
          Effect.gen(function*() {
            yield* Queue.shutdown(queue)
            const queues = topics.get(topic)
            if (queues === undefined) return
            queues.delete(queue)
            if (queues.size === 0) topics.delete(topic)
          })
      )
  })
})

/** `LivePubSub` over the `PgClient` in context. */
export const layer: Layer.Layer<LivePubSub, never, PgClient.PgClient> = Layer.scoped(LivePubSub, make)

/** `LivePubSub` over a PostgreSQL of its own (a small pool for NOTIFY and one LISTEN connection). */
export const layerUrl = (url: string): Layer.Layer<LivePubSub, unknown> =>
  layer.pipe(Layer.provide(PgClient.layer({ url: Redacted.make(url), maxConnections: 2 })))
