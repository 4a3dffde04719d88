/**
 * The `Operator` conformance suite on every storage family: memory, SQLite
 * (in memory and on a file) and Postgres (a fresh database; skipped with one
 * line without a server, a failure under CI=true), and through
 * `StorageConfig.withRetention` (which must keep the family's Operator).
 * No wire input reaches the service (AdminHttp decodes it first; see
 * test/admin.test.ts), so the bad input tried here is a limit out of range.
 */
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { afterAll } from "@effect/vitest"
import * as SqlStorage from "../src/sync/sql/SqlStorage.js"
import * as StorageConfig from "../src/sync/StorageConfig.js"
import * as SyncStorage from "../src/sync/SyncStorage.js"
import { operatorSuite } from "./suites/OperatorSuite.js"
import { describePostgres } from "./support/Postgres.js"

const directory = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "mizu-operator-"))
afterAll(() => NodeFs.rmSync(directory, { recursive: true, force: true }))

operatorSuite("memory", SyncStorage.layerMemory)
operatorSuite("memory, withRetention", StorageConfig.withRetention(1000)(SyncStorage.layerMemory))
operatorSuite("sqlite :memory:", SqlStorage.layerSqlite({ filename: ":memory:" }))
operatorSuite("sqlite file", SqlStorage.layerSqlite({ filename: NodePath.join(directory, "operator.db") }))

describePostgres("Operator (postgres)", ({ storage }) => {
  operatorSuite("postgres", storage())
})
