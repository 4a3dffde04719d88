/**
 * Headless Chromium (Debian's package) through playwright-core, started with
 * the flags that work on a closed network. Without a chromium binary the
 * browser suites skip with one line saying why; under CI=true they fail.
 */
import * as NodeFs from "node:fs"
import { type Browser, chromium } from "playwright-core"

export const executablePath = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p) => NodeFs.existsSync(p))

export const available = executablePath !== undefined
if (!available) {
  if (process.env["CI"] === "true") throw new Error("chromium is required under CI=true (apt-get install -y chromium)")
  console.log("skipping browser suites: no chromium at /usr/bin/chromium (apt-get install -y chromium; CI=true makes this a failure)")
}

export const launch = (): Promise<Browser> =>
  chromium.launch({
    executablePath,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run"
    ]
  })
