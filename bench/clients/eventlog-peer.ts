/**
 * The peer's clients for bench/eventlog.ts, in a process of their own:
 * Effect's `EventLogRemote.fromWebSocket` (`@effect/experimental` 0.61.1,
 * encryption `EventLogEncryption.layerSubtle`, `ws` through
 * `NodeSocket.layerWebSocketConstructor`) connected to
 * `servers/eventlog-server.ts`. Driven over IPC.
 *
 * Every connection is its own `EventLogRemote` (its own socket, ping, pending
 * writes); all share one `Identity` (one user's devices), so they write to and
 * read from the same log. The connection's `EventLog` is reduced to what
 * `fromSocket` calls, `registerRemote`, which hands the `EventLogRemote` to
 * this process. The writers call the remote's `write` directly: that is the
 * path `EventLog`'s sync loop takes for every journal entry, without the
 * local journal and without that loop's 500 ms debounce between a local
 * write and its upload (which would measure the debounce). Per write: a
 * `todo/create` payload encoded to MsgPack (as `EventLog.write` encodes it), an
 * `Entry`, AES-GCM encryption, one `WriteEntries` frame, and the wait for its
 * `Ack`.
 *
 * Commands:
 * - `connect {url, writers}`: open one reader connection (it sends
 *   `RequestChanges` from sequence 0 and consumes the decrypted entries) and
 *   `writers` writer connections; resolves when every one has had its Hello.
 * - `slice {ms, settleMs}`: each writer writes one entry at a time (the next
 *   after the Ack of the last) for `ms`; then waits up to `settleMs` for the
 *   reader to hold every entry written. Reports writes acknowledged, their
 *   Ack latency, and the delivery latency (write called → the reader's
 *   mailbox yielded the entry), all on this process's clock.
 */
import * as MsgPack from "@effect/platform/MsgPack"
import * as NodeSocket from "@effect/platform-node/NodeSocket"
import * as EventJournal from "@effect/experimental/EventJournal"
import * as EventLog from "@effect/experimental/EventLog"
import * as EventLogEncryption from "@effect/experimental/EventLogEncryption"
import * as EventLogRemote from "@effect/experimental/EventLogRemote"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Control from "../lib/control.js"
import { summarize } from "../lib/stats.js"

const TodoCreate = Schema.Struct({ id: Schema.String, title: Schema.String, completed: Schema.Boolean })
const encodePayload = Schema.encodeSync(MsgPack.schema(TodoCreate))

const runtime = ManagedRuntime.make(
  Layer.mergeAll(NodeSocket.layerWebSocketConstructor, EventLogEncryption.layerSubtle).pipe(
    Layer.provideMerge(Logger.minimumLogLevel(LogLevel.Warning))
  )
)
const scope = Effect.runSync(Scope.make())
const identity = EventLog.Identity.makeRandom()

let reader: EventLogRemote.EventLogRemote | undefined
let writers: Array<EventLogRemote.EventLogRemote> = []
/** Write called (performance.now()) by entry id, until the reader holds the entry. */
const sent = new Map<string, number>()
let deliveries: Array<number> = []
let received = 0

/** One connection: `fromWebSocket` with an `EventLog` that only takes the remote it registers. */
const connectOne = (url: string) =>
  Effect.gen(function*() {
    const registered = yield* Deferred.make<EventLogRemote.EventLogRemote>()
    const log = EventLog.EventLog.of({
      write: () => Effect.die("this EventLog only registers remotes"),
      registerRemote: (remote) => Deferred.succeed(registered, remote),
      registerCompaction: () => Effect.void,
      registerReactivity: () => Effect.void,
      entries: Effect.succeed([]),
      destroy: Effect.void
    })
    yield* EventLogRemote.fromWebSocket(url).pipe(Effect.provideService(EventLog.EventLog, log))
    return yield* Deferred.await(registered).pipe(Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => new Error(`no Hello from ${url}`) }))
  })

const consume = (remote: EventLogRemote.EventLogRemote) =>
  Effect.gen(function*() {
    const mailbox = yield* remote.changes(identity, 0)
    yield* mailbox.takeAll.pipe(
      Effect.tap(([entries]) =>
        Effect.sync(() => {
          const at = performance.now()
          for (const remoteEntry of entries) {
            received++
            const id = remoteEntry.entry.idString
            const t0 = sent.get(id)
            if (t0 === undefined) continue
            sent.delete(id)
            deliveries.push(at - t0)
          }
        })
      ),
      Effect.forever,
      Effect.forkScoped
    )
  })

const connect = async (args: Record<string, unknown>) => {
  const url = args["url"] as string
  const n = args["writers"] as number
  const start = performance.now()
  await runtime.runPromise(
    Effect.gen(function*() {
      reader = yield* connectOne(url)
      yield* consume(reader)
      writers = yield* Effect.all(Array.from({ length: n }, () => connectOne(url)), { concurrency: "unbounded" })
    }).pipe(Scope.extend(scope))
  )
  return { connections: n + 1, ms: performance.now() - start }
}

let sliceCounter = 0

const slice = async (args: Record<string, unknown>) => {
  const ms = args["ms"] as number
  const settleMs = (args["settleMs"] as number | undefined) ?? 5_000
  const run = ++sliceCounter
  sent.clear()
  deliveries = []
  const receivedBefore = received
  const acks: Array<number> = []
  let errors = 0
  let firstError: string | undefined
  const start = performance.now()
  const deadline = start + ms
  const writer = (remote: EventLogRemote.EventLogRemote, w: number) =>
    Effect.gen(function*() {
      for (let seq = 1; performance.now() < deadline; seq++) {
        const id = `r${run}-w${w}-${seq}`
        const entry = new EventJournal.Entry({
          id: EventJournal.makeEntryId(),
          event: "todo/create",
          primaryKey: id,
          payload: encodePayload({ id, title: `buy milk ${seq}`, completed: false })
        }, { disableValidation: true })
        const t0 = performance.now()
        sent.set(entry.idString, t0)
        const exit = yield* Effect.exit(remote.write(identity, [entry]).pipe(Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => new Error(`write ${id}: no Ack in 10 s`) })))
        if (Exit.isFailure(exit)) {
          errors++
          firstError ??= String(exit.cause)
          return
        }
        acks.push(performance.now() - t0)
      }
    })
  await runtime.runPromise(Effect.all(writers.map(writer), { concurrency: "unbounded", discard: true }))
  const elapsedMs = performance.now() - start
  const settleDeadline = performance.now() + settleMs
  while (sent.size > 0 && performance.now() < settleDeadline) await new Promise((r) => setTimeout(r, 5))
  return {
    writes: acks.length,
    errors,
    firstError,
    elapsedMs,
    writesPerSec: (acks.length / elapsedMs) * 1000,
    ack: summarize(acks),
    delivery: summarize(deliveries),
    deliverySamples: deliveries,
    undelivered: sent.size,
    received: received - receivedBefore
  }
}

Control.serve({ connect, slice })
Control.ready({ pid: process.pid })
