/**
 * The SQLite layers: the storage and engine conformance suites in memory and
 * on a temporary file (WAL, the way servers run it), retention, and
 * `StorageConfig` (choosing a family from `DATABASE_URL`).
 */
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as SqlClient from "@effect/sql/SqlClient"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as Cause from "effect/Cause"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Deferred from "effect/Deferred"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Redacted from "effect/Redacted"
import { ChangeLog } from "../src/sync/ChangeLog.js"
import { Clients } from "../src/sync/Clients.js"
import * as SqlStorage from "../src/sync/sql/SqlStorage.js"
import * as StorageConfig from "../src/sync/StorageConfig.js"
import * as SyncStorage from "../src/sync/SyncStorage.js"
import { engineSuite } from "./suites/EngineSuite.js"
import { retentionSuite } from "./suites/RetentionSuite.js"
import { rememberedFailuresSuite, storageSuites } from "./suites/StorageSuite.js"

const directory = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "mizu-sqlite-"))
afterAll(() => NodeFs.rmSync(directory, { recursive: true, force: true }))

storageSuites("sqlite :memory:", SqlStorage.layerSqlite({ filename: ":memory:" }))
storageSuites("sqlite file", SqlStorage.layerSqlite({ filename: NodePath.join(directory, "nested", "mizu.db") }))
engineSuite("sqlite :memory:", SqlStorage.layerSqlite({ filename: ":memory:" }))
engineSuite("sqlite file", SqlStorage.layerSqlite({ filename: NodePath.join(directory, "engine.db") }))
retentionSuite("sqlite", SqlStorage.layerSqlite({ filename: ":memory:", maxChangesPerScope: 10 }))
rememberedFailuresSuite("sqlite", SqlStorage.layerSqlite({ filename: ":memory:", rememberedFailures: 3 }), 3)
rememberedFailuresSuite("sqlite", SqlStorage.layerSqlite({ filename: ":memory:", rememberedFailures: 0 }), 0)
retentionSuite("memory, StorageConfig.withRetention", StorageConfig.withRetention(10)(SyncStorage.layerMemory))

/** Build `StorageConfig.layerConfig` under the given environment and run `use` on it. */
const withEnv = <A, E>(env: Record<string, string>, use: Effect.Effect<A, E, SyncStorage.Services>) =>
  Layer.build(StorageConfig.layerConfig).pipe(
    Effect.flatMap((context) => Effect.provide(use, context)),
    Effect.scoped,
    Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))
  )

const appendTwice = Effect.gen(function*() {
  const log = yield* ChangeLog
  yield* log.append("s", [{ entity: "t", id: "a", op: "create", data: 1 }])
  yield* log.append("s", [{ entity: "t", id: "b", op: "create", data: 2 }])
  return [yield* log.head("s"), yield* log.floor("s")] as const
})

describe("StorageConfig", () => {
  it("parses DATABASE_URL", () => {
    const ok = (input: string) => Either.getOrThrow(StorageConfig.parseDatabaseUrl(input))
    assert.deepStrictEqual(ok("memory"), { _tag: "Memory" })
    assert.deepStrictEqual(ok("./data/x.db"), { _tag: "Sqlite", filename: "./data/x.db" })
    assert.deepStrictEqual(ok("/var/lib/mizu.db"), { _tag: "Sqlite", filename: "/var/lib/mizu.db" })
    assert.deepStrictEqual(ok("sqlite:./data/x.db"), { _tag: "Sqlite", filename: "./data/x.db" })
    assert.deepStrictEqual(ok("sqlite::memory:"), { _tag: "Sqlite", filename: ":memory:" })
    assert.deepStrictEqual(ok("sqlite:///abs/x.db"), { _tag: "Sqlite", filename: "/abs/x.db" })
    const pg = ok("postgres://u:secret@db:5432/app")
    assert.strictEqual(pg._tag, "Postgres")
    if (pg._tag === "Postgres") assert.strictEqual(Redacted.value(pg.url), "postgres://u:secret@db:5432/app")
    assert.strictEqual(ok("postgresql://db/app")._tag, "Postgres")
    assert.isTrue(Either.isLeft(StorageConfig.parseDatabaseUrl("mysql://db/app")))
    assert.isTrue(Either.isLeft(StorageConfig.parseDatabaseUrl("sqlite:")))
    assert.isTrue(Either.isLeft(StorageConfig.parseDatabaseUrl(" ")))
  })

  it.effect("defaults to SQLite at ./data/mizu.db", () =>
    Effect.gen(function*() {
      const target = yield* StorageConfig.databaseTarget
      assert.deepStrictEqual(target, { _tag: "Sqlite", filename: "./data/mizu.db" })
    }).pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map()))))

  it.effect("memory, sqlite::memory: and a file path (its directory created) all give working storage", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* withEnv({ DATABASE_URL: "memory" }, appendTwice), [2, 0])
      assert.deepStrictEqual(yield* withEnv({ DATABASE_URL: "sqlite::memory:" }, appendTwice), [2, 0])
      const file = NodePath.join(directory, "config", "deeper", "x.db")
      assert.deepStrictEqual(yield* withEnv({ DATABASE_URL: file }, appendTwice), [2, 0])
      assert.isTrue(NodeFs.existsSync(file))
      // The data survives a restart.
      assert.deepStrictEqual(yield* withEnv({ DATABASE_URL: `sqlite:${file}` }, appendTwice), [4, 0])
    }))

  it.effect("RETENTION_CHANGES applies to every family", () =>
    Effect.gen(function*() {
      const keepOne = { RETENTION_CHANGES: "1" }
      assert.deepStrictEqual(yield* withEnv({ ...keepOne, DATABASE_URL: "memory" }, appendTwice), [2, 1])
      assert.deepStrictEqual(yield* withEnv({ ...keepOne, DATABASE_URL: "sqlite::memory:" }, appendTwice), [2, 1])
    }))

  it.effect("durable mode: SqlStorage's synchronous option sets the connection's PRAGMA; NORMAL by default", () =>
    Effect.gen(function*() {
      const pragma = Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe<{ synchronous: number }>("PRAGMA synchronous"))
      const full = yield* pragma.pipe(Effect.provide(SqlStorage.layerSqlite({ filename: ":memory:", synchronous: "FULL" })))
      const normal = yield* pragma.pipe(Effect.provide(SqlStorage.layerSqlite({ filename: ":memory:" })))
      // SQLite answers 2 for FULL and 1 for NORMAL
      assert.deepStrictEqual([full[0].synchronous, normal[0].synchronous], [2, 1])
    }))

  it.effect("SQLITE_SYNCHRONOUS=FULL reaches the SQLite layer (its start log says so); a bad value fails naming it", () =>
    Effect.gen(function*() {
      const file = NodePath.join(directory, "durable.db")
      const logged: Array<string> = []
      const capture = Logger.replace(Logger.defaultLogger, Logger.make(({ message }) => logged.push(String(message))))
      const appended = yield* withEnv({ DATABASE_URL: file, SQLITE_SYNCHRONOUS: "FULL" }, appendTwice).pipe(Effect.provide(capture))
      assert.deepStrictEqual(appended, [2, 0])
      assert.isTrue(logged.some((m) => m.includes(`sqlite ${file} (synchronous = FULL)`)), logged.join("\n"))
      const bad = yield* Effect.exit(withEnv({ DATABASE_URL: file, SQLITE_SYNCHRONOUS: "ALWAYS" }, appendTwice))
      assert.isTrue(Exit.isFailure(bad))
      assert.include(String(Exit.isFailure(bad) ? bad.cause : ""), "SQLITE_SYNCHRONOUS")
    }))

  it.effect("a bad DATABASE_URL or RETENTION_CHANGES fails at start with a ConfigError naming it", () =>
    Effect.gen(function*() {
      const scheme = yield* Effect.exit(withEnv({ DATABASE_URL: "mysql://db/app" }, appendTwice))
      assert.isTrue(Exit.isFailure(scheme))
      assert.include(String(Exit.isFailure(scheme) ? scheme.cause : ""), "DATABASE_URL")
      assert.include(String(Exit.isFailure(scheme) ? scheme.cause : ""), "unsupported database scheme")
      const retention = yield* Effect.exit(withEnv({ DATABASE_URL: "memory", RETENTION_CHANGES: "0" }, appendTwice))
      assert.isTrue(Exit.isFailure(retention))
      assert.include(String(Exit.isFailure(retention) ? retention.cause : ""), "RETENTION_CHANGES")
    }))
})

describe("the pull read on SQLite", () => {
  // Our connection reads a pull with two plain statements in one read transaction and builds the page's
  // JSON around the stored text; any other SQLite client runs the one aggregate statement Postgres runs.
  // Both read the same file here, so every answer must be the same.
  it.scopedLive("the two-statement read on our connection answers what the one-statement read answers, on the same file", () =>
    Effect.gen(function*() {
      const filename = NodePath.join(directory, "pull-read.db")
      const ours = yield* Layer.build(SqlStorage.layerSqlite({ filename }))
      const log = Context.get(ours, ChangeLog)
      const clients = Context.get(ours, Clients)
      // creates, an update, a delete (no data), awkward strings and nested data, in two scopes
      yield* log.append("s", [
        { entity: "todo", id: "a", op: "create", data: { title: "plain", n: 1 } },
        { entity: "todo", id: "quote\"and\\back", op: "create", data: { title: "é 😀 \u2028 <tag>", deep: [{ x: [1, null, true] }] } },
        { entity: "note", id: "a", op: "create", data: "just a string" }
      ])
      yield* log.append("s", [{ entity: "todo", id: "a", op: "update", data: { title: "changed", n: 2 } }])
      yield* log.append("s", [{ entity: "todo", id: "a", op: "delete" }])
      yield* log.append("other", [{ entity: "todo", id: "z", op: "create", data: 0 }])
      yield* clients.claim("c1", "alice")
      yield* clients.recordAll("c1", [{ id: 1, scope: "s" }, { id: 2, scope: "other" }, { id: 3, scope: "s" }])
      const theirs = yield* Layer.build(
        SqlStorage.layer().pipe(Layer.provide(SqliteClient.layer({ filename })))
      )
      const readOurs = Context.get(ours, SyncStorage.SyncStorage).readPull
      const readTheirs = Context.get(theirs, SyncStorage.SyncStorage).readPull
      assert.isDefined(readOurs)
      assert.isDefined(readTheirs)
      if (readOurs === undefined || readTheirs === undefined) return
      const cases: ReadonlyArray<readonly [string, number, number, string | undefined]> = [
        ["s", 0, 100, "c1"],
        ["s", 0, 2, "c1"],
        ["s", 2, 1, undefined],
        ["s", 5, 100, "c1"],
        ["s", 9, 100, "c1"],
        ["other", 0, 100, "c1"],
        ["other", 0, 100, "nobody"],
        ["empty", 0, 100, undefined],
        ["s", 0, 0, "c1"]
      ]
      for (const [scope, cursor, limit, clientId] of cases) {
        const mine = yield* readOurs(scope, cursor, limit, clientId)
        const other = yield* readTheirs(scope, cursor, limit, clientId)
        assert.deepStrictEqual(mine, other, `${scope} from ${cursor}, limit ${limit}, client ${clientId}`)
        // the page is the wire's JSON, and what the log holds
        const page = yield* log.since(scope, cursor, limit)
        assert.deepStrictEqual(JSON.parse(mine.changesJson), JSON.parse(JSON.stringify(page.changes)))
      }
      const first = yield* readOurs("s", 0, 100, "c1")
      assert.strictEqual(first.count, 5)
      assert.strictEqual(first.lastId, 3)
      assert.strictEqual(first.owner, "alice")
    }))

  it.scopedLive("a pull read while another fiber's transaction is open waits for its commit and never sees its uncommitted change", () =>
    Effect.gen(function*() {
      const filename = NodePath.join(directory, "pull-wait.db")
      const ours = yield* Layer.build(SqlStorage.layerSqlite({ filename }))
      const log = Context.get(ours, ChangeLog)
      const storage = Context.get(ours, SyncStorage.SyncStorage)
      const readPull = storage.readPull
      if (readPull === undefined) return assert.fail("no readPull on SQLite")
      yield* log.append("s", [{ entity: "todo", id: "a", op: "create", data: 1 }])
      const appended = yield* Deferred.make<void>()
      const gate = yield* Deferred.make<void>()
      // a transaction that appends, then waits (an asynchronous mutator would): the connection's permit stays held
      const writer = yield* Effect.fork(storage.transaction(
        Effect.zipRight(log.append("s", [{ entity: "todo", id: "b", op: "create", data: 2 }]), Effect.zipRight(Deferred.succeed(appended, undefined), Deferred.await(gate)))
      ))
      yield* Deferred.await(appended)
      const reader = yield* Effect.fork(readPull("s", 0, 100, undefined))
      for (let i = 0; i < 10; i++) yield* Effect.yieldNow()
      // blocked on the permit (not a timing guess: the writer holds it until the gate opens)
      assert.isTrue(Option.isNone(yield* Fiber.poll(reader)), "the read did not wait for the open transaction")
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(writer)
      const read = yield* Fiber.join(reader)
      assert.strictEqual(read.count, 2)
      assert.strictEqual(read.head, 2)
    }))

  it.scopedLive("stored change data that is not JSON fails the read as corrupt, never a defect or a broken page", () =>
    Effect.gen(function*() {
      const filename = NodePath.join(directory, "pull-corrupt.db")
      const ours = yield* Layer.build(SqlStorage.layerSqlite({ filename }))
      yield* Context.get(ours, ChangeLog).append("s", [{ entity: "todo", id: "a", op: "create", data: { title: "x" } }])
      const sql = Context.get(ours, SqlClient.SqlClient)
      yield* sql.unsafe("UPDATE mizu_changes SET data = '{not json' WHERE scope = 's'")
      const readPull = Context.get(ours, SyncStorage.SyncStorage).readPull
      if (readPull === undefined) return assert.fail("no readPull on SQLite")
      const exit = yield* Effect.exit(readPull("s", 0, 100, undefined))
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit)) {
        const error = Cause.failureOption(exit.cause)
        assert.isTrue(error._tag === "Some" && error.value.reason === "corrupt", String(exit.cause))
      }
      // the connection is usable afterwards (the read transaction was closed)
      assert.strictEqual((yield* readPull("other", 0, 100, undefined)).count, 0)
    }))
})
