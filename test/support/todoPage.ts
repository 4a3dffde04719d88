/**
 * Driving the todo example's page (examples/todo/public/app.js) in a
 * browser: open it, read what it shows, add a todo, wait until the queue is
 * empty. Shared by the browser suites.
 */
import * as Effect from "effect/Effect"
import type { BrowserContext, Page } from "playwright-core"

export const run = <A>(f: () => Promise<A>) => Effect.promise(f)
let lists = 0
export const freshList = () => `l${process.pid}x${Date.now().toString(36)}x${++lists}`

export const open = async (context: BrowserContext, url: string): Promise<Page> => {
  const page = await context.newPage()
  page.on("pageerror", (e) => console.log("pageerror:", e.message))
  await page.goto(url)
  return page
}

/** The titles in the list, in order. */
export const titles = (page: Page) => page.locator("#todos li span.title").allTextContents()
/** The titles on the live page, in order. */
export const liveTitles = (page: Page) => page.locator("ul.todos li label span").allTextContents()
/** The row ids in the list, in order. */
export const rowIds = (page: Page) => page.locator("#todos li").evaluateAll((lis) => lis.map((li) => (li as HTMLElement).dataset["id"] ?? ""))

export type MizuWindow = {
  readonly mizu?: {
    readonly scope: string
    readonly sync: {
      readonly clientId: string
      readonly pending: ReadonlyArray<unknown>
      mutate(name: string, args: unknown, options: { readonly scope: string }): Promise<unknown>
    }
  }
}
export const pendingCount = (page: Page) => page.evaluate(() => (window as unknown as MizuWindow).mizu?.sync.pending.length)

export const addTodo = async (page: Page, title: string) => {
  await page.fill("#title-input", title)
  await page.press("#title-input", "Enter")
}

export const waitSaved = (page: Page, timeout = 30_000) =>
  page.waitForFunction(() => (window as unknown as MizuWindow).mizu?.sync.pending.length === 0, undefined, { timeout })
