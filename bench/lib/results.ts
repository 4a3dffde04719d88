/**
 * Where benchmark results go: printed tables, and bench/results/<name>.json
 * (with enough context — machine, node, git commit — for the README to quote).
 */
import { execFileSync } from "node:child_process"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { fileURLToPath } from "node:url"

export const benchDir = NodePath.resolve(NodePath.dirname(fileURLToPath(import.meta.url)), "..")
export const repoDir = NodePath.resolve(benchDir, "..")

const git = (args: ReadonlyArray<string>): string => {
  try {
    return execFileSync("git", args, { cwd: repoDir, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim()
  } catch {
    return "unknown"
  }
}

/** The machine and code a result was measured on. */
export const environment = () => ({
  date: new Date().toISOString(),
  node: process.version,
  cpus: NodeOs.cpus().length,
  cpu_model: NodeOs.cpus()[0]?.model ?? "unknown",
  platform: `${process.platform} ${NodeOs.release()}`,
  git_commit: git(["rev-parse", "--short", "HEAD"]),
  // src/ may be edited by others while benchmarks run: say whether it differs from the commit.
  src_dirty: git(["status", "--porcelain", "--", "src"]) !== "",
  // which build of our package the servers ran (lib/child.ts): the compiled one, or src/ through tsx
  package_build: process.env["MIZU_BENCH_SOURCE"] === "1" ? "source (tsx)" : "dist (compiled)"
})

/** Write bench/results/<name>.json. */
export const writeResult = (name: string, data: unknown): string => {
  const dir = NodePath.join(benchDir, "results")
  NodeFs.mkdirSync(dir, { recursive: true })
  const file = NodePath.join(dir, `${name}.json`)
  NodeFs.writeFileSync(file, JSON.stringify({ name, environment: environment(), ...(data as object) }, null, 2) + "\n")
  return file
}

/** Print a table: rows of cells, first row is the header. */
export const printTable = (rows: ReadonlyArray<ReadonlyArray<string>>): void => {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => (r[c] ?? "").length)))
  const line = (r: ReadonlyArray<string>) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join("  ")
  console.log(line(rows[0]))
  console.log(widths.map((w) => "-".repeat(w)).join("  "))
  for (const r of rows.slice(1)) console.log(line(r))
}
