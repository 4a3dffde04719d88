/**
 * Measure an experimental src/ change without touching src/: copy the
 * package (src, examples, bench, package.json, tsconfig.json) to a temporary
 * directory, link node_modules, apply patches from bench/patches/ there, and
 * start benchmark children from the copy (`Child.start(…, { root })`).
 * Imports of "mizu-sync-live" in the copy resolve to the copy's src.
 */
import { execFileSync } from "node:child_process"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { benchDir, repoDir } from "./results.js"

/** A patched copy of the package; returns the copy's bench directory. */
export const prepare = (patches: ReadonlyArray<string>): { readonly benchDir: string; readonly remove: () => void } => {
  const root = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "mizu-patched-"))
  for (const entry of ["src", "examples", "bench", "package.json", "tsconfig.json"]) {
    NodeFs.cpSync(NodePath.join(repoDir, entry), NodePath.join(root, entry), {
      recursive: true,
      filter: (source) => !source.includes(`${NodePath.sep}results${NodePath.sep}`)
    })
  }
  NodeFs.symlinkSync(NodePath.join(repoDir, "node_modules"), NodePath.join(root, "node_modules"))
  for (const patch of patches) {
    const file = NodePath.isAbsolute(patch) ? patch : NodePath.join(benchDir, "patches", patch)
    execFileSync("patch", ["-p1", "--forward", "--silent", "-d", root, "-i", file], { stdio: ["ignore", "inherit", "inherit"] })
  }
  return { benchDir: NodePath.join(root, "bench"), remove: () => NodeFs.rmSync(root, { recursive: true, force: true }) }
}

/** The `--patch=a.diff,b.diff` argument: the patches named and their prepared copy (removed on exit). */
export const fromArgv = (): { readonly patches: ReadonlyArray<string>; readonly tree: ReturnType<typeof prepare> | undefined } => {
  const arg = process.argv.find((a) => a.startsWith("--patch="))?.slice("--patch=".length)
  const patches = arg === undefined ? [] : arg.split(",").filter((p) => p !== "")
  const tree = patches.length === 0 ? undefined : prepare(patches)
  if (tree !== undefined) process.on("exit", () => tree.remove())
  return { patches, tree }
}
