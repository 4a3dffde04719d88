/**
 * `LivePubSub` over PostgreSQL LISTEN/NOTIFY, through `PgClient.listen` and
 * `pg_notify`. All topics share one channel (`mizu_live`): a notification
 * carries `{t: topic, m: message}` and each process keeps the ones it has
 * subscribers for.
 *
 * Design decisions:
 * - NOTIFY payloads must be shorter than 8000 bytes. A larger message (a
 *   presence renewal of a few hundred sessions) is never dropped silently:
 *   it is cut into fragments `{t, f: id, i, n, b: base64 part}` sent in one
 *   statement (one transaction: delivered together, in order) and put back
 *   together by the receivers. Only a message over `MAX_MESSAGE_BYTES` is
 *   dropped (logged, counted `too_large`).
 * - Publishing goes through `LivePubSub.makePublisher`: it never waits on
 *   Postgres; a batch of messages is one `pg_notify` statement.
 * - The listening connection can die without a word (`PgClient.listen`
 *   swallows its connection's errors), so the listener probes itself: every
 *   `probeInterval` it NOTIFYs a probe `{p: id}` and expects to hear it back
 *   within twice that. If it does not, it listens again on a new connection
 *   (retried with backoff until Postgres answers); what was published in
 *   between is lost (pokes are hints).
 *
 * @since 0.1.0
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Metrics from "../../Metrics.js"
import { LivePubSub, makePublisher, type Outgoing, type PublishOptions } from "../LivePubSub.js"

export const CHANNEL = "mizu_live"
const CAPACITY = 4096
/** The largest NOTIFY payload PostgreSQL accepts (it must be shorter than 8000 bytes). */
export const MAX_PAYLOAD = 7999
/** The largest message sent at all (in fragments); larger ones are dropped and counted. */
export const MAX_MESSAGE_BYTES = 512 * 1024
/** The most fragments of one message (parts are at least 1 KiB). */
const MAX_FRAGMENTS = MAX_MESSAGE_BYTES / 1024
/** Partly received messages kept at once; the oldest is abandoned beyond it. */
const MAX_PARTIAL = 64
/** A partly received message is abandoned after this long. */
const PARTIAL_TTL_MS = 30_000

export interface Options extends PublishOptions {
  /** How often the listener checks that its connection still delivers (default 5 s). */
  readonly probeInterval?: Duration.DurationInput | undefined
}

const Whole = Schema.Struct({ t: Schema.String, m: Schema.String })
const Fragment = Schema.Struct({
  t: Schema.String,
  f: Schema.String,
  i: Schema.Int,
  n: Schema.Int.pipe(Schema.between(1, MAX_FRAGMENTS)),
  b: Schema.String
})
const Probe = Schema.Struct({ p: Schema.String })
const Notification = Schema.parseJson(Schema.Union(Fragment, Probe, Whole))
const decode = Schema.decodeUnknownEither(Notification)

class ListenLost extends Data.TaggedError("ListenLost")<{ readonly message: string }> {}

/**
 * The NOTIFY payloads of one message: itself, or its fragments (each under
 * `MAX_PAYLOAD` bytes); `undefined` when it is over `MAX_MESSAGE_BYTES`.
 */
export const encode = (
  { message, topic }: Outgoing,
  id: () => string
): ReadonlyArray<string> | undefined => {
  const whole = JSON.stringify({ t: topic, m: message })
  if (Buffer.byteLength(whole) <= MAX_PAYLOAD) return [whole]
  const bytes = Buffer.from(message, "utf8")
  if (bytes.length > MAX_MESSAGE_BYTES) return undefined
  const f = id()
  // the envelope of the largest fragment, with an empty part
  const overhead = Buffer.byteLength(JSON.stringify({ t: topic, f, i: 999, n: 999, b: "" }))
  const partBytes = Math.floor((MAX_PAYLOAD - overhead) / 4) * 3
  if (partBytes < 1024) return undefined
  const n = Math.ceil(bytes.length / partBytes)
  return Array.from({ length: n }, (_, i) =>
    JSON.stringify({ t: topic, f, i, n, b: bytes.subarray(i * partBytes, (i + 1) * partBytes).toString("base64") }))
}

/** Fragments put back together; bounded in count and age. */
const makeReassembly = () => {
  const partial = new Map<string, { readonly parts: Array<string | undefined>; got: number; readonly since: number }>()
  return (fragment: typeof Fragment.Type): string | undefined => {
    const now = Date.now()
    for (const [id, entry] of partial) {
      if (partial.size <= MAX_PARTIAL && now - entry.since < PARTIAL_TTL_MS) break
      partial.delete(id)
    }
    if (fragment.i < 0 || fragment.i >= fragment.n) return undefined
    let entry = partial.get(fragment.f)
    if (entry === undefined) {
      entry = { parts: new Array<string | undefined>(fragment.n), got: 0, since: now }
      partial.set(fragment.f, entry)
    }
    if (entry.parts.length !== fragment.n || entry.parts[fragment.i] !== undefined) return undefined
    entry.parts[fragment.i] = fragment.b
    if (++entry.got < fragment.n) return undefined
    partial.delete(fragment.f)
    return Buffer.concat(entry.parts.map((part) => Buffer.from(part ?? "", "base64"))).toString("utf8")
  }
}

/** Reconnect backoff: 100 ms doubling, at most 5 s. */
const retrySchedule = Schedule.exponential("100 millis").pipe(Schedule.union(Schedule.spaced("5 seconds")))

export const make = (options: Options = {}): Effect.Effect<LivePubSub["Type"], never, PgClient.PgClient | Scope.Scope> =>
  Effect.gen(function*() {
    const pg = yield* PgClient.PgClient
    const node = crypto.randomUUID()
    const probeInterval = Duration.decode(options.probeInterval ?? "5 seconds")
    const topics = new Map<string, Set<Queue.Queue<string>>>()
    const reassemble = makeReassembly()
    /** the probe this process is waiting to hear back */
    let probe: { readonly id: string; readonly heard: Deferred.Deferred<void> } | undefined
    let sequence = 0
    const nextId = () => `${node}:${(++sequence).toString(36)}`

    const deliver = (topic: string, message: string) => {
      const queues = topics.get(topic)
      if (queues === undefined) return
      for (const queue of queues) Queue.unsafeOffer(queue, message)
    }

    const onNotification = (raw: string) => {
      const n = decode(raw)
      if (Either.isLeft(n)) return
      const value = n.right
      if ("p" in value) {
        if (probe !== undefined && probe.id === value.p) Deferred.unsafeDone(probe.heard, Effect.void)
      } else if ("f" in value) {
        const whole = reassemble(value)
        if (whole !== undefined) deliver(value.t, whole)
      } else {
        deliver(value.t, value.m)
      }
    }

    const notify = (payloads: ReadonlyArray<string>) =>
      // `pg_notify` rather than `PgClient.notify` (`NOTIFY channel, $1` is rejected: NOTIFY takes no
      // bind parameters); one statement for the batch, so a message's fragments share a transaction.
      pg`SELECT pg_notify(${CHANNEL}, p) FROM json_array_elements_text(${JSON.stringify(payloads)}::json) AS p`

    /** the listener failed and has not been heard working since (log once per episode) */
    let lost = false

    /** Fails with `ListenLost` when a probe is not heard back within twice `probeInterval`. */
    const watchdog = Effect.gen(function*() {
      yield* Effect.sleep(probeInterval)
      const heard = yield* Deferred.make<void>()
      const id = nextId()
      probe = { id, heard }
      const heardBack = yield* notify([JSON.stringify({ p: id })]).pipe(
        Effect.zipRight(Deferred.await(heard)),
        Effect.timeout(Duration.sum(probeInterval, probeInterval)),
        Effect.isSuccess
      )
      if (!heardBack) {
        return yield* new ListenLost({ message: "the LISTEN connection does not deliver (a probe was not heard back)" })
      }
      if (lost) {
        lost = false
        yield* Effect.logInfo("postgres LISTEN works again")
      }
    }).pipe(Effect.forever)

    const listen = pg.listen(CHANNEL).pipe(
      Stream.runForEach((raw) => Effect.sync(() => onNotification(raw))),
      // A dead connection's UNLISTEN may never answer: do not wait for it to listen again.
      Effect.disconnect
    )

    yield* Effect.raceFirst(listen, watchdog).pipe(
      Effect.tapErrorCause((cause) => {
        const first = !lost
        lost = true
        return first ? Effect.logWarning("postgres LISTEN lost; listening again until it works", cause) : Effect.void
      }),
      Effect.retry(retrySchedule),
      Effect.interruptible,
      Effect.forkScoped
    )

    const publish = yield* makePublisher(
      "postgres",
      (batch) =>
        Effect.suspend(() => {
          const payloads: Array<string> = []
          let tooLarge = 0
          for (const outgoing of batch) {
            const encoded = encode(outgoing, nextId)
            if (encoded === undefined) tooLarge++
            else payloads.push(...encoded)
          }
          const dropped = tooLarge === 0 ? Effect.void : Effect.zipRight(
            Metrics.pubsubDrop("too_large", tooLarge),
            Effect.logWarning(`live message over ${MAX_MESSAGE_BYTES} bytes; dropped`, { count: tooLarge })
          )
          return Effect.zipRight(dropped, payloads.length === 0 ? Effect.void : Effect.asVoid(notify(payloads)))
        }),
      options
    )

    return LivePubSub.of({
      publish,
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
export const layer: Layer.Layer<LivePubSub, never, PgClient.PgClient> = Layer.scoped(LivePubSub, make())

/** `LivePubSub` over the `PgClient` in context, with options. */
export const layerWith = (options: Options): Layer.Layer<LivePubSub, never, PgClient.PgClient> =>
  Layer.scoped(LivePubSub, make(options))

/**
 * `LivePubSub` over a PostgreSQL of its own (a small pool for NOTIFY and one
 * LISTEN connection; connecting times out after 10 s, so an unreachable
 * server fails a publish instead of holding it).
 */
export const layerUrl = (url: string, options: Options = {}): Layer.Layer<LivePubSub, unknown> =>
  layerWith(options).pipe(
    Layer.provide(PgClient.layer({ url: Redacted.make(url), maxConnections: 2, connectTimeout: "10 seconds" }))
  )
