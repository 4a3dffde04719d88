/**
 * Time to first render from the local store (issue #15 item 5), at 100 KB
 * and 5 MB of stored rows (todos of the example app, ~110 bytes of JSON
 * each) plus 20 pending creates, each figure next to a hand-written baseline
 * measured in the same run, in the same runtime, on the same stored data.
 *
 * (a) open → first `subscribe` callback (rows decoded, the queue applied):
 *   - Node, `ClientStorage.layerMemoryRef` and `FileStorage` (Node has no
 *     IndexedDB). Baseline: the same stored state read by hand (memory: the
 *     object itself; file: `readFileSync` + `JSON.parse` of the state file)
 *     with a shape check per row and the pending creates applied by hand.
 *     In one process: the first round is cold (nothing compiled), the median
 *     of the others warm.
 *   - Chromium (headless, profile on disk), IndexedDB: `MizuSync.open` in a
 *     fresh page over the database the todo app filled. Baseline: raw
 *     IndexedDB, one read-only transaction, `getAll` of the same rows and the
 *     queue, the same shape check (lib/first-render/baseline.js). Also the
 *     storage alone (`IndexedDbStorage.make` + `load`), to see where the
 *     time goes.
 * (b) cold page load → list painted, offline: the browser is launched on the
 *   profile with the network off (`offline: true`, and the server stopped) for
 *   every load, so the page, its scripts and the runtime come from the
 *   service worker's cache and the rows from IndexedDB. Painted: the list has
 *   every row, then one animation frame and a task (the same detector for
 *   both pages). Baseline: a plain page in the same shell, served by the same
 *   worker, doing (a)'s baseline read and the same markup as the app
 *   (lib/first-render/baseline.html).
 *
 * The data reaches the browser as an app's would: pushed to the server as
 * `todo/create` mutations, pulled by the todo app on one online visit (a
 * snapshot, past 20 pages), then 20 todos added offline (pending).
 *
 * Then, unless `--no-profile`, one more run of (a) per size in Chromium
 * under V8's sampling profiler, over an unminified build of the runtime:
 * self time by module (lib/first-render/profile.ts).
 *
 * Usage: npm run bench -- first-render [--quick] [--rounds=N] [--no-profile]
 */
import * as HttpServer from "@effect/platform/HttpServer"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Ref from "effect/Ref"
import { Authorizer, LivePubSub, Server, SyncStorage } from "mizu-sync-live"
import { ClientStorage, MizuSync, SyncTransport } from "mizu-sync-live/client"
import { FileStorage } from "mizu-sync-live/client/node"
import { execFileSync } from "node:child_process"
import * as NodeFs from "node:fs"
import { createServer } from "node:http"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import type { BrowserContext, Page } from "playwright-core"
import { makeRoutes, options as todoApp, type ShellFile } from "../examples/todo/app.js"
import { registry, TodoEntity } from "../examples/todo/mutations.js"
import * as Chromium from "./lib/browser.js"
import * as Profile from "./lib/first-render/profile.js"
import { printTable, writeResult } from "./lib/results.js"
import { median, ratio, round } from "./lib/stats.js"

const quick = process.argv.includes("--quick")
const profiling = !process.argv.includes("--no-profile")
const roundsArg = process.argv.find((a) => a.startsWith("--rounds="))
const rounds = (size: Size) => Number(roundsArg?.slice(9) ?? (quick ? 3 : size.bytes > 1_000_000 ? 5 : 9))
const PENDING = 20
const GOAL_MS = 100

interface Size {
  readonly label: string
  readonly bytes: number
}
const sizes: ReadonlyArray<Size> = [
  { label: "100 KB", bytes: 100 * 1024 },
  { label: "5 MB", bytes: 5 * 1024 * 1024 }
]

// ---- the data ----------------------------------------------------------------------

interface Todo {
  readonly id: string
  readonly title: string
  readonly completed: boolean
  readonly createdAt: number
}

const words = ["water", "the", "plants", "call", "mum", "about", "sunday", "fix", "bike", "tyre", "buy", "oat", "milk", "and", "bread", "write", "report", "for", "quarter", "book", "dentist", "renew", "passport", "clean", "garage"]

/** Deterministic todos whose rows (as JSON) add up to `bytes`; ids look like UUIDs, as the app's do. */
const makeTodos = (bytes: number): ReadonlyArray<Todo> => {
  let seed = 0x2545f491
  // xorshift32: every bit is usable (an LCG's low bits repeat with a short period)
  const next = () => {
    seed ^= seed << 13
    seed ^= seed >>> 17
    seed ^= seed << 5
    return (seed >>>= 0)
  }
  const hex = (n: number) => Array.from({ length: n }, () => (next() & 15).toString(16)).join("")
  const todos: Array<Todo> = []
  let total = 0
  const start = Date.UTC(2026, 0, 1)
  while (total < bytes) {
    const i = todos.length
    const title = `#${i} ${Array.from({ length: 4 + (next() % 5) }, () => words[next() % words.length]).join(" ")}`
    const todo = { id: `${hex(8)}-${hex(4)}-${hex(4)}-${hex(4)}-${hex(12)}`, title, completed: next() % 4 === 0, createdAt: start + i * 1000 }
    total += JSON.stringify(todo).length
    todos.push(todo)
  }
  if (new Set(todos.map((t) => t.id)).size !== todos.length) throw new Error("makeTodos: duplicate ids")
  return todos
}

const pendingCreates = (n: number, after: number) =>
  Array.from({ length: n }, (_, i) => ({ id: `pending-${i}`, title: `added offline ${i}`, createdAt: after + i + 1 }))

// ---- helpers --------------------------------------------------------------------------

const results: Array<Record<string, unknown>> = []
const ms = (x: number) => `${round(x, 1)} ms`
const spread = (xs: ReadonlyArray<number>) => `${round(Math.min(...xs), 1)}–${round(Math.max(...xs), 1)}`
const loadAverage = () => NodeOs.loadavg().map((x) => round(x, 2))

/** Alternate ours and the baseline, round by round (which goes first alternates too). */
const alternate = async <A, B>(n: number, ours: (i: number) => Promise<A>, baseline: (i: number) => Promise<B>) => {
  const a: Array<A> = []
  const b: Array<B> = []
  for (let i = 0; i < n; i++) {
    if (i % 2 === 0) {
      a.push(await ours(i))
      b.push(await baseline(i))
    } else {
      b.push(await baseline(i))
      a.push(await ours(i))
    }
  }
  return { ours: a, baseline: b }
}

// requests never answer: what is measured is the local store, not the network
const silentTransport = SyncTransport.layerFetch({ baseUrl: "http://127.0.0.1:9", fetch: () => new Promise<Response>(() => {}) })

const isTodo = (t: unknown): t is Todo => {
  if (typeof t !== "object" || t === null) return false
  const r = t as Record<string, unknown>
  return typeof r["id"] === "string" && typeof r["title"] === "string" && typeof r["completed"] === "boolean" &&
    (r["createdAt"] === undefined || typeof r["createdAt"] === "number")
}

/** The hand-written read of a stored state: a shape check per row, the pending creates applied by hand. */
const handDecode = (scope: string, state: ClientStorage.StoredState) => {
  const byId = new Map<string, Todo>()
  for (const [id, data] of Object.entries(state.scopes[scope]?.rows["todo"] ?? {})) if (isTodo(data)) byId.set(id, data)
  for (const m of state.pending) {
    if (m.scope !== scope || m.name !== "todo/create") continue
    const args = m.args as { id: string; title: string; createdAt: number }
    byId.set(args.id, { id: args.id, title: args.title, completed: false, createdAt: args.createdAt })
  }
  return [...byId]
}

/** `MizuSync.open` over `storage` → the first `subscribe` callback. */
const openToFirstCallback = async (storage: Layer.Layer<ClientStorage.ClientStorage, ClientStorage.ClientStorageError>, scope: string, expected: number) => {
  const t0 = performance.now()
  const sync = await MizuSync.open({ registry, storage, transport: silentTransport })
  const opened = performance.now()
  let first = 0
  const rows = await new Promise<number>((resolve) => {
    sync.subscribe(scope, TodoEntity, (rows) => {
      if (first === 0) first = performance.now()
      resolve(rows.length)
    })
  })
  await sync.close()
  if (rows !== expected) throw new Error(`ours saw ${rows} rows, expected ${expected}`)
  return { ms: first - t0, open: opened - t0 }
}

// ---- (a) in Node ----------------------------------------------------------------------------

const node = async (size: Size, todos: ReadonlyArray<Todo>) => {
  const scope = "user:bench:todos"
  const pending = pendingCreates(PENDING, todos[todos.length - 1]?.createdAt ?? 0).map((args, i) => ({ id: i + 1, name: "todo/create", scope, args }))
  const state: ClientStorage.StoredState = {
    clientId: "c-first-render",
    nextId: PENDING + 1,
    scopes: { [scope]: { cursor: todos.length, rows: { todo: Object.fromEntries(todos.map((t) => [t.id, t])) } } },
    pending
  }
  const expected = todos.length + PENDING
  const n = rounds(size) + 1
  const ref = Effect.runSync(Ref.make(state))
  const memory = await alternate(
    n,
    () => openToFirstCallback(ClientStorage.layerMemoryRef(ref), scope, expected),
    async () => {
      const t0 = performance.now()
      const rows = handDecode(scope, Effect.runSync(Ref.get(ref)))
      if (rows.length !== expected) throw new Error("baseline rows")
      return { ms: performance.now() - t0 }
    }
  )

  const directory = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "mizu-first-render-"))
  try {
    // written by FileStorage itself, compacted into its state file (what a client's restart reads)
    await Effect.runPromise(Effect.scoped(Effect.flatMap(
      FileStorage.make({ directory, fsync: false, compactAfter: 1 }),
      (storage) => storage.commit({ meta: { clientId: "c-first-render", nextId: PENDING + 1 }, scopes: [{ scope, cursor: todos.length, put: todos.map((t) => ["todo", t.id, t] as const) }], pendingPut: pending })
    )))
    const statePath = NodePath.join(directory, "state.json")
    const file = await alternate(
      n,
      () => openToFirstCallback(FileStorage.layer({ directory }), scope, expected),
      async () => {
        const t0 = performance.now()
        const parsed = JSON.parse(NodeFs.readFileSync(statePath, "utf8")) as { readonly state: ClientStorage.StoredState }
        const rows = handDecode(scope, parsed.state)
        if (rows.length !== expected) throw new Error("baseline rows")
        return { ms: performance.now() - t0 }
      }
    )
    return { memory, file, fileBytes: NodeFs.statSync(statePath).size }
  } finally {
    NodeFs.rmSync(directory, { recursive: true, force: true })
  }
}

// ---- the server (serves the app and the bench pages; only the setup talks to it) -----------

const here = (path: string) => new URL(path, import.meta.url)
const benchFiles: ReadonlyArray<ShellFile> = [
  { path: "/bench/first-render/baseline.html", file: here("./lib/first-render/baseline.html"), contentType: "text/html; charset=utf-8" },
  { path: "/bench/first-render/baseline.js", file: here("./lib/first-render/baseline.js"), contentType: "text/javascript; charset=utf-8" },
  { path: "/bench/first-render/open.html", file: here("./lib/first-render/open.html"), contentType: "text/html; charset=utf-8" }
]

const startServer = async (extra: ReadonlyArray<ShellFile>) => {
  const layer = Server.layer({ ...todoApp, routes: makeRoutes([...benchFiles, ...extra]) }).pipe(
    Layer.provideMerge(Layer.mergeAll(SyncStorage.layerMemory, LivePubSub.layerMemory, Authorizer.layerAllowAll)),
    Layer.provideMerge(NodeHttpServer.layer(createServer, { port: 0, host: "127.0.0.1" })),
    Layer.provide(Logger.minimumLogLevel(LogLevel.Warning))
  )
  const runtime = ManagedRuntime.make(layer)
  const address = (await runtime.runPromise(HttpServer.HttpServer)).address
  if (address._tag !== "TcpAddress") throw new Error("no TCP address")
  return { url: `http://127.0.0.1:${address.port}`, stop: () => runtime.dispose() }
}

const pushAll = async (base: string, scope: string, todos: ReadonlyArray<Todo>) => {
  for (let i = 0; i < todos.length; i += 1000) {
    const mutations = todos.slice(i, i + 1000).map((t) => ({ name: "todo/create", scope, args: { id: t.id, title: t.title, createdAt: t.createdAt } }))
    const res = await fetch(`${base}/_sync/push`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ mutations }) })
    if (!res.ok) throw new Error(`push: ${res.status} ${await res.text()}`)
  }
  // the toggles, so some rows are done
  const done = todos.filter((t) => t.completed)
  for (let i = 0; i < done.length; i += 1000) {
    const mutations = done.slice(i, i + 1000).map((t) => ({ name: "todo/toggle", scope, args: { id: t.id } }))
    const res = await fetch(`${base}/_sync/push`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ mutations }) })
    if (!res.ok) throw new Error(`push: ${res.status} ${await res.text()}`)
  }
}

type MizuWindow = {
  readonly mizu?: {
    readonly sync: {
      readonly pending: ReadonlyArray<unknown>
      query(scope: string, entity: string): ReadonlyArray<unknown>
      mutate(name: string, args: unknown, options: { readonly scope: string }): Promise<unknown>
    }
  }
}

/** One online visit of the todo app: the worker installs, the client pulls every row; then PENDING todos added offline. */
const visitOnline = async (profile: string, base: string, list: string, scope: string, rows: number, pending: ReadonlyArray<unknown>) => {
  const context = await Chromium.launchPersistent(profile)
  try {
    const page = context.pages()[0] ?? await context.newPage()
    page.on("pageerror", (e) => console.log("pageerror:", e.message))
    await page.goto(`${base}/?list=${list}&name=bench`)
    await page.waitForFunction(() => "mizu" in window)
    await page.evaluate(() => navigator.serviceWorker.ready.then(() => undefined))
    await page.waitForFunction(([scope, rows]) => (window as unknown as MizuWindow).mizu?.sync.query(scope, "todo").length === rows, [scope, rows] as const, { timeout: 300_000, polling: 500 })
    await context.setOffline(true)
    await page.evaluate(async ([scope, pending]) => {
      const sync = (window as unknown as MizuWindow).mizu?.sync
      for (const args of pending) await sync?.mutate("todo/create", args, { scope })
    }, [scope, pending] as const)
    await page.waitForFunction((n) => (window as unknown as MizuWindow).mizu?.sync.pending.length === n, pending.length)
  } finally {
    await context.close()
  }
}

// ---- (a) in Chromium --------------------------------------------------------------------

interface OursA {
  readonly ms: number
  readonly open: number
  readonly subscribe: number
  readonly decode: number
  readonly rows: number
}

const inPage = async <A>(context: BrowserContext, url: string, f: (page: Page) => Promise<A>): Promise<A> => {
  const page = await context.newPage()
  try {
    page.on("pageerror", (e) => console.log("pageerror:", e.message))
    await page.goto(url)
    await page.waitForFunction(() => "benchReady" in window)
    return await f(page)
  } finally {
    await page.close()
  }
}

type BenchWindow = {
  readonly bench: {
    ours(dbName: string, scope: string): Promise<OursA>
    oursTwice(dbName: string, scope: string): Promise<OursA>
    load(dbName: string): Promise<{ readonly ms: number; readonly rows: number; readonly pending: number }>
    baseline(dbName: string, scope: string): Promise<{ readonly ms: number; readonly read: number; readonly rows: number }>
  }
}

const chromiumOpen = async (context: BrowserContext, base: string, size: Size, list: string, scope: string, expected: number) => {
  const url = `${base}/bench/first-render/open.html`
  const dbName = `mizu-todos-${list}`
  const runs = await alternate(
    rounds(size),
    () => inPage(context, url, (page) => page.evaluate(([db, scope]) => (window as unknown as BenchWindow).bench.ours(db, scope), [dbName, scope] as const)),
    () => inPage(context, url, (page) => page.evaluate(([db, scope]) => (window as unknown as BenchWindow).bench.baseline(db, scope), [dbName, scope] as const))
  )
  const loads: Array<number> = []
  const warm: Array<OursA> = []
  for (let i = 0; i < rounds(size); i++) {
    const load = await inPage(context, url, (page) => page.evaluate((db) => (window as unknown as BenchWindow).bench.load(db), dbName))
    if (load.rows !== expected - PENDING || load.pending !== PENDING) throw new Error(`storage load: ${load.rows} rows, ${load.pending} pending`)
    loads.push(load.ms)
    warm.push(await inPage(context, url, (page) => page.evaluate(([db, scope]) => (window as unknown as BenchWindow).bench.oursTwice(db, scope), [dbName, scope] as const)))
  }
  for (const r of [...runs.ours, ...runs.baseline, ...warm]) if (r.rows !== expected) throw new Error(`(a) saw ${r.rows} rows, expected ${expected}`)
  return { ...runs, loads, warm }
}

// ---- (b) cold page load, offline ------------------------------------------------------------

interface Painted {
  readonly painted: number
  readonly navigation: { readonly workerStart: number; readonly responseEnd: number; readonly domInteractive: number }
  readonly runtimeEnd: number | undefined
  readonly marks: Readonly<Record<string, number>>
  readonly rows: number
  readonly pendingDots: number
}

/** Installed before any script of the page: resolves `__painted` one frame and a task after the list has `expected` rows. */
const detector = (expected: number) => {
  const w = window as unknown as { __painted?: Promise<number> }
  w.__painted = new Promise((resolve) => {
    const observer = new MutationObserver(() => {
      const ul = document.getElementById("todos")
      if (ul === null || ul.childElementCount < expected) return
      observer.disconnect()
      requestAnimationFrame(() => setTimeout(() => resolve(performance.now()), 0))
    })
    observer.observe(document, { childList: true, subtree: true })
  })
}

const coldLoad = async (profile: string, url: string, expected: number): Promise<Painted> => {
  const context = await Chromium.launchPersistent(profile, { offline: true })
  try {
    const page = context.pages()[0] ?? await context.newPage()
    page.on("pageerror", (e) => console.log("pageerror:", e.message))
    await page.addInitScript(detector, expected)
    await page.goto(url, { waitUntil: "commit" })
    const painted = await page.evaluate(() => (window as unknown as { __painted: Promise<number> }).__painted)
    return await page.evaluate((painted) => {
      const nav = performance.getEntriesByType("navigation")[0] as PerformanceNavigationTiming
      const runtime = performance.getEntriesByType("resource").find((r) => r.name.endsWith("/_live/runtime.js")) as PerformanceResourceTiming | undefined
      return {
        painted,
        navigation: { workerStart: nav.workerStart, responseEnd: nav.responseEnd, domInteractive: nav.domInteractive },
        runtimeEnd: runtime?.responseEnd,
        marks: Object.fromEntries(performance.getEntriesByType("mark").map((m) => [m.name, m.startTime])),
        rows: document.querySelectorAll("#todos > li").length,
        pendingDots: document.querySelectorAll("#todos .pending-dot").length
      }
    }, painted)
  } finally {
    await context.close()
  }
}

// ---- main -------------------------------------------------------------------------------------

const main = async () => {
  if (Chromium.executablePath === undefined) throw new Error("first-render needs chromium at /usr/bin/chromium")
  execFileSync(process.execPath, ["--import", "tsx", NodePath.join(import.meta.dirname, "../scripts/build-browser.ts")], { stdio: "inherit" })
  const started = { at: new Date().toISOString(), load: loadAverage() }
  console.log(`load average at start: ${started.load.join(" ")}`)
  const data = new Map(sizes.map((s) => [s.label, makeTodos(s.bytes)] as const))

  // (a) Node
  const nodeTable: Array<Array<string>> = [["storage", "rows", "ours first (cold)", "baseline first", "ours median (warm)", "baseline median", "ours / baseline (warm)"]]
  for (const size of sizes) {
    const todos = data.get(size.label) ?? []
    const r = await node(size, todos)
    for (const [storage, runs] of [["memory", r.memory], ["file", r.file]] as const) {
      const [oursCold, ...oursWarm] = runs.ours.map((x) => x.ms)
      const [baseCold, ...baseWarm] = runs.baseline.map((x) => x.ms)
      nodeTable.push([`Node ${storage}, ${size.label}`, String(todos.length + PENDING), ms(oursCold ?? NaN), ms(baseCold ?? NaN), ms(median(oursWarm)), ms(median(baseWarm)), String(ratio(median(oursWarm), median(baseWarm)))])
      results.push({ part: "a", runtime: "node", storage, size: size.label, rows: todos.length, pending: PENDING, ours_ms: runs.ours, baseline_ms: runs.baseline.map((x) => x.ms), ratio_warm: ratio(median(oursWarm), median(baseWarm)), ...(storage === "file" ? { state_file_bytes: r.fileBytes } : {}) })
    }
  }

  // Chromium: seed through the server, one online visit per list
  const prof = profiling ? await Profile.prepare() : undefined
  const server = await startServer(prof?.files ?? [])
  // the origin the worker and the databases belong to; (b) loads it again with the server stopped
  const origin = server.url
  const profile = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "mizu-first-render-profile-"))
  const profiles: Array<readonly [string, Profile.Summary]> = []
  const lists = new Map<string, { readonly list: string; readonly scope: string; readonly expected: number }>()
  const chromeTable: Array<Array<string>> = [["measure", "rows", "ours median", "ours spread", "baseline median", "baseline spread", "ours / baseline"]]
  const breakdown: Array<Array<string>> = [["size", "storage load (IndexedDbStorage)", "open (load + views + queue)", "open → first callback (query: sort + decode)", "query again (warm)", "2nd open in the page (warm code): total", "baseline getAll", "baseline total"]]
  try {
    for (const size of sizes) {
      const todos = data.get(size.label) ?? []
      const list = `fr${size.bytes}x${Date.now().toString(36)}`
      const scope = `user:${list}:todos`
      const t0 = performance.now()
      await pushAll(server.url, scope, todos)
      const pushed = performance.now()
      await visitOnline(profile, server.url, list, scope, todos.length, pendingCreates(PENDING, todos[todos.length - 1]?.createdAt ?? 0))
      console.log(`${size.label}: ${todos.length} rows pushed (${round((pushed - t0) / 1000, 1)} s), pulled by the app, ${PENDING} pending (${round((performance.now() - pushed) / 1000, 1)} s)`)
      lists.set(size.label, { list, scope, expected: todos.length + PENDING })
    }

    // (a) Chromium, IndexedDB (the server only serves the page)
    const context = await Chromium.launchPersistent(profile)
    try {
      for (const size of sizes) {
        const l = lists.get(size.label)
        if (l === undefined) continue
        const r = await chromiumOpen(context, server.url, size, l.list, l.scope, l.expected)
        const ours = r.ours.map((x) => x.ms)
        const base = r.baseline.map((x) => x.ms)
        chromeTable.push([`(a) Chromium IndexedDB, open → first callback, ${size.label}`, String(l.expected), ms(median(ours)), spread(ours), ms(median(base)), spread(base), String(ratio(median(ours), median(base)))])
        breakdown.push([size.label, ms(median(r.loads)), ms(median(r.ours.map((x) => x.open))), ms(median(r.ours.map((x) => x.subscribe))), ms(median(r.ours.map((x) => x.decode))), ms(median(r.warm.map((x) => x.ms))), ms(median(r.baseline.map((x) => x.read))), ms(median(base))])
        results.push({ part: "a", runtime: "chromium", storage: "indexeddb", size: size.label, rows: l.expected - PENDING, pending: PENDING, ours: r.ours, baseline: r.baseline, storage_load_ms: r.loads, ours_second_in_page: r.warm, ratio: ratio(median(ours), median(base)) })
      }
      if (prof !== undefined) {
        for (const size of sizes) {
          const l = lists.get(size.label)
          if (l === undefined) continue
          const summary = await inPage(context, `${server.url}${Profile.PAGE_PATH}`, (page) =>
            Profile.profile(page, prof.lines, () =>
              page.evaluate(([db, scope]) => (window as unknown as BenchWindow).bench.ours(db, scope), [`mizu-todos-${l.list}`, l.scope] as const)))
          profiles.push([size.label, summary])
          results.push({ part: "a-profile", runtime: "chromium", size: size.label, ...summary })
        }
      }
    } finally {
      await context.close()
    }
  } finally {
    await server.stop()
    prof?.cleanup()
  }

  // (b) cold loads, offline: the server is gone too
  const coldTable: Array<Array<string>> = [["size", "ours: HTML from worker", "runtime.js loaded", "modules evaluated (todo:start)", "todo:opened", "todo:rendered", "painted", "baseline: HTML", "painted"]]
  try {
    for (const size of sizes) {
      const l = lists.get(size.label)
      if (l === undefined) continue
      const runs = await alternate(
        rounds(size),
        () => coldLoad(profile, `${origin}/?list=${l.list}&name=bench`, l.expected),
        () => coldLoad(profile, `${origin}/bench/first-render/baseline.html?list=${l.list}`, l.expected)
      )
      for (const r of [...runs.ours, ...runs.baseline]) {
        if (r.rows !== l.expected || r.pendingDots !== PENDING) throw new Error(`(b) painted ${r.rows} rows, ${r.pendingDots} pending`)
      }
      const ours = runs.ours.map((x) => x.painted)
      const base = runs.baseline.map((x) => x.painted)
      chromeTable.push([`(b) Chromium cold load offline → painted, ${size.label}`, String(l.expected), ms(median(ours)), spread(ours), ms(median(base)), spread(base), String(ratio(median(ours), median(base)))])
      const m = (f: (p: Painted) => number | undefined, xs: ReadonlyArray<Painted>) => ms(median(xs.map((x) => f(x) ?? NaN)))
      coldTable.push([
        size.label,
        m((p) => p.navigation.responseEnd, runs.ours),
        m((p) => p.runtimeEnd, runs.ours),
        m((p) => p.marks["todo:start"], runs.ours),
        m((p) => p.marks["todo:opened"], runs.ours),
        m((p) => p.marks["todo:rendered"], runs.ours),
        ms(median(ours)),
        m((p) => p.navigation.responseEnd, runs.baseline),
        ms(median(base))
      ])
      results.push({ part: "b", runtime: "chromium", size: size.label, rows: l.expected - PENDING, pending: PENDING, ours: runs.ours, baseline: runs.baseline, ratio: ratio(median(ours), median(base)) })
    }
  } finally {
    NodeFs.rmSync(profile, { recursive: true, force: true })
  }

  const finished = { at: new Date().toISOString(), load: loadAverage() }
  console.log()
  printTable(nodeTable)
  console.log()
  printTable(chromeTable)
  console.log("\n(a) in Chromium, where the time goes (medians, ms since MizuSync.open):")
  printTable(breakdown)
  console.log("\n(b) cold load, ours, ms since navigation start (medians):")
  printTable(coldTable)
  for (const [size, summary] of profiles) {
    console.log(`\n(a) in Chromium, ${size}, one run under the profiler (unminified runtime; ${summary.totalMs} ms profiled), self time:`)
    printTable([["group", "ms"], ...summary.groups.map(([g, v]) => [g, String(v)])])
    console.log()
    printTable([["function (module:line)", "ms"], ...summary.functions.slice(0, 10).map(([f, v]) => [f, String(v)])])
  }
  console.log(`\ngoal: < ${GOAL_MS} ms for 100 KB (Replicache documents < 150 ms for the first 100 KB from disk)`)
  console.log(`load average: start ${started.load.join(" ")}, end ${finished.load.join(" ")}`)
  const file = writeResult("first-render", { started, finished, goal_ms: GOAL_MS, pending: PENDING, results })
  console.log(`results: ${file}`)
}

await main()
process.exit(0)
