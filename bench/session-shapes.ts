/**
 * What one idle live session costs inside the process, by the shape of the
 * fiber that consumes its inbox — without sockets, so only the Effect side is
 * measured. For each shape, `n` sessions are started, each an unbounded inbox
 * `Queue` and one consumer fiber; then:
 * - heap per session (after full GCs, `--expose-gc` is set by run.ts),
 * - CPU per wake-up: one event offered to every inbox (what a tick or a poke
 *   does to each session), until every session has handled it; CPU time of
 *   the process (GC threads included) / n, median of 5 rounds.
 *
 * Shapes:
 * - stream-mapEffect-takeWhile: `Stream.fromQueue(inbox).pipe(Stream.mapEffect(handle),
 *   Stream.takeWhile(goOn), Stream.runDrain)` — src/live/Session.ts until 849d9c8;
 * - stream-runForEachWhile: `Stream.fromQueue(inbox).pipe(Stream.runForEachWhile(handle))`
 *   — until c18b7dd;
 * - stream-toPull: `Stream.toPull(Stream.fromQueue(inbox))` in a Scope, and a loop
 *   that pulls a chunk and handles its events in order until one says stop —
 *   src/live/internal/sessionProtocol.ts today (`forEachWhile`);
 * - take-loop: a recursive `Queue.take` → `handle` loop (not a Stream).
 * Baseline: a hand-written callback sink — an object whose `offer(event)`
 * handles the event synchronously (what a plain `ws` server does).
 *
 * Usage: npm run bench -- session-shapes [--quick]
 */
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Queue from "effect/Queue"
import * as Stream from "effect/Stream"
import * as NodePath from "node:path"
import { printTable, writeResult } from "./lib/results.js"
import { median, ratio, round } from "./lib/stats.js"

const quick = process.argv.includes("--quick")
const n = Number(process.argv.find((a) => a.startsWith("--n="))?.slice(4) ?? (quick ? 2000 : 5000))
const rounds = quick ? 3 : 5

type Event = { readonly _tag: "Tick" } | { readonly _tag: "Closed" }
const TICK: Event = { _tag: "Tick" }
const CLOSED: Event = { _tag: "Closed" }

let handled = 0
const handleSync = (e: Event): boolean => {
  handled++
  return e._tag !== "Closed"
}
const handle = (e: Event) => Effect.sync(() => handleSync(e))

const shapes: Record<string, (inbox: Queue.Queue<Event>) => Effect.Effect<void>> = {
  "stream-mapEffect-takeWhile": (inbox) =>
    Stream.fromQueue(inbox).pipe(Stream.mapEffect(handle), Stream.takeWhile((goOn) => goOn), Stream.runDrain),
  "stream-runForEachWhile": (inbox) => Stream.fromQueue(inbox).pipe(Stream.runForEachWhile(handle)),
  "stream-toPull": (inbox) =>
    Effect.scoped(Effect.flatMap(Stream.toPull(Stream.fromQueue(inbox)), (pull) => {
      const each = (chunk: Chunk.Chunk<Event>, i: number): Effect.Effect<boolean> =>
        i >= chunk.length ? Effect.succeed(true) : Effect.flatMap(handle(Chunk.unsafeGet(chunk, i)), (goOn) => (goOn ? each(chunk, i + 1) : Effect.succeed(false)))
      const loop: Effect.Effect<void> = Effect.matchEffect(pull, {
        onFailure: () => Effect.void,
        onSuccess: (chunk) => Effect.flatMap(each(chunk, 0), (goOn) => (goOn ? loop : Effect.void))
      })
      return loop
    })),
  "take-loop": (inbox) => {
    const loop: Effect.Effect<void> = Effect.flatMap(Queue.take(inbox), (e) => Effect.flatMap(handle(e), (goOn) => (goOn ? loop : Effect.void)))
    return loop
  }
}

const gc = (globalThis as { gc?: () => void }).gc
if (gc === undefined) throw new Error("run with --expose-gc (npm run bench does)")
const heapUsed = async () => {
  for (let i = 0; i < 4; i++) {
    gc()
    await new Promise((r) => setTimeout(r, 10))
  }
  return process.memoryUsage().heapUsed
}
const cpuMs = () => {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1000
}
const turn = () => new Promise((r) => setImmediate(r))

interface Result {
  readonly heapKiB: number
  readonly wakeUs: number
}

/** Offer one event to every session, wait until all handled; CPU µs per session, median of rounds (first is warm-up). */
const wakeRounds = async (offerAll: () => void): Promise<number> => {
  const samples: Array<number> = []
  for (let r = 0; r <= rounds; r++) {
    handled = 0
    const c0 = cpuMs()
    offerAll()
    while (handled < n) await turn()
    if (r > 0) samples.push(((cpuMs() - c0) * 1000) / n)
  }
  return round(median(samples), 3)
}

const measureShape = (shape: (inbox: Queue.Queue<Event>) => Effect.Effect<void>): Promise<Result> =>
  Effect.runPromise(Effect.gen(function*() {
    const h0 = yield* Effect.promise(heapUsed)
    const inboxes: Array<Queue.Queue<Event>> = []
    const fibers: Array<Fiber.RuntimeFiber<void>> = []
    for (let i = 0; i < n; i++) {
      const inbox = yield* Queue.unbounded<Event>()
      inboxes.push(inbox)
      fibers.push(yield* Effect.fork(shape(inbox)))
    }
    yield* Effect.sleep(50)
    const h1 = yield* Effect.promise(heapUsed)
    const wakeUs = yield* Effect.promise(() => wakeRounds(() => {
      for (const inbox of inboxes) Queue.unsafeOffer(inbox, TICK)
    }))
    for (const inbox of inboxes) Queue.unsafeOffer(inbox, CLOSED)
    yield* Fiber.joinAll(fibers)
    return { heapKiB: round((h1 - h0) / n / 1024, 1), wakeUs }
  }))

const measureBaseline = async (): Promise<Result> => {
  const h0 = await heapUsed()
  const sinks: Array<{ open: boolean; offer: (e: Event) => void }> = []
  for (let i = 0; i < n; i++) {
    const sink = {
      open: true,
      offer(e: Event) {
        if (this.open) this.open = handleSync(e)
      }
    }
    sinks.push(sink)
  }
  const h1 = await heapUsed()
  const wakeUs = await wakeRounds(() => {
    for (const sink of sinks) sink.offer(TICK)
  })
  return { heapKiB: round((h1 - h0) / n / 1024, 2), wakeUs: round(wakeUs, 3) }
}

console.log(`session-shapes: ${n.toLocaleString("en-US")} sessions per shape, ${rounds} wake-up rounds`)
const results: Record<string, Result> = {}
results["baseline: callback sink"] = await measureBaseline()
for (const [name, shape] of Object.entries(shapes)) results[name] = await measureShape(shape)
const base = results["baseline: callback sink"]
const rows: Array<Array<string>> = [["shape", "heap KiB/session", "CPU µs per wake-up", "wake-up / baseline"]]
for (const [name, r] of Object.entries(results)) {
  rows.push([name, String(r.heapKiB), String(r.wakeUs), name.startsWith("baseline") ? "1.00" : String(ratio(r.wakeUs, base.wakeUs))])
}
printTable(rows)
const current = results["stream-toPull"]
const previous = results["stream-runForEachWhile"]
console.log(
  `  toPull (today) vs runForEachWhile: heap ${ratio(current.heapKiB, previous.heapKiB)}x, wake-up ${ratio(current.wakeUs, previous.wakeUs)}x; ` +
    `take-loop vs today: heap ${ratio(results["take-loop"].heapKiB, current.heapKiB)}x, wake-up ${ratio(results["take-loop"].wakeUs, current.wakeUs)}x`
)
const file = writeResult("session-shapes", { config: { sessions: n, rounds }, results })
console.log(`\nwrote ${NodePath.relative(process.cwd(), file)}`)
process.exit(0)
