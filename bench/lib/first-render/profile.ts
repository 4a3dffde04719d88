/**
 * Where `MizuSync.open` → first callback spends its time in Chromium: a V8
 * sampling profile (CDP `Profiler`) of one run of the open page over an
 * unminified build of the runtime, so each sample maps to the source module
 * it is in (esbuild marks every module with a `// path` comment line).
 * Self time is summed by module and by group (Schema decode, the Effect
 * runtime, the client's modules, GC, idle — an idle main thread is mostly
 * waiting for IndexedDB).
 */
import * as esbuild from "esbuild"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { pathToFileURL } from "node:url"
import type { Page } from "playwright-core"
import type { ShellFile } from "../../../examples/todo/app.js"
import { repoDir } from "../results.js"

export const RUNTIME_PATH = "/bench/first-render/runtime-unminified.js"
export const PAGE_PATH = "/bench/first-render/open-profile.html"

/** The unminified runtime and a copy of open.html that imports it: files to serve next to the others. */
export const prepare = async (): Promise<{ readonly files: ReadonlyArray<ShellFile>; readonly lines: ReadonlyArray<string>; readonly cleanup: () => void }> => {
  const dir = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "mizu-first-render-profile-build-"))
  const runtime = NodePath.join(dir, "runtime.js")
  await esbuild.build({
    absWorkingDir: repoDir,
    entryPoints: ["src/client/browser.ts"],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    minify: false,
    conditions: ["source"],
    outfile: runtime,
    logLevel: "warning"
  })
  const html = NodeFs.readFileSync(new URL("./open.html", import.meta.url), "utf8").replace(
    /<script type="importmap">[\s\S]*?<\/script>/,
    `<script type="importmap">${JSON.stringify({ imports: { "effect": RUNTIME_PATH, "mizu-sync-live/shared": RUNTIME_PATH, "/_live/runtime.js": RUNTIME_PATH } })}</script>`
  )
  const page = NodePath.join(dir, "open-profile.html")
  NodeFs.writeFileSync(page, html)
  return {
    files: [
      { path: RUNTIME_PATH, file: pathToFileURL(runtime), contentType: "text/javascript; charset=utf-8" },
      { path: PAGE_PATH, file: pathToFileURL(page), contentType: "text/html; charset=utf-8" }
    ],
    lines: NodeFs.readFileSync(runtime, "utf8").split("\n"),
    cleanup: () => NodeFs.rmSync(dir, { recursive: true, force: true })
  }
}

interface CallFrame {
  readonly functionName: string
  readonly url: string
  readonly lineNumber: number
}
interface ProfileNode {
  readonly id: number
  readonly callFrame: CallFrame
  readonly hitCount?: number
}
interface Profile {
  readonly nodes: ReadonlyArray<ProfileNode>
  readonly startTime: number
  readonly endTime: number
}

/** The module of each line of the bundle: the last `// path` marker at or above it. */
const moduleIndex = (lines: ReadonlyArray<string>) => {
  const marks: Array<readonly [number, string]> = []
  lines.forEach((line, i) => {
    const m = /^\/\/ ((?:node_modules|src|examples)\/\S+)$/.exec(line)
    if (m !== null) marks.push([i, m[1].replace(/^node_modules\//, "")])
  })
  return (line: number): string => {
    let lo = 0
    let hi = marks.length - 1
    let found = "(bundle prelude)"
    while (lo <= hi) {
      const mid = (lo + hi) >> 1
      if (marks[mid][0] <= line) {
        found = marks[mid][1]
        lo = mid + 1
      } else hi = mid - 1
    }
    return found
  }
}

/** The group a module's time is reported under. */
const groupOf = (module: string): string => {
  if (module.startsWith("(")) return module
  if (/effect\/dist\/esm\/(internal\/)?(schema|Schema|ParseResult|SchemaAST|Arbitrary|Pretty)/.test(module)) return "Schema (decode, encode)"
  if (module.startsWith("effect/")) return "Effect runtime (fibers, layers, streams, data structures)"
  if (module.startsWith("src/client/")) return `client: ${NodePath.basename(module)}`
  if (module.startsWith("src/")) return `shared: ${module.slice(4)}`
  return module
}

export interface Summary {
  readonly totalMs: number
  readonly groups: ReadonlyArray<readonly [string, number]>
  readonly modules: ReadonlyArray<readonly [string, number]>
  readonly functions: ReadonlyArray<readonly [string, number]>
}

/** Run `f` in `page` under the sampling profiler; self time by group, module and function (ms). */
export const profile = async (page: Page, lines: ReadonlyArray<string>, f: () => Promise<unknown>): Promise<Summary> => {
  const cdp = await page.context().newCDPSession(page)
  await cdp.send("Profiler.enable")
  await cdp.send("Profiler.setSamplingInterval", { interval: 100 })
  await cdp.send("Profiler.start")
  await f()
  const { profile } = (await cdp.send("Profiler.stop")) as unknown as { readonly profile: Profile }
  await cdp.detach()
  const moduleOf = moduleIndex(lines)
  const hits = profile.nodes.reduce((n, node) => n + (node.hitCount ?? 0), 0)
  const totalMs = (profile.endTime - profile.startTime) / 1000
  const perHit = hits === 0 ? 0 : totalMs / hits
  const groups = new Map<string, number>()
  const modules = new Map<string, number>()
  const functions = new Map<string, number>()
  const add = (map: Map<string, number>, key: string, ms: number) => map.set(key, (map.get(key) ?? 0) + ms)
  for (const node of profile.nodes) {
    const ms = (node.hitCount ?? 0) * perHit
    if (ms === 0) continue
    const { functionName, lineNumber, url } = node.callFrame
    const module = url.endsWith(RUNTIME_PATH)
      ? moduleOf(lineNumber)
      : url === ""
      ? (functionName.startsWith("(") ? functionName : "(native)")
      : new URL(url).pathname
    add(groups, groupOf(module), ms)
    add(modules, module, ms)
    add(functions, `${functionName || "(anonymous)"} ${module}:${lineNumber + 1}`, ms)
  }
  const top = (map: Map<string, number>, n: number) => [...map].sort((a, b) => b[1] - a[1]).slice(0, n).map(([k, v]) => [k, Math.round(v * 10) / 10] as const)
  return { totalMs: Math.round(totalMs * 10) / 10, groups: top(groups, 12), modules: top(modules, 15), functions: top(functions, 15) }
}
