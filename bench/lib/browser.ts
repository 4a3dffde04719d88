/**
 * Headless Chromium (Debian's package) for the benchmarks, with a profile on
 * disk: IndexedDB, the Cache API and service workers persist across
 * launches, as in a user's browser, and each launch is a cold start of the
 * browser process. The executable and the flags are also the browser
 * tests' (test/support/Browser.ts imports them from here: that module
 * imports vitest, so a benchmark cannot import it).
 */
import * as NodeFs from "node:fs"
import { type BrowserContext, chromium } from "playwright-core"

export const executablePath = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p) => NodeFs.existsSync(p))

/** The flags that work on a closed network (no background connections, no QUIC, no sandbox as root). */
export const flags: ReadonlyArray<string> = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run"
]

type ContextOptions = Omit<NonNullable<Parameters<typeof chromium.launchPersistentContext>[1]>, "executablePath" | "headless" | "args">

/** Launch Chromium on the profile in `userDataDir` with the context options given (`offline`, …). */
export const launchPersistent = (userDataDir: string, options: ContextOptions = {}): Promise<BrowserContext> => {
  if (executablePath === undefined) return Promise.reject(new Error("no chromium at /usr/bin/chromium (apt-get install -y chromium)"))
  return chromium.launchPersistentContext(userDataDir, { ...options, executablePath, headless: true, args: [...flags] })
}
