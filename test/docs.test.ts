/**
 * The public surface is documented and small (issue #16): every export of a
 * public module (anything under `src/` not in an `internal/` folder) has a doc
 * comment with `@since` and `@category`; every `internal/` module says
 * `@internal` in its header and is not re-exported by a package entry.
 *
 * Bad input tried: none — this reads the sources with the TypeScript
 * compiler and lists every export that breaks the rule, so a failure names
 * the file and the export.
 */
import { describe, expect, it } from "@effect/vitest"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import ts from "typescript"

const root = NodePath.resolve(import.meta.dirname, "..")
const src = NodePath.join(root, "src")

const walk = (dir: string): ReadonlyArray<string> =>
  NodeFs.readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(NodePath.join(dir, e.name)) : e.name.endsWith(".ts") ? [NodePath.join(dir, e.name)] : []
  )

const files = walk(src)
const isInternal = (file: string) => file.split(NodePath.sep).includes("internal")
const rel = (file: string) => NodePath.relative(root, file)

const parse = (file: string) => ts.createSourceFile(file, NodeFs.readFileSync(file, "utf8"), ts.ScriptTarget.ES2022, true)

const exported = (node: ts.Node): boolean =>
  ts.canHaveModifiers(node) && (ts.getModifiers(node) ?? []).some((m) => m.kind === ts.SyntaxKind.ExportKeyword)

const tagsOf = (node: ts.Node): ReadonlyArray<string> =>
  ts.getJSDocTags(node).map((t) => t.tagName.text)

const hasDoc = (node: ts.Node): boolean => ts.getJSDocCommentsAndTags(node).length > 0

const nameOf = (node: ts.Node): string => {
  if (ts.isVariableStatement(node)) return node.declarationList.declarations.map((d) => d.name.getText()).join(", ")
  if (ts.isExportDeclaration(node)) return node.getText().slice(0, 60)
  const name = (node as ts.NamedDeclaration).name
  return name === undefined ? node.getText().slice(0, 40) : name.getText()
}

/** Each public export that lacks a doc comment, `@since` or `@category`, as "file: name (what is missing)". */
const undocumented = (file: string): ReadonlyArray<string> => {
  const source = parse(file)
  const problems: Array<string> = []
  for (const statement of source.statements) {
    const isReExport = ts.isExportDeclaration(statement)
    if (!isReExport && !exported(statement)) continue
    // `export * from` / `export { a } from` carry the docs of what they re-export
    if (isReExport && (statement.exportClause === undefined || ts.isNamedExports(statement.exportClause))) continue
    const tags = tagsOf(statement)
    const missing = [
      ...(hasDoc(statement) ? [] : ["doc comment"]),
      ...(tags.includes("since") ? [] : ["@since"]),
      ...(isReExport || tags.includes("category") ? [] : ["@category"])
    ]
    if (missing.length > 0) problems.push(`${rel(file)}: ${nameOf(statement)} (no ${missing.join(", ")})`)
  }
  return problems
}

const entries = ["src/index.ts", "src/shared.ts", "src/client/index.ts", "src/client/node.ts", "src/testing/index.ts"]

describe("public surface", () => {
  it("every export of a public module has a doc comment with @since and @category", () => {
    const problems = files.filter((f) => !isInternal(f)).flatMap(undocumented)
    expect(problems).toEqual([])
  })

  it("every internal module is marked @internal and no package entry re-exports one", () => {
    // the header: the file up to the end of its first comment
    const headerOf = (text: string) => text.slice(0, text.indexOf("*/") + 2)
    const unmarked = files.filter(isInternal).filter((f) => !/@internal\b/.test(headerOf(NodeFs.readFileSync(f, "utf8"))))
    expect(unmarked.map(rel)).toEqual([])
    const leaks = entries.flatMap((entry) => {
      const source = parse(NodePath.join(root, entry))
      return source.statements.flatMap((s) =>
        ts.isExportDeclaration(s) && s.moduleSpecifier !== undefined && ts.isStringLiteral(s.moduleSpecifier) &&
          s.moduleSpecifier.text.includes("/internal/")
          ? [`${entry}: ${s.moduleSpecifier.text}`]
          : []
      )
    })
    expect(leaks).toEqual([])
  })

  it("the server entry does not export the session, the hub or the migrations (machinery, not something a user composes)", () => {
    const source = parse(NodePath.join(root, "src/index.ts"))
    const names = source.statements.flatMap((s) =>
      ts.isExportDeclaration(s) && s.exportClause !== undefined && ts.isNamespaceExport(s.exportClause) ? [s.exportClause.name.text] : []
    )
    expect(names).toContain("Server")
    expect(names.filter((n) => ["Session", "LiveHub", "SqlMigrations"].includes(n))).toEqual([])
  })
})
