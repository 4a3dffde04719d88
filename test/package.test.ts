/**
 * The package as a user installs it. `npm pack` builds the tarball (the
 * `prepare` script runs `npm run build`); a fresh app in a temporary
 * directory outside the repository (so this repository's node_modules cannot
 * be resolved) installs it with the peers at the repository's pinned
 * versions, and then:
 *  - the tarball ships what `exports` points to, and no tests or benches;
 *  - the app's node_modules holds one copy of `effect` and one of
 *    `@effect/platform` (the peers are not duplicated under the package);
 *  - the app (test/fixtures/package-app) compiles with tsc, strict,
 *    `module: NodeNext`, no custom conditions: every entry's types resolve
 *    from dist;
 *  - every entry loads in Node, and the testing entry's engine runs;
 *  - the app's server, which mounts the library in its own HttpRouter, serves
 *    its own route and the protocol's, and a Node client pushes a mutation
 *    that a second, live client receives; SIGTERM stops it cleanly.
 */
import { assert, layer } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { type ChildProcess, spawn } from "node:child_process"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"

const root = NodePath.resolve(import.meta.dirname, "..")
const fixture = NodePath.join(root, "test", "fixtures", "package-app")

interface PackageJson {
  readonly name: string
  readonly version: string
  readonly exports: Record<string, string | Record<string, string>>
  readonly peerDependencies: Record<string, string>
  readonly devDependencies: Record<string, string>
}

const readJson = (path: string): unknown => JSON.parse(NodeFs.readFileSync(path, "utf8"))
const library = readJson(NodePath.join(root, "package.json")) as PackageJson

/**
 * The environment of the npm and node children: without what the `npm test`
 * that runs vitest put there about this package (`npm_package_*`, its local
 * prefix, `INIT_CWD`), so the app's `npm install` sees only the app, and
 * without `NODE_OPTIONS` (custom conditions must not leak into the app).
 * npm's own configuration (`npm_config_cache`, registry, certificates) stays.
 */
const childEnv: NodeJS.ProcessEnv = Object.fromEntries(
  Object.entries(process.env).filter(([key]) =>
    !(key.startsWith("npm_") && !key.startsWith("npm_config_")) &&
    !["npm_config_local_prefix", "npm_config_prefix", "npm_config_call", "INIT_CWD", "NODE_OPTIONS", "NODE_ENV"].includes(key)
  )
)

interface Ran {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** Run a command to its end; interrupting kills it. */
const run = (command: string, args: ReadonlyArray<string>, cwd: string, env: NodeJS.ProcessEnv = childEnv) =>
  Effect.async<Ran>((resume) => {
    let stdout = ""
    let stderr = ""
    const child = spawn(command, args, { cwd, env, stdio: ["ignore", "pipe", "pipe"] })
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()))
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()))
    child.once("error", (error) => resume(Effect.die(error)))
    child.once("close", (code) => resume(Effect.succeed({ code, stdout, stderr })))
    return Effect.sync(() => child.kill("SIGKILL"))
  })

/** Run a command that must succeed within `timeout`; its stdout. */
const runOk = (command: string, args: ReadonlyArray<string>, cwd: string, timeout: Duration.DurationInput) =>
  run(command, args, cwd).pipe(
    Effect.timeoutFail({ duration: timeout, onTimeout: () => new Error(`${command} ${args.join(" ")}: timed out after ${Duration.format(timeout)}`) }),
    Effect.filterOrFail(
      (ran) => ran.code === 0,
      (ran) => new Error(`${command} ${args.join(" ")} exited ${ran.code}:\n${ran.stdout}\n${ran.stderr}`)
    ),
    Effect.map((ran) => ran.stdout)
  )

/** The JSON of the `RESULT <json>` line a fixture script prints. */
const resultOf = (stdout: string): unknown => {
  const line = stdout.split("\n").find((l) => l.startsWith("RESULT "))
  if (line === undefined) throw new Error(`no RESULT line in:\n${stdout}`)
  return JSON.parse(line.slice("RESULT ".length))
}

/** Every installed copy of package `name` under `nodeModules`, nested ones included. */
const copiesOf = (nodeModules: string, name: string): ReadonlyArray<string> => {
  const found: Array<string> = []
  const visitPackage = (dir: string, packageName: string) => {
    if (packageName === name) found.push(dir)
    visit(NodePath.join(dir, "node_modules"))
  }
  const visit = (dir: string) => {
    if (!NodeFs.existsSync(dir)) return
    for (const entry of NodeFs.readdirSync(dir, { withFileTypes: true })) {
      if (!entry.isDirectory() || entry.name.startsWith(".")) continue
      if (!entry.name.startsWith("@")) {
        visitPackage(NodePath.join(dir, entry.name), entry.name)
        continue
      }
      for (const scoped of NodeFs.readdirSync(NodePath.join(dir, entry.name), { withFileTypes: true })) {
        if (scoped.isDirectory()) visitPackage(NodePath.join(dir, entry.name, scoped.name), `${entry.name}/${scoped.name}`)
      }
    }
  }
  visit(nodeModules)
  return found
}

/** The packed and installed app, built once for the file; its directory is removed afterwards. */
class PackedApp extends Context.Tag("test/PackedApp")<PackedApp, {
  readonly dir: string
  /** The paths in the tarball. */
  readonly files: ReadonlyArray<string>
  /** Packages of the app's lockfile that have an install script (none was run: `--ignore-scripts`). */
  readonly installScripts: ReadonlyArray<string>
  /** tsc's exit code and output. */
  readonly compiled: Ran
}>() {}

const timed = <A, E, R>(step: string, self: Effect.Effect<A, E, R>) =>
  Effect.timed(self).pipe(
    Effect.tap(([duration]) => Effect.sync(() => console.log(`package.test: ${step} took ${Duration.format(Duration.millis(Math.round(Duration.toMillis(duration))))}`))),
    Effect.map(([, a]) => a)
  )

const layerPackedApp = Layer.scoped(
  PackedApp,
  Effect.gen(function*() {
    const tmp = yield* Effect.acquireRelease(
      Effect.sync(() => NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "mizu-package-"))),
      (dir) => Effect.sync(() => NodeFs.rmSync(dir, { recursive: true, force: true }))
    )
    // `--json`: the tarball's name and files on stdout; the build's output goes to stderr
    const packed = yield* timed(
      "npm pack (with the build)",
      runOk("npm", ["pack", "--json", "--pack-destination", tmp], root, "180 seconds")
    )
    const [tarball] = JSON.parse(packed) as ReadonlyArray<{ readonly filename: string; readonly files: ReadonlyArray<{ readonly path: string }> }>

    const dir = NodePath.join(tmp, "app")
    NodeFs.mkdirSync(dir)
    for (const file of NodeFs.readdirSync(fixture)) NodeFs.copyFileSync(NodePath.join(fixture, file), NodePath.join(dir, file))
    const pinned = (name: string) => {
      const version = library.devDependencies[name]
      if (version === undefined) throw new Error(`${name} has no devDependency to pin the app's version to`)
      return [name, version] as const
    }
    NodeFs.writeFileSync(
      NodePath.join(dir, "package.json"),
      JSON.stringify(
        {
          name: "package-app",
          private: true,
          type: "module",
          dependencies: {
            [library.name]: `file:${NodePath.join(tmp, tarball.filename)}`,
            ...Object.fromEntries(Object.keys(library.peerDependencies).map(pinned)),
            ...Object.fromEntries(["typescript", "@types/node"].map(pinned))
          }
        },
        null,
        2
      )
    )
    // what a Node app has: no DOM lib, no custom conditions; skipLibCheck as
    // `tsc --init` sets it (@effect/platform's own .d.ts need the DOM lib)
    NodeFs.writeFileSync(
      NodePath.join(dir, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          target: "ES2022",
          lib: ["ES2022"],
          module: "NodeNext",
          moduleResolution: "NodeNext",
          strict: true,
          skipLibCheck: true,
          types: ["node"],
          outDir: "build",
          noEmitOnError: true
        },
        include: ["*.ts"]
      })
    )

    // --ignore-scripts: better-sqlite3's install script compiles it from
    // source (~60 s here). Its compiled addon is copied from this
    // repository's own install of the same version instead; the test below
    // checks which other packages have an install script and why they need
    // none. --prefer-offline: the packages are in npm's cache from `npm ci`.
    yield* timed(
      "npm install (app)",
      runOk("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline", "--ignore-scripts"], dir, "180 seconds")
    )
    const sqliteVersion = (base: string) => (readJson(NodePath.join(base, "node_modules", "better-sqlite3", "package.json")) as PackageJson).version
    assert.strictEqual(sqliteVersion(dir), sqliteVersion(root), "the app's better-sqlite3 is the repository's version")
    const addon = NodePath.join("node_modules", "better-sqlite3", "build", "Release", "better_sqlite3.node")
    NodeFs.mkdirSync(NodePath.dirname(NodePath.join(dir, addon)), { recursive: true })
    NodeFs.copyFileSync(NodePath.join(root, addon), NodePath.join(dir, addon))

    const lock = readJson(NodePath.join(dir, "package-lock.json")) as {
      readonly packages: Record<string, { readonly hasInstallScript?: boolean }>
    }
    const installScripts = Object.entries(lock.packages)
      .filter(([, entry]) => entry.hasInstallScript === true)
      .map(([path]) => path.replace(/^.*node_modules\//, ""))
      .sort()

    const compiled = yield* timed(
      "tsc (app)",
      run(process.execPath, [NodePath.join(dir, "node_modules", "typescript", "bin", "tsc"), "-p", dir], dir)
    )
    return { dir, files: tarball.files.map((f) => f.path), installScripts, compiled }
  })
)

interface Server {
  readonly url: string
  readonly child: ChildProcess
  readonly output: () => string
}

/** Start the app's compiled server on a random port; killed when the scope closes if still running. */
const startServer = (dir: string, databaseFile: string) =>
  Effect.acquireRelease(
    Effect.async<Server, Error>((resume) => {
      let output = ""
      const child = spawn(process.execPath, [NodePath.join(dir, "build", "server.js")], {
        cwd: dir,
        env: { ...childEnv, PORT: "0", HOST: "127.0.0.1", DATABASE_FILE: databaseFile },
        stdio: ["ignore", "pipe", "pipe"]
      })
      const onOutput = (chunk: Buffer) => {
        output += chunk.toString()
        const listening = /Listening on (http:\/\/[^\s"]+)/.exec(output)
        if (listening !== null) resume(Effect.succeed({ url: listening[1], child, output: () => output }))
      }
      child.stdout.on("data", onOutput)
      child.stderr.on("data", onOutput)
      child.once("exit", (code) => resume(Effect.fail(new Error(`the app's server exited (${code}) before listening:\n${output}`))))
      return Effect.sync(() => child.kill("SIGKILL"))
    }).pipe(
      Effect.timeoutFail({ duration: "30 seconds", onTimeout: () => new Error("the app's server did not log its address in 30 s") })
    ),
    (server) => Effect.sync(() => server.child.exitCode === null && server.child.signalCode === null && server.child.kill("SIGKILL"))
  )

/** Stop the server with `signal`; its exit code (null: killed by the signal). */
const stop = (server: Server, signal: NodeJS.Signals) =>
  Effect.async<number | null>((resume) => {
    if (server.child.exitCode !== null || server.child.signalCode !== null) return resume(Effect.succeed(server.child.exitCode))
    server.child.once("exit", (code) => resume(Effect.succeed(code)))
    server.child.kill(signal)
  })

const post = (url: string, body: unknown) =>
  Effect.promise(async () => {
    const response = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) })
    return { status: response.status, body: await response.json() as unknown }
  })

const get = (url: string) =>
  Effect.promise(async () => {
    const response = await fetch(url)
    return { status: response.status, contentType: response.headers.get("content-type"), text: await response.text() }
  })

layer(layerPackedApp, { timeout: "240 seconds", excludeTestServices: true })("the packed package in a fresh app", (it) => {
  it.effect("the tarball ships every export's target and the browser runtime, and no tests, benches or examples", () =>
    Effect.gen(function*() {
      const { files } = yield* PackedApp
      const targets = Object.values(library.exports).flatMap((entry) =>
        typeof entry === "string" ? [entry] : Object.entries(entry).filter(([condition]) => condition !== "source").map(([, target]) => target)
      )
      for (const target of [...targets, "./dist/runtime.js"]) {
        assert.include(files, target.replace(/^\.\//, ""), `${target} is in the tarball`)
      }
      assert.deepStrictEqual(files.filter((f) => /^(test|bench|examples|dist\/examples|dist\/test|scripts)\//.test(f)), [])
    }))

  it.effect("the app's node_modules holds one copy of effect and one of @effect/platform", () =>
    Effect.gen(function*() {
      const { dir } = yield* PackedApp
      const nodeModules = NodePath.join(dir, "node_modules")
      // the Effect packages are the app's (peers), never the library's own: an
      // app on another patch version must not get a second copy
      const installed = readJson(NodePath.join(nodeModules, ...library.name.split("/"), "package.json")) as PackageJson & {
        readonly dependencies: Record<string, string>
      }
      for (const peer of ["effect", "@effect/platform", "@effect/platform-node", "@effect/sql", "@effect/sql-sqlite-node", "@effect/sql-pg"]) {
        assert.property(installed.peerDependencies, peer)
        assert.notProperty(installed.dependencies, peer)
      }
      for (const name of ["effect", "@effect/platform"]) {
        assert.deepStrictEqual(copiesOf(nodeModules, name), [NodePath.join(nodeModules, ...name.split("/"))], `one copy of ${name}`)
      }
    }))

  it.effect("better-sqlite3's is the only install script the app needs", () =>
    Effect.gen(function*() {
      const { installScripts } = yield* PackedApp
      // msgpackr-extract (via @effect/platform's msgpackr) and @parcel/watcher
      // (via @effect/platform-node-shared) load prebuilt binaries from their
      // optional per-platform packages; their install scripts only compile
      // from source when no prebuilt one exists (or when asked to).
      assert.deepStrictEqual(installScripts, ["@parcel/watcher", "better-sqlite3", "msgpackr-extract"])
    }))

  it.effect("the app compiles with tsc (strict, NodeNext, no custom conditions)", () =>
    Effect.gen(function*() {
      const { compiled } = yield* PackedApp
      assert.strictEqual(`${compiled.stdout}${compiled.stderr}`, "")
      assert.strictEqual(compiled.code, 0)
    }))

  it.effect("every entry loads; the testing entry's memory engine pushes and pulls", () =>
    Effect.gen(function*() {
      const { dir } = yield* PackedApp
      const result = resultOf(yield* runOk(process.execPath, [NodePath.join(dir, "build", "entries.js")], dir, "30 seconds"))
      assert.deepStrictEqual(result, {
        loaded: {
          server: ["function", "function", "object", "object"],
          client: ["function", "function", "function"],
          clientNode: ["function", "object"],
          shared: ["function", 1]
        },
        pushed: { results: [{ id: 1, ok: true, cursor: 1 }] },
        pulled: 1,
        pokes: 1
      })
    }))

  it.scoped("the app's server serves its route and the library's; a client pushes, a live client gets the poke; SIGTERM stops it", () =>
    Effect.gen(function*() {
      const { dir } = yield* PackedApp
      const server = yield* startServer(dir, NodePath.join(dir, "data", "app.db"))
      const scope = "notes"

      const health = yield* get(`${server.url}/health`)
      assert.deepStrictEqual([health.status, health.text], [200, "ok"])
      assert.deepStrictEqual(yield* post(`${server.url}/_sync/pull`, { scope, cursor: 0 }), {
        status: 200,
        body: { changes: [], cursor: 0, has_more: false, checksum: 0 }
      })
      assert.deepStrictEqual(yield* post(`${server.url}/nope`, {}), {
        status: 404,
        body: { error: { code: "not_found", message: "no such route" } }
      })
      // found next to dist/src/ in the installed package
      const runtime = yield* get(`${server.url}/_live/runtime.js`)
      assert.deepStrictEqual([runtime.status, runtime.contentType], [200, "text/javascript; charset=utf-8"])
      assert.isAbove(runtime.text.length, 1000)

      const client = resultOf(yield* runOk(process.execPath, [NodePath.join(dir, "build", "client.js"), server.url, scope], dir, "30 seconds"))
      const note = ["n1", { id: "n1", text: "from the packed client" }]
      assert.deepStrictEqual(client, { mutationId: 1, alice: [note], bob: [note], pokes: [{ scope, cursor: 1 }], live: "connected" })

      const pulled = yield* post(`${server.url}/_sync/pull`, { scope, cursor: 0 })
      assert.strictEqual(pulled.status, 200)
      assert.deepInclude(pulled.body as object, { cursor: 1, has_more: false })
      assert.deepInclude((pulled.body as { readonly changes: ReadonlyArray<object> }).changes[0], {
        cursor: 1,
        scope,
        entity: "note",
        id: "n1",
        op: "create",
        data: { id: "n1", text: "from the packed client" }
      })

      const code = yield* stop(server, "SIGTERM").pipe(
        Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => new Error(`SIGTERM did not stop the server in 10 s:\n${server.output()}`) })
      )
      assert.strictEqual(code, 0, server.output())
    }))
})
