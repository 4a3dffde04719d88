/**
 * The client entries as a browser would get them: bundled by esbuild for the
 * browser platform, with no Node-only module inside, and the bundle itself
 * (the one served as /_live/runtime.js) syncing against a real server.
 */
import { assert, describe, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as esbuild from "esbuild"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { pathToFileURL } from "node:url"
import { WebSocket } from "ws"
import { registry } from "../examples/todo/mutations.js"
import { freshScope } from "./suites/util.js"
import { eventuallyTrue } from "./support/clientHarness.js"
import { BaseUrl, layerMemoryDeps, layerServer } from "./support/TestServer.js"

const root = Path.resolve(import.meta.dirname, "..")

/** Bundle an entry for browsers; its output and the modules that went in. */
const bundle = (entry: string) =>
  Effect.promise(async () => {
    const result = await esbuild.build({
      absWorkingDir: root,
      entryPoints: [entry],
      bundle: true,
      format: "esm",
      platform: "browser",
      target: "es2022",
      minify: true,
      conditions: ["source"],
      write: false,
      metafile: true,
      logLevel: "silent"
    })
    const output = result.outputFiles[0]
    if (output === undefined) throw new Error("no output")
    return { code: output.contents, inputs: Object.keys(result.metafile.inputs) }
  })

const nodeOnly = /(^|\/)node:|@effect\/platform-node|node_modules\/ws\/|better-sqlite3|sql-sqlite-node|src\/client\/node/

/** The bundle's own exports, typed as far as the test uses them. */
interface Bundle {
  readonly Schema: typeof import("effect/Schema")
  readonly Effect: typeof import("effect/Effect")
  readonly Option: typeof import("effect/Option")
  readonly Entity: typeof import("../src/sync/Entity.js")
  readonly Mutation: typeof import("../src/sync/Mutation.js")
  readonly MizuSync: typeof import("../src/client/MizuSync.js").MizuSync
}

describe("client bundles", () => {
  layer(layerServer({ registry, live: { drainPeriod: "10 millis" } }, layerMemoryDeps), { excludeTestServices: true, timeout: 60_000 })("browser", (it) => {
    it.scoped("src/client/index.ts and the runtime entry bundle for browsers with no Node-only module", () =>
      Effect.gen(function*() {
        for (const entry of ["src/client/index.ts", "src/client/browser.ts"]) {
          const { code, inputs } = yield* bundle(entry)
          assert.deepStrictEqual(inputs.filter((i) => nodeOnly.test(i)), [], entry)
          assert.isAbove(code.length, 1000)
        }
      }))

    it.scoped("the runtime bundle syncs with its own Effect: mutations defined with its exports, live pokes included", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const { code } = yield* bundle("src/client/browser.ts")
        const dir = yield* Effect.acquireRelease(
          Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "mizu-bundle-"))),
          (d) => Effect.sync(() => Fs.rmSync(d, { recursive: true, force: true }))
        )
        const file = Path.join(dir, "runtime.js")
        Fs.writeFileSync(file, code)
        const runtime = (yield* Effect.promise(() => import(pathToFileURL(file).href))) as Bundle
        // the page's mutations module, written against the runtime's exports (as with an import map)
        const { Effect: E, Entity, Mutation, Option, Schema } = runtime
        const Todo = Entity.make("todo", Schema.Struct({ id: Schema.String, title: Schema.String, completed: Schema.Boolean }))
        const create = Mutation.make("todo/create", {
          args: Schema.Struct({ id: Schema.String, title: Schema.String }),
          handler: ({ id, title }, tx) =>
            E.gen(function*() {
              if (Option.isSome(yield* tx.get(Todo, id))) return yield* Mutation.reject("exists")
              yield* tx.put(Todo, id, { id, title, completed: false })
            })
        })
        const pageRegistry = Mutation.registry({ entities: [Todo], mutations: [create] })
        const scope = freshScope("todos")
        const open = () =>
          Effect.acquireRelease(
            Effect.promise(() =>
              runtime.MizuSync.open({ baseUrl: base, registry: pageRegistry, storage: "memory", scopes: [scope], live: { baseUrl: base, WebSocket } })
            ),
            (client) => Effect.promise(() => client.close())
          )
        const a = yield* open()
        const b = yield* open()
        yield* Effect.promise(() => a.mutate("todo/create", { id: "x", title: "from the bundle" }, { scope }))
        assert.deepStrictEqual(a.query(scope, "todo"), [["x", { id: "x", title: "from the bundle", completed: false }]])
        yield* eventuallyTrue("b got it through a poke", Effect.sync(() => b.query(scope, "todo").length === 1))
        const rejected = yield* Effect.promise(() => b.mutate("todo/create", { id: "x", title: "again" }, { scope }).then(() => "queued", (e: Error) => e.message))
        assert.include(rejected, "exists")
      }))
  })
})
