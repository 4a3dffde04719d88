/**
 * The retention rule (`RETENTION_CHANGES` / `maxChangesPerScope`), run on
 * each storage family that offers it: a scope never holds more than the
 * maximum, trimming keeps cursors gap-free, and a rolled-back append rolls
 * its trim back too.
 */
import { assert, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Layer from "effect/Layer"
import { ChangeLog } from "../../src/sync/ChangeLog.js"
import { SyncStorage } from "../../src/sync/SyncStorage.js"
import type * as SyncStorageModule from "../../src/sync/SyncStorage.js"
import { freshScope, range } from "./util.js"

/** `storage` must keep at most 10 changes per scope. */
export const retentionSuite = (name: string, storage: Layer.Layer<SyncStorageModule.Services, unknown>) =>
  layer(storage, { timeout: 60_000 })(`retention of 10 changes (${name})`, (it) => {
    it.effect("keeps at most 10 changes per scope, trims to 9, cursors stay gap-free", () =>
      Effect.gen(function*() {
        const log = yield* ChangeLog
        const storage = yield* SyncStorage
        const s = freshScope()
        for (const i of range(25)) {
          yield* storage.transaction(log.append(s, [{ entity: "t", id: String(i), op: "create", data: i }]))
          const head = yield* log.head(s)
          const floor = yield* log.floor(s)
          assert.strictEqual(head, i)
          assert.isAtMost(head - floor, 10)
        }
        // 11 -> trimmed to 9 kept (floor 2), 20 -> floor 11, 25: 14 kept... at most 10 and at least 9 after a trim.
        const floor = yield* log.floor(s)
        const page = yield* log.since(s, floor, 100)
        assert.deepStrictEqual(page.changes.map((c) => c.cursor), range(25).filter((c) => c > floor))
        assert.isAtMost(page.changes.length, 10)
        // A big append trims in the same step.
        yield* log.append(s, range(30).map((i) => ({ entity: "t", id: `b${i}`, op: "create" as const, data: i })))
        assert.strictEqual(yield* log.head(s), 55)
        assert.strictEqual(yield* log.floor(s), 46)
        assert.deepStrictEqual((yield* log.since(s, 46, 100)).changes.map((c) => c.cursor), range(55).filter((c) => c > 46))
      }))

    it.effect("a rolled-back append rolls back its trim", () =>
      Effect.gen(function*() {
        const log = yield* ChangeLog
        const storage = yield* SyncStorage
        const s = freshScope()
        yield* log.append(s, range(10).map((i) => ({ entity: "t", id: String(i), op: "create" as const, data: i })))
        const exit = yield* storage.transaction(
          Effect.zipRight(log.append(s, [{ entity: "t", id: "x", op: "create", data: 0 }]), Effect.fail("boom"))
        ).pipe(Effect.exit)
        assert.isTrue(Exit.isFailure(exit))
        assert.strictEqual(yield* log.head(s), 10)
        assert.strictEqual(yield* log.floor(s), 0)
        assert.deepStrictEqual((yield* log.since(s, 0, 100)).changes.map((c) => c.cursor), range(10))
      }))
  })
