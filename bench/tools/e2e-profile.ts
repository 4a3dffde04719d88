/**
 * End to end's idle sample, one server at a time, for an investigation: a
 * reader JOINed to scope `e2e`, a writer; each sample pushes one
 * `todo/create` after a pause (5 ms, as e2e's), the reader pulls on the
 * POKE; prints p50s of push sent → POKE, POKE → the pull response holding
 * the change, push sent → its response, and the server's CPU per sample.
 * Then, with the same pause, a lone pull (cursor 0, limit 1, with the
 * reader's client_id) and its server CPU. With `PROF=1` each server writes a
 * CPU profile of the samples to /tmp/prof/e2e-<server>.cpuprofile and of
 * the lone pulls to /tmp/prof/pull-<server>.cpuprofile (50 µs).
 *
 * `E2E_FLAGS`: node flags for the server (e.g. `--import` of a module that
 * records timestamps).
 *
 * Usage: node --import tsx bench/tools/e2e-profile.ts [mizu,baseline] [--samples=N] [--pause=MS] [--no-pull] [--interval=µs]
 */
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import * as Child from "../lib/child.js"
import * as Db from "../lib/db.js"
import * as Live from "../lib/live.js"
import * as Load from "../lib/load.js"

const servers: Record<string, { readonly script: string; readonly arg: (file: string) => unknown }> = {
  mizu: { script: "servers/mizu.ts", arg: (filename) => ({ filename, tracing: false }) },
  baseline: { script: "servers/baseline-sync.ts", arg: (filename) => ({ filename }) }
}
const option = (name: string, fallback: number) => {
  const found = process.argv.find((a) => a.startsWith(`--${name}=`))
  return found === undefined ? fallback : Number(found.slice(name.length + 3))
}
const names = (process.argv[2] !== undefined && !process.argv[2].startsWith("--") ? process.argv[2] : "mizu,baseline").split(",")
const samples = option("samples", 600)
const pauseMs = option("pause", 5)
/** `--no-pull`: the reader does not pull on the POKE (what the push and its POKE cost without the pull). */
const noPull = process.argv.includes("--no-pull")
const tmp = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "mizu-e2e-prof-"))
process.on("exit", () => NodeFs.rmSync(tmp, { recursive: true, force: true }))
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))
const p50 = (xs: Array<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)].toFixed(3)

for (const name of names) {
  const server = servers[name]
  if (server === undefined) throw new Error(`unknown server ${name} (one of ${Object.keys(servers).join(", ")})`)
  const file = NodePath.join(tmp, `${name}.sqlite`)
  await Db.migrate(file)
  const child = await Child.start(server.script, server.arg(file), { nodeFlags: Child.nodeFlagsFrom("E2E_FLAGS") })
  const port = child.ready["port"] as number
  const writer = Load.client(port, 1)
  const reader = Load.client(port, 1)
  let have = 0
  let onPoke: ((cursor: number, at: number) => void) | undefined
  const joined = await Live.joinScope(port, "e2e", (frame, at) => {
    if (frame.type === 11) onPoke?.(frame.payload["cursor"] as number, at)
  })
  const ws = joined.ws
  have = joined.cursor
  let id = 0
  const sample = async () => {
    const n = ++id
    const t0 = performance.now()
    const poked = new Promise<number>((resolve) => (onPoke = (cursor, at) => cursor > have && resolve(at)))
    const pushed = writer.postOk(
      "/_sync/push",
      JSON.stringify({ client_id: "writer", mutations: [{ id: n, name: "todo/create", scope: "e2e", args: { id: `t${n}`, title: "x" } }] })
    ).then(() => performance.now())
    const pokeAt = await poked
    if (noPull) {
      have = n
      return { poke: pokeAt - t0, pull: 0, push: (await pushed) - t0, e2e: pokeAt - t0 }
    }
    const body = JSON.parse(await reader.postOk("/_sync/pull", JSON.stringify({ scope: "e2e", cursor: have, limit: 100, client_id: "reader" }))) as {
      cursor: number
    }
    const pulledAt = performance.now()
    have = body.cursor
    return { poke: pokeAt - t0, pull: pulledAt - pokeAt, push: (await pushed) - t0, e2e: pulledAt - t0 }
  }
  for (let i = 0; i < 300; i++) {
    await sample()
    await sleep(pauseMs)
  }
  const prof = process.env["PROF"] === "1"
  if (prof) {
    NodeFs.mkdirSync("/tmp/prof", { recursive: true })
    await child.call("prof-start", { intervalUs: option("interval", 50) })
  }
  const before = await child.call<{ totalMs: number }>("cpu")
  const got: Array<{ poke: number; pull: number; push: number; e2e: number }> = []
  for (let i = 0; i < samples; i++) {
    got.push(await sample())
    await sleep(pauseMs)
  }
  const after = await child.call<{ totalMs: number }>("cpu")
  if (prof) await child.call("prof-stop", { file: `/tmp/prof/e2e-${name}.cpuprofile` })
  console.log(
    `${name.padEnd(8)} e2e p50 ${p50(got.map((s) => s.e2e))} ms: POKE ${p50(got.map((s) => s.poke))}, POKE → pulled ${p50(got.map((s) => s.pull))}, ` +
      `push response ${p50(got.map((s) => s.push))}; server CPU ${((after.totalMs - before.totalMs) / samples).toFixed(3)} ms/sample`
  )
  const pulls: Array<number> = []
  if (prof) await child.call("prof-start", { intervalUs: 50 })
  const beforePull = await child.call<{ totalMs: number }>("cpu")
  for (let i = 0; i < samples; i++) {
    const t0 = performance.now()
    await reader.postOk("/_sync/pull", JSON.stringify({ scope: "e2e", cursor: 0, limit: 1, client_id: "reader" }))
    pulls.push(performance.now() - t0)
    await sleep(pauseMs)
  }
  const afterPull = await child.call<{ totalMs: number }>("cpu")
  if (prof) await child.call("prof-stop", { file: `/tmp/prof/pull-${name}.cpuprofile` })
  console.log(`${name.padEnd(8)} lone pull p50 ${p50(pulls)} ms; server CPU ${((afterPull.totalMs - beforePull.totalMs) / samples).toFixed(3)} ms/pull`)
  ws.terminate()
  writer.close()
  reader.close()
  await child.stop()
}
