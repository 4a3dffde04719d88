/**
 * The child side of `child.ts`: answer the parent's commands over IPC, say
 * `ready`, and exit when the parent goes away (so no child outlives a run).
 */

import type * as Http from "node:http"
import * as Inspector from "node:inspector"
import * as NodeFs from "node:fs"
import * as V8 from "node:v8"
import { type EventLoopUtilization, type IntervalHistogram, monitorEventLoopDelay, performance } from "node:perf_hooks"
import { WebSocketServer } from "ws"

export type Handlers = Record<string, (args: Record<string, unknown>) => unknown>

/** The JSON argument the parent started this child with. */
export const argument = <A>(): A => JSON.parse(process.argv[2] ?? "{}") as A

/** Serve the parent's commands. */
export const serve = (handlers: Handlers): void => {
  if (process.send === undefined) throw new Error("not started by bench/lib/child.ts (no IPC channel)")
  process.on("disconnect", () => process.exit(0))
  process.on("message", (raw) => {
    const msg = raw as { type: string; id: number; cmd: string; args: Record<string, unknown> }
    if (msg.type !== "call") return
    const handler = handlers[msg.cmd] ?? builtins[msg.cmd]
    Promise.resolve()
      .then(() => {
        if (handler === undefined) throw new Error(`unknown command ${msg.cmd}`)
        return handler(msg.args)
      })
      .then(
        (result) => process.send?.({ type: "result", id: msg.id, result }),
        (e: unknown) => process.send?.({ type: "error", id: msg.id, error: e instanceof Error ? e.stack ?? e.message : String(e) })
      )
  })
}

/** Tell the parent this child is ready (with, for example, its port). */
export const ready = (info: Record<string, unknown> = {}): void => {
  process.send?.({ type: "ready", ...info })
}

/** Force full GCs (needs `--expose-gc`) and return heap figures in bytes. */
export const heap = async (): Promise<{ heapUsed: number; external: number; arrayBuffers: number; rss: number }> => {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc === undefined) throw new Error("run with --expose-gc")
  for (let i = 0; i < 4; i++) {
    gc()
    await new Promise((r) => setTimeout(r, 20))
  }
  const m = process.memoryUsage()
  return { heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers, rss: m.rss }
}

let profiler: Inspector.Session | undefined

const post = (session: Inspector.Session, method: string, params?: object) =>
  new Promise<unknown>((resolve, reject) =>
    session.post(method, params, (error, result) => (error === null ? resolve(result) : reject(error)))
  )

let loopDelay: IntervalHistogram | undefined
let loopUse: { elu: EventLoopUtilization; cpu: NodeJS.CpuUsage; at: number; sched: Sched } | undefined

interface Sched {
  readonly runMs: number
  readonly waitMs: number
}
/**
 * The main thread's scheduler statistics (Linux): time on a CPU, and time
 * runnable but waiting for one (other processes had the cores).
 */
const sched = (): Sched => {
  try {
    const [run, wait] = NodeFs.readFileSync(`/proc/self/task/${process.pid}/schedstat`, "utf8").trim().split(/\s+/).map(Number)
    return { runMs: run / 1e6, waitMs: wait / 1e6 }
  } catch {
    return { runMs: Number.NaN, waitMs: Number.NaN }
  }
}

/**
 * Commands every child answers: CPU time used so far; and between
 * `loop-start` and `loop-stop`: event-loop delay, event-loop utilization
 * (the share of wall time the loop was busy) and CPU time / wall time. A busy
 * loop with little CPU means the process was runnable but not running (other
 * processes had the cores).
 */
const builtins: Handlers = {
  /** Memory now, without forcing a GC (for sampling under load), in bytes. */
  mem: () => process.memoryUsage(),
  cpu: () => {
    const u = process.cpuUsage()
    return { userMs: u.user / 1000, systemMs: u.system / 1000, totalMs: (u.user + u.system) / 1000 }
  },
  /** Start the V8 CPU profiler (for investigations: `prof-stop {file}` writes a .cpuprofile). */
  "prof-start": async (args) => {
    profiler = new Inspector.Session()
    profiler.connect()
    await post(profiler, "Profiler.enable")
    await post(profiler, "Profiler.setSamplingInterval", { interval: (args["intervalUs"] as number | undefined) ?? 200 })
    await post(profiler, "Profiler.start")
    return null
  },
  /** Write a heap snapshot (for investigations; see bench/tools/heap-census.ts). */
  snapshot: (args) => {
    const gc = (globalThis as { gc?: () => void }).gc
    gc?.()
    return V8.writeHeapSnapshot(args["file"] as string)
  },
  "prof-stop": async (args) => {
    if (profiler === undefined) return null
    const { profile } = (await post(profiler, "Profiler.stop")) as { profile: unknown }
    profiler.disconnect()
    profiler = undefined
    NodeFs.writeFileSync(args["file"] as string, JSON.stringify(profile))
    return args["file"]
  },
  "loop-start": () => {
    loopDelay?.disable()
    loopDelay = monitorEventLoopDelay({ resolution: 5 })
    loopDelay.enable()
    loopUse = { elu: performance.eventLoopUtilization(), cpu: process.cpuUsage(), at: performance.now(), sched: sched() }
    return null
  },
  "loop-stop": () => {
    const h = loopDelay
    const use = loopUse
    if (h === undefined || use === undefined) return null
    h.disable()
    loopDelay = undefined
    const wallMs = performance.now() - use.at
    const cpu = process.cpuUsage(use.cpu)
    const now = sched()
    const mainRunMs = now.runMs - use.sched.runMs
    const mainRunqueueMs = now.waitMs - use.sched.waitMs
    return {
      /** main thread: on a CPU / runnable waiting for a CPU / neither (idle in epoll, or blocked) */
      mainRunMs,
      mainRunqueueMs,
      mainOffCpuMs: wallMs - mainRunMs - mainRunqueueMs,
      wallMs,
      cpuMs: (cpu.user + cpu.system) / 1000,
      cpuShare: (cpu.user + cpu.system) / 1000 / wallMs,
      loopUtilization: performance.eventLoopUtilization(use.elu).utilization,
      loopDelayP50Ms: h.percentile(50) / 1e6,
      loopDelayP99Ms: h.percentile(99) / 1e6,
      loopDelayMaxMs: h.max / 1e6
    }
  }
}

/** A hand-written server's WebSocket upgrades at `path` go to `wss`; any other upgrade is refused. */
export const upgradeAt = (
  server: Http.Server,
  path: string,
  wss: WebSocketServer
): void => {
  server.on("upgrade", (req, socket, head) => {
    if (req.url !== path) {
      socket.destroy()
      return
    }
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit("connection", ws, req))
  })
}

/** Listen on 127.0.0.1 at a free port, then answer `commands` and tell the parent the port. */
export const listenReady = (server: Http.Server, commands: Parameters<typeof serve>[0]): void => {
  server.listen(0, "127.0.0.1", () => {
    const address = server.address()
    serve(commands)
    ready({ port: typeof address === "object" && address !== null ? address.port : 0, pid: process.pid })
  })
}

/** The hand-written servers' WebSocket server: upgrades handed over by `upgradeAt`, 64 KiB frames, subprotocol `mizu-live-v1` when offered. */
export const liveSocketServer = (): WebSocketServer =>
  new WebSocketServer({
    noServer: true,
    maxPayload: 64 * 1024,
    handleProtocols: (protocols) => (protocols.has("mizu-live-v1") ? "mizu-live-v1" : false)
  })

/** Add `ws` to each scope's subscribers (and to the session's own set); the cursor of each scope, for the REPLY. */
export const subscribe = <S>(
  subscribers: Map<string, Set<S>>,
  ws: S,
  mine: Set<string>,
  scopes: ReadonlyArray<string>,
  headOf: (scope: string) => number
): Record<string, number> => {
  const cursors: Record<string, number> = {}
  for (const scope of scopes) {
    let set = subscribers.get(scope)
    if (set === undefined) subscribers.set(scope, (set = new Set()))
    set.add(ws)
    mine.add(scope)
    cursors[scope] = headOf(scope)
  }
  return cursors
}
