/**
 * Measure an experimental src/ change without touching src/: copy the
 * package (src, examples, bench, package.json, tsconfig.json) to a temporary
 * directory, link node_modules, apply patches from bench/patches/ there, and
 * start benchmark children from the copy (`Child.start(…, { root })`).
 * Imports of "mizu-sync-live" in the copy resolve to the copy's src.
 *
 * `--rev=<commit>` takes the copy from a git revision instead (`git archive`),
 * so a change is measured before and after in the same run.
 */
import { execFileSync } from "node:child_process"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { benchDir, repoDir } from "./results.js"

/** A patched copy of the package; returns the copy's bench directory. */
export const prepare = (
  patches: ReadonlyArray<string>,
  rev?: string
): { readonly benchDir: string; readonly remove: () => void } => {
  const root = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "mizu-patched-"))
  const entries = ["src", "examples", "bench", "package.json", "tsconfig.json"]
  if (rev !== undefined) {
    const archive = execFileSync("git", ["-C", repoDir, "archive", "--format=tar", rev, ...entries], { maxBuffer: 256 * 1024 * 1024 })
    execFileSync("tar", ["-x", "-C", root], { input: archive })
  } else {
    for (const entry of entries) {
      NodeFs.cpSync(NodePath.join(repoDir, entry), NodePath.join(root, entry), {
        recursive: true,
        filter: (source) => !source.includes(`${NodePath.sep}results${NodePath.sep}`)
      })
    }
  }
  NodeFs.symlinkSync(NodePath.join(repoDir, "node_modules"), NodePath.join(root, "node_modules"))
  for (const patch of patches) {
    const file = NodePath.isAbsolute(patch) ? patch : NodePath.join(benchDir, "patches", patch)
    execFileSync("patch", ["-p1", "--forward", "--silent", "-d", root, "-i", file], { stdio: ["ignore", "inherit", "inherit"] })
  }
  return { benchDir: NodePath.join(root, "bench"), remove: () => NodeFs.rmSync(root, { recursive: true, force: true }) }
}

/**
 * The `--patch=a.diff,b.diff` and `--rev=<commit>` arguments: the patches
 * named, the revision, and their prepared copy (removed on exit).
 */
export const fromArgv = (): {
  readonly patches: ReadonlyArray<string>
  readonly rev: string | undefined
  readonly tree: ReturnType<typeof prepare> | undefined
} => {
  const arg = process.argv.find((a) => a.startsWith("--patch="))?.slice("--patch=".length)
  const rev = process.argv.find((a) => a.startsWith("--rev="))?.slice("--rev=".length)
  const patches = arg === undefined ? [] : arg.split(",").filter((p) => p !== "")
  const tree = patches.length === 0 && rev === undefined ? undefined : prepare(patches, rev)
  if (tree !== undefined) process.on("exit", () => tree.remove())
  return { patches, rev, tree }
}
