/**
 * The hot paths' cheap span and log annotations (`src/internal/spans.ts`):
 * the annotations reach every log line of the annotated effect and are the
 * caller's own again once it succeeds or fails; the span exists only while
 * the tracer is enabled.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as HashMap from "effect/HashMap"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import { whenTracing, withLogAnnotations } from "../src/internal/spans.js"

const annotationsOfLogs = (self: Effect.Effect<unknown, unknown>) =>
  Effect.gen(function*() {
    const lines: Array<Record<string, unknown>> = []
    const logger = Logger.make(({ annotations, message }) => {
      lines.push({ message: Array.isArray(message) ? message[0] : message, ...Object.fromEntries(HashMap.toEntries(annotations)) })
    })
    const exit = yield* Effect.exit(self.pipe(Effect.provide(Logger.replace(Logger.defaultLogger, logger))))
    return { lines, exit }
  })

describe("withLogAnnotations", () => {
  it.effect("annotates every log line of the effect, keeps the caller's, and restores them after a success and after a failure", () =>
    Effect.gen(function*() {
      const body = (fail: boolean) =>
        Effect.gen(function*() {
          yield* Effect.log("before")
          yield* Effect.log("inside").pipe(Effect.zipRight(fail ? Effect.fail("no") : Effect.void), withLogAnnotations({ scope: "s1", client_id: "c1" }))
          yield* Effect.log("after")
        }).pipe(Effect.annotateLogs({ request: "r" }), Effect.ensuring(Effect.log("finally")))
      const ok = yield* annotationsOfLogs(body(false))
      assert.isTrue(Exit.isSuccess(ok.exit))
      assert.deepStrictEqual(ok.lines, [
        { message: "before", request: "r" },
        { message: "inside", request: "r", scope: "s1", client_id: "c1" },
        { message: "after", request: "r" },
        { message: "finally" }
      ])
      const failed = yield* annotationsOfLogs(body(true))
      assert.isTrue(Exit.isFailure(failed.exit))
      assert.deepStrictEqual(failed.lines, [
        { message: "before", request: "r" },
        { message: "inside", request: "r", scope: "s1", client_id: "c1" },
        { message: "finally" }
      ])
    }))
})

describe("whenTracing", () => {
  it.effect("runs the effect in the named span while the tracer is enabled, and in no span when it is off", () =>
    Effect.gen(function*() {
      const spanName = Effect.map(Effect.option(Effect.currentSpan), Option.map((span) => span.name))
      assert.deepStrictEqual(yield* spanName.pipe(whenTracing("Test.span", {})), Option.some("Test.span"))
      assert.deepStrictEqual(yield* spanName.pipe(whenTracing("Test.span", {}), Effect.withTracerEnabled(false)), Option.none())
    }))
})
