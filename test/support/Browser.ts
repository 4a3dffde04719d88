/**
 * Headless Chromium (Debian's package) through playwright-core, started with
 * the flags that work on a closed network. Without a chromium binary the
 * browser suites skip with one line saying why; under CI=true they fail.
 * `eventually` is how the suites assert on what a page shows after an action.
 */
import { assert } from "@effect/vitest"
import * as NodeUtil from "node:util"
import { type Browser, chromium } from "playwright-core"
import { executablePath, flags } from "../../bench/lib/browser.js"

export { executablePath }

export const available = executablePath !== undefined
if (!available) {
  if (process.env["CI"] === "true") throw new Error("chromium is required under CI=true (apt-get install -y chromium)")
  console.log("skipping browser suites: no chromium at /usr/bin/chromium (apt-get install -y chromium; CI=true makes this a failure)")
}

export const launch = (): Promise<Browser> =>
  chromium.launch({
    executablePath,
    headless: true,
    args: [...flags]
  })

/** Options of `eventually`. */
export interface EventuallyOptions {
  /** How long to keep retrying, in ms; 10 s by default. */
  readonly timeout?: number
  /** The pause between reads, in ms; 50 by default. */
  readonly interval?: number
  readonly message?: string
}

/**
 * Read until the value deep-equals `expected` (what a page shows settles
 * after an action; asserting on the first read races the re-render). On
 * timeout it fails as `assert.deepStrictEqual` would, with the last value
 * seen — or, when every read threw, with the last error.
 */
export const eventually = async <A>(read: () => A | Promise<A>, expected: A, options: EventuallyOptions = {}): Promise<void> => {
  const deadline = Date.now() + (options.timeout ?? 10_000)
  let last: { readonly value: A } | { readonly error: unknown } | undefined
  for (;;) {
    try {
      const value = await read()
      if (NodeUtil.isDeepStrictEqual(value, expected)) return
      last = { value }
    } catch (error) {
      last = { error }
    }
    if (Date.now() >= deadline) break
    await new Promise((resolve) => setTimeout(resolve, options.interval ?? 50))
  }
  const what = `${options.message === undefined ? "" : `${options.message}: `}not so after ${options.timeout ?? 10_000} ms`
  if ("error" in last) throw new Error(`${what}; the last read failed: ${String(last.error)}`, { cause: last.error })
  assert.deepStrictEqual(last.value, expected, what)
}
