/**
 * Child processes of a benchmark (servers, load clients), driven over IPC.
 *
 * Every child runs its script through tsx (`--import tsx`). Our package
 * (`mizu-sync-live`) is the compiled one (`dist/`, what an app that installed
 * it runs; `npm run bench` builds it first) unless the child runs from
 * source: `source: true`, `MIZU_BENCH_SOURCE=1` (`npm run bench -- --source`),
 * or a patched or older copy (`root`), which has no build. A child talks JSON messages over the IPC
 * channel, and exits when its parent goes away (see `control.ts`). The
 * parent stops each child by its own pid, SIGTERM first and SIGKILL after a
 * grace period, and kills every child still running when it exits.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as NodePath from "node:path"
import { benchDir } from "./results.js"

export interface Child {
  readonly pid: number
  /** Send a command and wait for its answer. */
  readonly call: <A = unknown>(cmd: string, args?: Record<string, unknown>, timeoutMs?: number) => Promise<A>
  /** The message the child sent with `ready` (for example its port). */
  readonly ready: Record<string, unknown>
  /** Stop the child (SIGTERM, then SIGKILL after `graceMs`). */
  readonly stop: (graceMs?: number) => Promise<void>
}

const running = new Set<ChildProcess>()
process.on("exit", () => {
  for (const child of running) {
    if (child.exitCode === null && child.pid !== undefined) {
      try {
        process.kill(child.pid, "SIGKILL")
      } catch {
        // already gone
      }
    }
  }
})

export interface SpawnOptions {
  /** Extra node flags, e.g. `--expose-gc`. */
  readonly nodeFlags?: ReadonlyArray<string>
  /** Run the child through `sh -c "ulimit -n N; exec node …"`. */
  readonly fdLimit?: number
  /** How long to wait for `ready`. */
  readonly readyTimeoutMs?: number
  /** Another bench directory to start the script from (a patched copy, see `patched.ts`); it runs from source. */
  readonly root?: string
  /**
   * Resolve `mizu-sync-live` to `src/` through tsx (`--conditions=source`)
   * instead of `dist/`: for a comparison with a copy at another revision,
   * which runs from source, so both sides pay the same loader.
   */
  readonly source?: boolean
}

/** Whether children run our package from source (see the header). */
export const sourceByDefault = process.env["MIZU_BENCH_SOURCE"] === "1"

/** The loader flags of a child or a benchmark process: tsx, and the `source` condition when it runs from source. */
export const loaderFlags = (source: boolean): ReadonlyArray<string> => source ? ["--conditions=source", "--import", "tsx"] : ["--import", "tsx"]

/** Node flags for a child from the environment variable `name` (space-separated; none when it is unset), for the tools' investigations. */
export const nodeFlagsFrom = (name: string): ReadonlyArray<string> => (process.env[name] ?? "").split(" ").filter((flag) => flag !== "")

/** Start `bench/<script>` with a JSON argument; resolves once the child says `ready`. */
export const start = (script: string, arg: unknown, options: SpawnOptions = {}): Promise<Child> => {
  const file = NodePath.join(options.root ?? benchDir, script)
  const source = options.root !== undefined || options.source === true || sourceByDefault
  const nodeArgs = [...loaderFlags(source), ...(options.nodeFlags ?? []), file, JSON.stringify(arg)]
  const child = options.fdLimit === undefined
    ? spawn(process.execPath, nodeArgs, { stdio: ["ignore", "inherit", "inherit", "ipc"] })
    : spawn(
      "sh",
      ["-c", `ulimit -n ${options.fdLimit} 2>/dev/null || ulimit -n $(ulimit -Hn); exec "$0" "$@"`, process.execPath, ...nodeArgs],
      { stdio: ["ignore", "inherit", "inherit", "ipc"] }
    )
  running.add(child)
  const pending = new Map<number, { resolve: (a: unknown) => void; reject: (e: Error) => void }>()
  let nextId = 1
  const exited = new Promise<void>((resolve) =>
    child.once("exit", (code, signal) => {
      running.delete(child)
      for (const p of pending.values()) p.reject(new Error(`${script} exited (${code ?? signal}) before answering`))
      pending.clear()
      resolve()
    })
  )
  return new Promise<Child>((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`${script} not ready after ${options.readyTimeoutMs ?? 60_000} ms`))
      child.kill("SIGKILL")
    }, options.readyTimeoutMs ?? 60_000)
    child.once("exit", (code, signal) => {
      clearTimeout(timer)
      reject(new Error(`${script} exited (${code ?? signal}) before it was ready`))
    })
    child.on("message", (raw) => {
      const msg = raw as { type: string; id?: number; result?: unknown; error?: string }
      if (msg.type === "ready") {
        clearTimeout(timer)
        const pid = child.pid as number
        resolve({
          pid,
          ready: msg as Record<string, unknown>,
          call: <A>(cmd: string, args: Record<string, unknown> = {}, timeoutMs = 120_000) =>
            new Promise<A>((res, rej) => {
              const id = nextId++
              const t = setTimeout(() => {
                pending.delete(id)
                rej(new Error(`${script}: ${cmd} timed out after ${timeoutMs} ms`))
              }, timeoutMs)
              pending.set(id, {
                resolve: (a) => {
                  clearTimeout(t)
                  res(a as A)
                },
                reject: (e) => {
                  clearTimeout(t)
                  rej(e)
                }
              })
              child.send({ type: "call", id, cmd, args })
            }),
          stop: async (graceMs = 3000) => {
            if (child.exitCode !== null || child.signalCode !== null) return
            child.kill("SIGTERM")
            const timeout = new Promise<"timeout">((r) => setTimeout(() => r("timeout"), graceMs).unref())
            if ((await Promise.race([exited, timeout])) === "timeout") {
              child.kill("SIGKILL")
              await exited
            }
          }
        })
      } else if (msg.type === "result" || msg.type === "error") {
        const p = pending.get(msg.id as number)
        if (p === undefined) return
        pending.delete(msg.id as number)
        if (msg.type === "result") p.resolve(msg.result)
        else p.reject(new Error(`${script}: ${msg.error}`))
      }
    })
  })
}
