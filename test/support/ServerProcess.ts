/**
 * A server in its own OS process (the todo example's server), for tests of
 * several processes: started with the environment given, its URL read from
 * its "listening on" log line, killed when the scope closes (or on demand,
 * with any signal).
 */
import * as Effect from "effect/Effect"
import { type ChildProcess, spawn } from "node:child_process"
import * as NodePath from "node:path"

export interface ServerProcess {
  readonly url: string
  readonly child: ChildProcess
  /** Everything it printed so far. */
  readonly output: () => string
  readonly kill: (signal?: NodeJS.Signals) => Effect.Effect<void>
}

const root = NodePath.resolve(import.meta.dirname, "../..")

const stop = (child: ChildProcess, signal: NodeJS.Signals) =>
  Effect.async<void>((resume) => {
    if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
    child.once("exit", () => resume(Effect.void))
    child.kill(signal)
  })

/** Start `examples/todo/server.ts` (or `script`, relative to `cwd`: the repository by default) with `env` on a free port. */
export const start = (env: Record<string, string>, script = "examples/todo/server.ts", cwd = root) =>
  Effect.acquireRelease(
    Effect.async<ServerProcess, Error>((resume) => {
      let output = ""
      const child = spawn(process.execPath, ["--conditions=source", "--import", "tsx", script], {
        cwd,
        env: { ...process.env, PORT: "0", HOST: "127.0.0.1", ...env },
        stdio: ["ignore", "pipe", "pipe"]
      })
      const timer = setTimeout(() => {
        child.kill("SIGKILL")
        resume(Effect.fail(new Error(`server did not start in 60 s:\n${output}`)))
      }, 60_000)
      const onData = (chunk: Buffer) => {
        output += chunk.toString()
        const match = /listening on (http:\/\/[^\s"]+)/.exec(output)
        if (match !== null) {
          clearTimeout(timer)
          child.stdout?.off("data", onData)
          child.stdout?.on("data", (c: Buffer) => (output += c.toString()))
          resume(Effect.succeed({
            url: match[1].replace("localhost", "127.0.0.1"),
            child,
            output: () => output,
            kill: (signal = "SIGKILL") => stop(child, signal)
          }))
        }
      }
      child.stdout?.on("data", onData)
      child.stderr?.on("data", (c: Buffer) => (output += c.toString()))
      child.once("exit", (code) => {
        clearTimeout(timer)
        resume(Effect.fail(new Error(`server exited (${code}) before listening:\n${output}`)))
      })
    }),
    (server) => stop(server.child, "SIGKILL")
  )
