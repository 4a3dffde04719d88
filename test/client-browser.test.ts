/**
 * The sync client in a real browser (headless Chromium), where one thing can
 * only be seen there: two tabs of one profile share IndexedDB. Each tab must
 * still be its own client (its own id and mutation ids), or the server would
 * take one tab's mutations for duplicates of the other's and drop them.
 */
import { afterAll, assert, beforeAll, describe, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { Authorizer, LivePubSub, SyncStorage } from "mizu-sync-live"
import { SyncTransport } from "mizu-sync-live/client"
import type { Browser, Page } from "playwright-core"
import { options } from "../examples/todo/app.js"
import * as Chromium from "./support/Browser.js"
import { BaseUrl, layerServer } from "./support/TestServer.js"

let browser: Browser | undefined
beforeAll(async () => {
  if (Chromium.available) browser = await Chromium.launch()
}, 60_000)
afterAll(async () => {
  await browser?.close()
})

interface PageSync {
  readonly clientId: string
  readonly pending: ReadonlyArray<unknown>
  mutate(name: string, args: unknown, options: { readonly scope: string }): Promise<unknown>
}
type MizuWindow = { readonly mizu?: { readonly sync: PageSync; readonly scope: string } }

const deps = Layer.mergeAll(SyncStorage.layerMemory, LivePubSub.layerMemory, Authorizer.layerAllowAll)

// Skipped only without a chromium binary, with one line saying so; under CI=true a missing
// chromium fails instead (support/Browser.ts), and .ci/run installs it.
describe.skipIf(!Chromium.available)("SyncClient in a browser", () => {
  layer(layerServer(options, deps), { excludeTestServices: true, timeout: 120_000 })("one profile", (it) => {
    it.effect("two tabs sharing IndexedDB are two clients: every mutation of both reaches the server", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const list = `tabs${process.pid}x${Date.now().toString(36)}`
        const scope = `user:${list}:todos`
        const ids = yield* Effect.promise(async () => {
          if (browser === undefined) throw new Error("no browser")
          const context = await browser.newContext()
          const open = async (name: string): Promise<Page> => {
            const page = await context.newPage()
            page.on("pageerror", (e) => console.log("pageerror:", e.message))
            await page.goto(`${base}/?list=${list}&name=${name}`)
            await page.waitForFunction(() => "mizu" in window)
            return page
          }
          const tabs = [await open("ann"), await open("bob")]
          // both tabs queue five todos at once, each through its own client
          await Promise.all(tabs.map((page, t) =>
            page.evaluate(async ([t, scope]) => {
              const sync = (window as unknown as MizuWindow).mizu?.sync
              if (sync === undefined) throw new Error("no client")
              for (let i = 0; i < 5; i++) await sync.mutate("todo/create", { id: `tab${t}-${i}`, title: `tab ${t} #${i}` }, { scope })
            }, [t, scope] as const)
          ))
          for (const page of tabs) {
            await page.waitForFunction(() => (window as unknown as MizuWindow).mizu?.sync.pending.length === 0, undefined, { timeout: 30_000 })
          }
          const clientIds = await Promise.all(tabs.map((page) => page.evaluate(() => (window as unknown as MizuWindow).mizu?.sync.clientId)))
          await context.close()
          return clientIds
        })
        assert.strictEqual(ids.length, 2)
        assert.notStrictEqual(ids[0], ids[1], "each tab has its own client id")
        const snapshot = yield* Effect.orDie(SyncTransport.makeFetch({ baseUrl: base }).snapshot({ scope }))
        assert.deepStrictEqual(Object.keys(snapshot.data["todo"] ?? {}).sort(), [0, 1].flatMap((t) => [0, 1, 2, 3, 4].map((i) => `tab${t}-${i}`)).sort())
      }))
  })
})
