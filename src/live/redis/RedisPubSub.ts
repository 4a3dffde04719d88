/**
 * `LivePubSub` over Redis pub/sub (ioredis): one connection publishes, one
 * subscribes; a Redis channel per topic, subscribed while this process has
 * a subscriber for the topic. Publishing never fails the caller: when Redis
 * is unreachable the message is dropped and logged (pokes are hints), and
 * ioredis reconnects by itself.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import { Redis } from "ioredis"
import { LivePubSub } from "../LivePubSub.js"

export interface Options {
  /** `redis://host:port/db` */
  readonly url: string
  /** Channel name prefix (default `mizu:live:`). */
  readonly prefix?: string
}

const CAPACITY = 4096

const connect = (url: string, name: string) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const client = new Redis(url, { lazyConnect: false, maxRetriesPerRequest: 2, connectionName: name })
      // ioredis reports connection trouble as events; without a listener Node would crash.
      client.on("error", () => undefined)
      return client
    }),
    (client) => Effect.promise(() => client.quit().catch(() => client.disconnect()))
  )

export const make = (options: Options) =>
  Effect.gen(function*() {
    const prefix = options.prefix ?? "mizu:live:"
    const pub = yield* connect(options.url, "mizu-pub")
    const sub = yield* connect(options.url, "mizu-sub")
    const channels = new Map<string, Set<Queue.Queue<string>>>()
    sub.on("message", (channel: string, message: string) => {
      const queues = channels.get(channel)
      if (queues === undefined) return
      for (const queue of queues) Queue.unsafeOffer(queue, message)
    })
    const lock = (yield* Effect.makeSemaphore(1)).withPermits(1)

    return LivePubSub.of({
      publish: (topic, message) =>
        Effect.tryPromise(() => pub.publish(prefix + topic, message)).pipe(
          Effect.catchAll((e) => Effect.logWarning("redis publish failed; message dropped", e.cause)),
          Effect.asVoid
        ),
      subscribe: (topic) => {
        const channel = prefix + topic
        return Effect.acquireRelease(
          lock(Effect.gen(function*() {
            const queue = yield* Queue.sliding<string>(CAPACITY)
            let queues = channels.get(channel)
            if (queues === undefined) {
              queues = new Set()
              channels.set(channel, queues)
              yield* Effect.tryPromise(() => sub.subscribe(channel)).pipe(
                Effect.catchAll((e) => Effect.logWarning("redis subscribe failed", e.cause))
              )
            }
            queues.add(queue)
            return queue
          })),
          (queue) =>
            lock(Effect.gen(function*() {
              yield* Queue.shutdown(queue)
              const queues = channels.get(channel)
              if (queues === undefined) return
              queues.delete(queue)
              if (queues.size > 0) return
              channels.delete(channel)
              yield* Effect.tryPromise(() => sub.unsubscribe(channel)).pipe(Effect.ignore)
            }))
        )
      }
    })
  })

/** `LivePubSub` on Redis at `url`. */
export const layer = (options: Options): Layer.Layer<LivePubSub> => Layer.scoped(LivePubSub, make(options))
