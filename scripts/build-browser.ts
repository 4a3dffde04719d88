/**
 * Browser artifacts, with esbuild:
 *  - dist/runtime.js: the clients + live page runtime (src/client/browser.ts), served at /_live/runtime.js
 *  - dist/examples/todo/mutations.js: the todo example's mutations, compiled (not bundled) for the
 *    browser; its imports resolve to runtime.js through the page's import map.
 */
import * as esbuild from "esbuild"
import * as NodeFs from "node:fs/promises"
import * as NodePath from "node:path"
import { fileURLToPath } from "node:url"

const root = NodePath.resolve(NodePath.dirname(fileURLToPath(import.meta.url)), "..")

/**
 * Each output is written to a temporary file and renamed over the old one, so
 * a server reading `dist/runtime.js` while the build runs again (`npm pack`
 * in test/package.test.ts, during the suite) gets the old file or the new
 * one, never a truncated one.
 */
const writeAtomically = async (result: esbuild.BuildResult<{ write: false }>): Promise<void> => {
  for (const file of result.outputFiles) {
    const temporary = `${file.path}.${process.pid}.tmp`
    await NodeFs.mkdir(NodePath.dirname(file.path), { recursive: true })
    await NodeFs.writeFile(temporary, file.contents)
    await NodeFs.rename(temporary, file.path)
  }
}

export const buildBrowser = async (): Promise<void> => {
  await writeAtomically(await esbuild.build({
    write: false,
    absWorkingDir: root,
    entryPoints: ["src/client/browser.ts"],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    minify: true,
    sourcemap: false,
    conditions: ["source"],
    outfile: "dist/runtime.js",
    logLevel: "warning"
  }))
  await writeAtomically(await esbuild.build({
    write: false,
    absWorkingDir: root,
    entryPoints: ["examples/todo/mutations.ts"],
    bundle: false,
    format: "esm",
    platform: "neutral",
    target: "es2022",
    outfile: "dist/examples/todo/mutations.js",
    logLevel: "warning"
  }))
}

if (process.argv[1] !== undefined && NodePath.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await buildBrowser()
}
