/**
 * The sync client's workers' retry policy (src/client/internal/syncState.ts,
 * `Backoff.wakeable`): the shared `Backoff` schedule through `Effect.retry`,
 * each wait of which a signal (the live socket is back, a discard) ends
 * early. Runs on the TestClock: nothing here waits for real time.
 *
 * Bad input tried: a signal sent while nothing waits (it ends the next wait
 * at once, as a pending signal should), an effect that keeps failing.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Queue from "effect/Queue"
import * as TestClock from "effect/TestClock"
import * as Backoff from "../src/client/Backoff.js"

const settle = Effect.repeatN(Effect.yieldNow(), 20)

describe("client workers' retry", () => {
  it.effect("a wake signal ends a backoff wait early; without one the retry waits for the clock", () =>
    Effect.gen(function*() {
      const wake = yield* Queue.sliding<void>(1)
      let attempts = 0
      const attempt = Effect.suspend(() => ++attempts < 4 ? Effect.fail("down" as const) : Effect.succeed(attempts))
      const fiber = yield* Effect.fork(Effect.retry(attempt, Backoff.wakeable({ initial: "1 hour", max: "1 hour" }, wake)))
      yield* settle
      assert.strictEqual(attempts, 1) // failed once, now waiting (up to an hour)
      yield* Queue.offer(wake, undefined)
      yield* settle
      assert.strictEqual(attempts, 2) // the signal ended the wait
      yield* Queue.offer(wake, undefined)
      yield* settle
      assert.strictEqual(attempts, 3)
      yield* TestClock.adjust("1 hour") // no signal: the clock ends the wait
      assert.strictEqual(yield* Fiber.join(fiber), 4)
    }))

  it.effect("a signal sent while nothing waits ends the next wait at once", () =>
    Effect.gen(function*() {
      const wake = yield* Queue.sliding<void>(1)
      yield* Queue.offer(wake, undefined)
      let attempts = 0
      const attempt = Effect.suspend(() => ++attempts < 2 ? Effect.fail("down" as const) : Effect.succeed(attempts))
      const fiber = yield* Effect.fork(Effect.retry(attempt, Backoff.wakeable({ initial: "1 hour", max: "1 hour" }, wake)))
      yield* settle
      assert.strictEqual(yield* Fiber.join(fiber), 2)
    }))
})
