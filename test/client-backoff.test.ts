/**
 * The clients' one retry policy (`Backoff`): the caps of the delays double
 * up to `max`, and `resetWhen` starts them over for the failures it names.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import { Backoff } from "mizu-sync-live/client"

const options = { initial: Duration.millis(100), max: Duration.millis(350) }

describe("Backoff", () => {
  it.effect("resetWhen: the cap doubles per failure up to max, and is the first again after a failure that resets", () =>
    Effect.gen(function*() {
      // inputs: does this failure reset the delays?
      const inputs = [false, false, false, false, true, false, true, true]
      const out = yield* Schedule.run(Backoff.resetWhen(options, (reset: boolean) => reset), 0, inputs)
      assert.deepStrictEqual(
        Chunk.toReadonlyArray(out).map(([, cap]) => Duration.toMillis(cap)),
        [100, 200, 350, 350, 100, 200, 100, 100]
      )
    }))
})
