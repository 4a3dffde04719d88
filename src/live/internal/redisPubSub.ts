/**
 * `LivePubSub` over Redis pub/sub (ioredis): one connection publishes, one
 * subscribes; a Redis channel per topic (`prefix` + topic), wanted while
 * this process's topic `PubSub` is open, that is while the topic has a
 * subscriber here.
 *
 * Invariants: publishing goes through the non-blocking publisher (what
 * cannot be sent is dropped and counted); the subscriber connection is
 * reconciled with the wanted channels after every reconnect
 * (`redisSubscriber.ts`); `subscribe` returns once Redis confirms the
 * channel, or after `subscribeTimeout` — the subscription is still made as
 * soon as Redis answers.
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { Redis, type RedisOptions } from "ioredis"
import * as ConnectionUrl from "../../sync/ConnectionUrl.js"
import type { LivePubSub } from "../LivePubSub.js"
import type { Options } from "../redis/RedisPubSub.js"
import { makePublisher, type Outgoing } from "./pubsubPublisher.js"
import * as Topics from "./pubsubTopics.js"
import * as Subscriber from "./redisSubscriber.js"

/** A connection closed with the Scope; an unparsable URL dies with the URL redacted. */
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

/** One pipeline for the batch; fails if any PUBLISH in it failed. */
const sendPipeline = (pub: Redis, prefix: string) => (batch: ReadonlyArray<Outgoing>) =>
  Effect.tryPromise(async () => {
    const pipeline = pub.pipeline()
    for (const { message, topic } of batch) pipeline.publish(prefix + topic, message)
    const results = (await pipeline.exec()) ?? []
    const failed = results.find(([error]) => error !== null)
    if (failed !== undefined) throw failed[0]
  })

/** @internal */
export const make = (options: Options): Effect.Effect<LivePubSub["Type"], never, Scope.Scope> =>
  Effect.gen(function*() {
    const prefix = options.prefix ?? "mizu:live:"
    const subscribeTimeout = Duration.decode(options.subscribeTimeout ?? "2 seconds")
    const pub = yield* connect(options.url, "mizu-pub")
    const sub = yield* connect(options.url, "mizu-sub", { autoResubscribe: false })
    const subscriber = yield* Subscriber.make(sub)
    const topics = yield* Topics.make((topic) => subscriber.want(prefix + topic))
    // a channel this process does not want has no open topic: `deliver` drops it
    sub.on("message", (channel: string, message: string) => topics.deliver(channel.slice(prefix.length), message))
    const publish = yield* makePublisher("redis", sendPipeline(pub, prefix), options)
    const { subscribe } = topics

    return {
      publish,
      subscribe: (topic) =>
        Effect.tap(subscribe(topic), () => subscriber.confirmation(prefix + topic, subscribeTimeout))
    }
  })
