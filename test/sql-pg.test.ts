/**
 * The Postgres layers: the storage, engine and retention suites, and
 * `StorageConfig` choosing Postgres from a `postgres://` DATABASE_URL, all on
 * one fresh database of the local server (see `support/Postgres.ts`).
 */
import { assert, layer } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { ChangeLog } from "../src/sync/ChangeLog.js"
import * as StorageConfig from "../src/sync/StorageConfig.js"
import { engineSuite } from "./suites/EngineSuite.js"
import { retentionSuite } from "./suites/RetentionSuite.js"
import { rememberedFailuresSuite, storageSuites } from "./suites/StorageSuite.js"
import { freshScope } from "./suites/util.js"
import { describePostgres, PgDatabase } from "./support/Postgres.js"

describePostgres("sql storage (postgres)", ({ database, storage }) => {
  storageSuites("postgres", storage())
  engineSuite("postgres", storage())
  retentionSuite("postgres", storage({ maxChangesPerScope: 10 }))
  rememberedFailuresSuite("postgres", storage({ rememberedFailures: 3 }), 3)
  rememberedFailuresSuite("postgres", storage({ rememberedFailures: 0 }), 0)

  layer(database)("StorageConfig (postgres)", (it) => {
    it.effect("DATABASE_URL=postgres://… gives migrated Postgres storage, RETENTION_CHANGES applied", () =>
      Effect.gen(function*() {
        const db = yield* PgDatabase
        const s = freshScope()
        const [head, floor] = yield* Effect.gen(function*() {
          const log = yield* ChangeLog
          yield* log.append(s, [{ entity: "t", id: "a", op: "create", data: 1 }])
          yield* log.append(s, [{ entity: "t", id: "b", op: "create", data: 2 }])
          return [yield* log.head(s), yield* log.floor(s)] as const
        }).pipe(
          Effect.provide(Layer.fresh(StorageConfig.layerConfig)),
          Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["DATABASE_URL", db.url], ["RETENTION_CHANGES", "1"]])))
        )
        assert.deepStrictEqual([head, floor], [2, 1])
      }))
  })
})
