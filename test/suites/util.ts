import * as Effect from "effect/Effect"

let counter = 0
/** A scope name no other test in the process uses (storage layers may be shared across tests). */
export const freshScope = (prefix = "s"): string => `${prefix}:${process.pid}:${Date.now().toString(36)}:${++counter}`

/** A fresh client id. */
export const freshClient = (): string => `c-${process.pid}-${Date.now().toString(36)}-${++counter}`

export const range = (n: number): ReadonlyArray<number> => Array.from({ length: n }, (_, i) => i + 1)

/** Sleep on the wall clock, whatever clock the test runs on (TestClock in `it.effect`). */
export const realSleep = (ms: number): Effect.Effect<void> =>
  Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, ms)))
