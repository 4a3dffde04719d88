/**
 * `LivePubSub` over Redis pub/sub (ioredis): one connection publishes, one
 * subscribes; a Redis channel per topic, subscribed while this process has
 * a subscriber for the topic.
 *
 * Design decisions (the layer heals by itself when Redis goes away and comes back):
 * - Publishing goes through `LivePubSub.makePublisher`: it never waits on
 *   Redis; what cannot be sent is dropped and counted (pokes are hints).
 * - The channels this process wants (those with a local subscriber) are the
 *   truth; what Redis has confirmed on the current connection is tracked
 *   beside them. One fiber brings Redis in line — SUBSCRIBE what is wanted
 *   and not confirmed, UNSUBSCRIBE what is confirmed and no longer wanted —
 *   and retries with backoff until it succeeds, so a SUBSCRIBE that failed
 *   (Redis down) is made when Redis is back. Only that fiber talks to the
 *   subscriber connection, so a subscribe and an unsubscribe of one channel
 *   never overtake each other.
 * - On every (re)connect the confirmed set is emptied and every wanted
 *   channel subscribed again (ioredis's own resubscription is off: it only
 *   knows the channels whose SUBSCRIBE had succeeded).
 * - `subscribe` returns once Redis confirms the channel, or after
 *   `subscribeTimeout` if Redis does not answer; the subscription is made
 *   when it does.
 *
 * @since 0.1.0
 */
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as ConnectionUrl from "../../sync/ConnectionUrl.js"
import { Redis, type RedisOptions } from "ioredis"
import { LivePubSub, makePublisher, type PublishOptions } from "../LivePubSub.js"

export interface Options extends PublishOptions {
  /** `redis://host:port/db` */
  readonly url: string
  /** Channel name prefix (default `mizu:live:`). */
  readonly prefix?: string
  /**
   * How long `subscribe` waits for Redis to confirm a new channel before it
   * returns anyway (default 2 s); the subscription is still made, as soon as
   * Redis answers.
   */
  readonly subscribeTimeout?: Duration.DurationInput
}

const CAPACITY = 4096
/** One SUBSCRIBE / UNSUBSCRIBE round that takes longer than this is retried. */
const ATTEMPT_TIMEOUT = Duration.seconds(10)
/** Between attempts while Redis is unreachable: 100 ms doubling, at most 2 s. */
const retrySchedule = Schedule.exponential("100 millis").pipe(Schedule.union(Schedule.spaced("2 seconds")))

const connect = (url: string, name: string, extra: RedisOptions = {}) =>
  Effect.acquireRelease(
    Effect.suspend(() => {
      let client: Redis
      try {
        client = new Redis(url, { lazyConnect: false, maxRetriesPerRequest: 2, connectionName: name, ...extra })
      } catch {
        // ioredis's own error quotes the URL, password included
        return Effect.dieMessage(`not a valid Redis URL: ${ConnectionUrl.redact(url)}`)
      }
      // ioredis reports connection trouble as events; without a listener Node would crash.
      client.on("error", () => undefined)
      return Effect.succeed(client)
    }),
    // QUIT waits for Redis; an unreachable one must not hold the shutdown up.
    (client) =>
      Effect.tryPromise(() => client.quit()).pipe(
        Effect.timeout("1 second"),
        Effect.ignore,
        Effect.ensuring(Effect.sync(() => client.disconnect()))
      )
  )

/** The subscriber side: wanted channels, what Redis confirmed, and the fiber that reconciles them. */
const makeSubscriber = (sub: Redis) =>
  Effect.gen(function*() {
    /** channel -> the local subscribers' queues (the wanted channels) */
    const channels = new Map<string, Set<Queue.Queue<string>>>()
    /** channels Redis confirmed on the current connection */
    const confirmed = new Set<string>()
    /** subscribers waiting for a channel's confirmation */
    const waiting = new Map<string, Deferred.Deferred<void>>()
    /** bumped on every (re)connect: a reply from before it says nothing of the new connection */
    let epoch = 0
    let failing = false
    const wake = yield* Queue.sliding<void>(1)
    const signal = (): void => {
      Queue.unsafeOffer(wake, undefined)
    }

    sub.on("message", (channel: string, message: string) => {
      const queues = channels.get(channel)
      if (queues === undefined) return
      for (const queue of queues) Queue.unsafeOffer(queue, message)
    })
    sub.on("ready", () => {
      epoch++
      confirmed.clear()
      signal()
    })

    /** One round: SUBSCRIBE / UNSUBSCRIBE the difference between wanted and confirmed. */
    const reconcileOnce = Effect.suspend(() => {
      const at = epoch
      const add: Array<string> = []
      const drop: Array<string> = []
      for (const channel of channels.keys()) if (!confirmed.has(channel)) add.push(channel)
      for (const channel of confirmed) if (!channels.has(channel)) drop.push(channel)
      if (add.length === 0 && drop.length === 0) return Effect.void
      return Effect.tryPromise(async () => {
        if (drop.length > 0) await sub.unsubscribe(...drop)
        if (add.length > 0) await sub.subscribe(...add)
      }).pipe(
        Effect.timeoutFail({ duration: ATTEMPT_TIMEOUT, onTimeout: () => "no answer from Redis" }),
        Effect.flatMap(() =>
          Effect.sync(() => {
            // reconnected meanwhile: the new connection has not necessarily seen these
            if (at !== epoch) {
              signal()
              return
            }
            for (const channel of drop) confirmed.delete(channel)
            for (const channel of add) {
              confirmed.add(channel)
              const waiter = waiting.get(channel)
              if (waiter !== undefined) {
                waiting.delete(channel)
                Deferred.unsafeDone(waiter, Exit.void)
              }
            }
          })
        )
      )
    })

    const reconcile = reconcileOnce.pipe(
      Effect.tapErrorCause((cause) => {
        const first = !failing
        failing = true
        return first ? Effect.logWarning("redis subscribe failed; retrying until Redis answers", cause) : Effect.void
      }),
      Effect.retry(retrySchedule),
      Effect.tap(() =>
        Effect.suspend(() => {
          const recovered = failing
          failing = false
          return recovered ? Effect.logInfo("redis subscriptions restored") : Effect.void
        })
      )
    )

    yield* Queue.take(wake).pipe(
      Effect.zipRight(reconcile),
      Effect.forever,
      Effect.interruptible,
      Effect.forkScoped
    )

    const register = (channel: string, queue: Queue.Queue<string>) =>
      Effect.sync(() => {
        const queues = channels.get(channel)
        if (queues !== undefined) {
          queues.add(queue)
          return
        }
        channels.set(channel, new Set([queue]))
        signal()
      })

    const unregister = (channel: string, queue: Queue.Queue<string>) =>
      Effect.sync(() => {
        const queues = channels.get(channel)
        if (queues === undefined || !queues.delete(queue) || queues.size > 0) return
        channels.delete(channel)
        const waiter = waiting.get(channel)
        if (waiter !== undefined) {
          waiting.delete(channel)
          Deferred.unsafeDone(waiter, Exit.void)
        }
        signal()
      })

    /** Wait (interruptibly) until Redis confirms `channel`, at most `timeout`. */
    const confirmation = (channel: string, timeout: Duration.Duration) =>
      Effect.suspend(() => {
        if (confirmed.has(channel) || !channels.has(channel)) return Effect.void
        let waiter = waiting.get(channel)
        if (waiter === undefined) {
          waiter = Deferred.unsafeMake<void>(FiberId.none)
          waiting.set(channel, waiter)
        }
        return Deferred.await(waiter).pipe(
          Effect.timeout(timeout),
          Effect.catchTag("TimeoutException", () =>
            Effect.logDebug("redis has not confirmed a subscription yet; it is made when Redis answers", { channel }))
        )
      })

    return { register, unregister, confirmation }
  })

export const make = (options: Options): Effect.Effect<LivePubSub["Type"], never, Scope.Scope> =>
  Effect.gen(function*() {
    const prefix = options.prefix ?? "mizu:live:"
    const subscribeTimeout = Duration.decode(options.subscribeTimeout ?? "2 seconds")
    const pub = yield* connect(options.url, "mizu-pub")
    const sub = yield* connect(options.url, "mizu-sub", { autoResubscribe: false })
    const subscriber = yield* makeSubscriber(sub)

    const publish = yield* makePublisher(
      "redis",
      (batch) =>
        Effect.tryPromise(async () => {
          const pipeline = pub.pipeline()
          for (const { message, topic } of batch) pipeline.publish(prefix + topic, message)
          const results = (await pipeline.exec()) ?? []
          const failed = results.find(([error]) => error !== null)
          if (failed !== undefined) throw failed[0]
        }),
      options
    )

    return LivePubSub.of({
      publish,
      subscribe: (topic) =>
        Effect.gen(function*() {
          const channel = prefix + topic
          const queue = yield* Queue.sliding<string>(CAPACITY)
          yield* Effect.acquireRelease(
            subscriber.register(channel, queue),
            () => Effect.zipRight(Queue.shutdown(queue), subscriber.unregister(channel, queue))
          )
          yield* subscriber.confirmation(channel, subscribeTimeout)
          return queue
        })
    })
  })

/** `LivePubSub` on Redis at `url`. */
export const layer = (options: Options): Layer.Layer<LivePubSub> => Layer.scoped(LivePubSub, make(options))
