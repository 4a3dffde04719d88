/**
 * Spans and log annotations at a price the hot paths can pay.
 *
 * `Effect.withSpan` makes (and ends) a no-op span even with the tracer
 * disabled, and `Effect.annotateLogs` sets and restores its FiberRef
 * through `acquireUseRelease`: ~7 µs each per call on this project's
 * machines, more than a pull's whole engine step (bench/README, "What a
 * span costs with tracing off").
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import * as HashMap from "effect/HashMap"
import type * as Tracer from "effect/Tracer"

/** `self` in the span `name` while the fiber's tracer is enabled; with it off, `self` alone (no span at all, not even a no-op one). */
export const whenTracing = (name: string, options: Tracer.SpanOptions) => <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.withFiberRuntime((fiber) => fiber.getFiberRef(FiberRef.currentTracerEnabled) ? Effect.withSpan(self, name, options) : self)

/**
 * `Effect.annotateLogs(annotations)` for `self`: the annotations set on the
 * fiber, and its own restored when `self` ends. An interruption skips the
 * restore: the fiber is ending, and the worst left is an annotation on its
 * last log lines.
 */
export const withLogAnnotations = (annotations: Readonly<Record<string, string>>) => <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.withFiberRuntime((fiber) => {
    const before = fiber.getFiberRef(FiberRef.currentLogAnnotations)
    let after = before
    for (const key in annotations) after = HashMap.set(after, key, annotations[key])
    return Effect.zipRight(
      FiberRef.set(FiberRef.currentLogAnnotations, after),
      Effect.matchCauseEffect(self, {
        onFailure: (cause) => Effect.zipRight(FiberRef.set(FiberRef.currentLogAnnotations, before), Effect.failCause(cause)),
        onSuccess: (value) => Effect.as(FiberRef.set(FiberRef.currentLogAnnotations, before), value)
      })
    )
  })
