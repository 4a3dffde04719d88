/**
 * The storage and engine conformance suites on the Postgres layers, each
 * block on a fresh database of the local server (see `support/Postgres.ts`).
 */
import { engineSuite } from "./suites/EngineSuite.js"
import { storageSuites } from "./suites/StorageSuite.js"
import { describePostgres } from "./support/Postgres.js"

describePostgres("sql storage (postgres)", ({ storage }) => {
  storageSuites("postgres", storage())
  engineSuite("postgres", storage())
})
