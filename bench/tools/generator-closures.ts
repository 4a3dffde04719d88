/**
 * What a generator function made per call costs on this V8, against one
 * made once: plain JavaScript (a `function*` literal evaluated and run per
 * call, against a hoisted one), then the same through Effect
 * (`(x) => Effect.gen(function*() { … })` against `Effect.fnUntraced`, each
 * run with `Effect.runSync`, whose fiber costs the same either way). The
 * cause behind bench/README's "Generator functions": a handler written the
 * first way made a 50-mutation push cost far more CPU in the engine
 * (`tools/engine-load.ts --handler=gen`).
 *
 * Usage: node --import tsx bench/tools/generator-closures.ts
 */
import * as Effect from "effect/Effect"

const calls = 200_000

/** Mean µs per call of `f` over `calls` calls, after a warm-up of a fifth of them. */
const perCall = (f: (i: number) => unknown): number => {
  for (let i = 0; i < calls / 5; i++) f(i)
  const t0 = performance.now()
  for (let i = 0; i < calls; i++) f(i)
  return (performance.now() - t0) * 1000 / calls
}

const hoisted = function*(i: number) {
  return i + 1
}
const plainFresh = perCall((i) =>
  (function*() {
    return i + 1
  })().next()
)
const plainHoisted = perCall((i) => hoisted(i).next())

const one = Effect.succeed(1)
const once = Effect.fnUntraced(function*(i: number) {
  return (yield* one) + i
})
const effectFresh = perCall((i) =>
  Effect.runSync(Effect.gen(function*() {
    return (yield* one) + i
  }))
)
const effectOnce = perCall((i) => Effect.runSync(once(i)))

const row = (what: string, fresh: number, made: number) =>
  console.log(`${what.padEnd(44)} ${fresh.toFixed(2).padStart(8)} ${made.toFixed(2).padStart(10)} ${(fresh / made).toFixed(2).padStart(7)}`)
console.log(`${"µs per call".padEnd(44)} ${"per call".padStart(8)} ${"made once".padStart(10)} ${"ratio".padStart(7)}`)
row("plain generator, run to its end", plainFresh, plainHoisted)
row("Effect.runSync(Effect.gen) / fnUntraced", effectFresh, effectOnce)
