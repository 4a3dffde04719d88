/**
 * Connection URLs carry passwords: a `DATABASE_URL` or `PUBSUB_URL` that is
 * unparsable, unsupported or unreachable is reported (error, cause chain,
 * logs) with the password as `***`, never as given.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as NodeUtil from "node:util"
import * as PubSubConfig from "../src/live/PubSubConfig.js"
import * as RedisPubSub from "../src/live/redis/RedisPubSub.js"
import * as ConnectionUrl from "../src/sync/ConnectionUrl.js"
import * as StorageConfig from "../src/sync/StorageConfig.js"

const SECRET = "s3cret-Pw"

/**
 * Build `layer` under `env`; everything a user could see of the failure: the
 * pretty cause (what `runMain` prints), the whole cause object inspected
 * (what `console.error(error)` prints, own properties of every nested cause
 * included) and every log line.
 */
const failureText = <A, E>(layer: Layer.Layer<A, E>, env: Record<string, string>) =>
  Effect.gen(function*() {
    const logs: Array<string> = []
    const logger = Logger.make(({ message }) => {
      logs.push(NodeUtil.inspect(message, { depth: 20 }))
    })
    const exit = yield* Layer.build(layer).pipe(
      Effect.scoped,
      Effect.timeout("20 seconds"),
      Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env)))),
      Effect.provide(Logger.replace(Logger.defaultLogger, logger)),
      Effect.exit
    )
    assert.isTrue(Exit.isFailure(exit), `${JSON.stringify(env)} should fail`)
    const cause = Exit.isFailure(exit) ? exit.cause : Cause.empty
    return [
      Cause.pretty(cause, { renderErrorCause: true }),
      NodeUtil.inspect(cause, { depth: 20 }),
      NodeUtil.inspect(Cause.squash(cause), { depth: 20 }),
      ...logs
    ].join("\n")
  })

describe("connection URLs in errors and logs", () => {
  it("redact masks the password (and secret query parameters), also in text that is not a URL", () => {
    const cases: ReadonlyArray<readonly [string, string]> = [
      [`postgres://user:${SECRET}@host/db`, "postgres://user:***@host/db"],
      [`postgresql://user:${SECRET}@host:5432/db?sslmode=require`, "postgresql://user:***@host:5432/db?sslmode=require"],
      [`postgres://user:${SECRET}@host:badport/db`, "postgres://user:***@host:badport/db"],
      // an unescaped "@" or "/" in the password: still nothing of it shows
      [`postgres://user:a@${SECRET}/x@host/db`, "postgres://user:***@host/db"],
      [`redis:/user:${SECRET}@host`, "redis:/user:***@host"],
      [`redis://${SECRET}@host:6379`, "redis://***@host:6379"],
      [`rediss://:${SECRET}@host`, "rediss://:***@host"],
      [`postgres://host/db?password=${SECRET}&application_name=x`, "postgres://host/db?password=***&application_name=x"],
      ["postgres://host/db", "postgres://host/db"],
      ["memory", "memory"],
      ["./data/mizu.db", "./data/mizu.db"]
    ]
    for (const [input, shown] of cases) assert.strictEqual(ConnectionUrl.redact(input), shown, input)
  })

  it.live("DATABASE_URL: an unreachable or unparsable postgres:// URL fails at start, naming the URL without its password", () =>
    Effect.gen(function*() {
      const unreachable = yield* failureText(StorageConfig.layerConfig, { DATABASE_URL: `postgres://user:${SECRET}@127.0.0.1:1/db` })
      assert.notInclude(unreachable, SECRET)
      assert.include(unreachable, "cannot connect to Postgres at postgres://user:***@127.0.0.1:1/db")
      for (const url of [`postgres://user:${SECRET}@host:badport/db`, `postgres://user:${SECRET}@[::1/db`, `postgres://127.0.0.1:1/db?password=${SECRET}`]) {
        const text = yield* failureText(StorageConfig.layerConfig, { DATABASE_URL: url })
        assert.notInclude(text, SECRET, url)
        assert.include(text, "cannot connect to Postgres at", url)
      }
      const scheme = yield* failureText(StorageConfig.layerConfig, { DATABASE_URL: `mysql://user:${SECRET}@host/db` })
      assert.notInclude(scheme, SECRET)
      assert.include(scheme, "DATABASE_URL")
    }))

  it.live("PUBSUB_URL: an unsupported, unparsable or unreachable URL fails without echoing its password", () =>
    Effect.gen(function*() {
      for (const url of [`redis:/user:${SECRET}@host`, `amqp://user:${SECRET}@host`]) {
        const text = yield* failureText(PubSubConfig.layerConfig, { PUBSUB_URL: url })
        assert.notInclude(text, SECRET, url)
        assert.include(text, "PUBSUB_URL", url)
        assert.include(text, "user:***@host", url)
      }
      for (const url of [`rediss://user:${SECRET}@host:badport`, `redis://user:${SECRET}@[::1`]) {
        const text = yield* failureText(PubSubConfig.layerConfig, { PUBSUB_URL: url })
        assert.notInclude(text, SECRET, url)
        assert.include(text, "PUBSUB_URL", url)
        assert.include(text, "not a valid URL", url)
      }
      for (const url of [`postgres://user:${SECRET}@127.0.0.1:1/db`, `postgres://user:${SECRET}@host:badport/db`]) {
        const text = yield* failureText(PubSubConfig.layerConfig, { PUBSUB_URL: url })
        assert.notInclude(text, SECRET, url)
      }
    }))

  it.live("RedisPubSub.layer given an unparsable URL directly dies without echoing its password", () =>
    Effect.gen(function*() {
      const text = yield* failureText(RedisPubSub.layer({ url: `redis://user:${SECRET}@ho st:99999/x` }), {})
      assert.notInclude(text, SECRET)
      assert.include(text, "not a valid Redis URL: redis://user:***@")
    }))
})
