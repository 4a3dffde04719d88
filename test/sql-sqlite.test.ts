/**
 * The storage conformance suites on the SQLite layers: in memory, and on a
 * temporary file (WAL, the way servers run it).
 */
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { afterAll } from "@effect/vitest"
import * as SqlStorage from "../src/sync/sql/SqlStorage.js"
import { engineSuite } from "./suites/EngineSuite.js"
import { storageSuites } from "./suites/StorageSuite.js"

const directory = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "mizu-sqlite-"))
afterAll(() => NodeFs.rmSync(directory, { recursive: true, force: true }))

storageSuites("sqlite :memory:", SqlStorage.layerSqlite({ filename: ":memory:" }))
storageSuites("sqlite file", SqlStorage.layerSqlite({ filename: NodePath.join(directory, "nested", "mizu.db") }))
engineSuite("sqlite :memory:", SqlStorage.layerSqlite({ filename: ":memory:" }))
engineSuite("sqlite file", SqlStorage.layerSqlite({ filename: NodePath.join(directory, "engine.db") }))
