/**
 * Choose the `LivePubSub` layer from configuration:
 *
 * | `PUBSUB_URL`                  | layer                                       |
 * | ----------------------------- | ------------------------------------------- |
 * | unset or `memory`             | memory (one process)                        |
 * | `redis://…` / `rediss://…`    | Redis pub/sub                               |
 * | `postgres`                    | LISTEN/NOTIFY on `DATABASE_URL`'s database |
 * | `postgres://…`                | LISTEN/NOTIFY on that database             |
 *
 * @since 0.1.0
 */
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ConnectionUrl from "../sync/ConnectionUrl.js"
import * as LivePubSub from "./LivePubSub.js"
import * as PgPubSub from "./pg/PgPubSub.js"
import * as RedisPubSub from "./redis/RedisPubSub.js"

const isPg = (url: string) => url.startsWith("postgres://") || url.startsWith("postgresql://")

/**
 * The layer for a `PUBSUB_URL` value (`databaseUrl` resolves `postgres`);
 * an unknown or unparsable value fails with a `ConfigError` that never
 * echoes a password.
 *
 * @since 0.1.0
 * @category layers
 */
export const fromUrl = (
  url: string,
  databaseUrl: string | undefined
): Effect.Effect<Layer.Layer<LivePubSub.LivePubSub, unknown>, ConfigError.ConfigError> => {
  if (url === "" || url === "memory") return Effect.succeed(LivePubSub.layerMemory)
  if (url.startsWith("redis://") || url.startsWith("rediss://")) {
    // checked here: the Redis client dies on an unparsable URL with the URL (password included) in the error
    return URL.canParse(url)
      ? Effect.succeed(RedisPubSub.layer({ url }))
      : Effect.fail(ConfigError.InvalidData(["PUBSUB_URL"], `not a valid URL: ${ConnectionUrl.redact(url)}`))
  }
  if (isPg(url)) return Effect.succeed(PgPubSub.layerUrl(url))
  if (url === "postgres") {
    return databaseUrl !== undefined && isPg(databaseUrl)
      ? Effect.succeed(PgPubSub.layerUrl(databaseUrl))
      : Effect.fail(ConfigError.InvalidData(["PUBSUB_URL"], "PUBSUB_URL=postgres needs DATABASE_URL to be a postgres:// URL"))
  }
  // never echo the value as given: it may carry a password
  return Effect.fail(
    ConfigError.InvalidData(["PUBSUB_URL"], `expected memory, redis://…, postgres or postgres://…, got ${ConnectionUrl.redact(url)}`)
  )
}

/**
 * `LivePubSub` from `PUBSUB_URL` (and `DATABASE_URL`); memory when unset.
 * A bad value fails the layer at start, naming the variable.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig: Layer.Layer<LivePubSub.LivePubSub, unknown> = Layer.unwrapEffect(
  Effect.gen(function*() {
    const url = yield* Config.string("PUBSUB_URL").pipe(Config.withDefault("memory"))
    const databaseUrl = yield* Config.option(Config.string("DATABASE_URL"))
    return yield* fromUrl(url, databaseUrl._tag === "Some" ? databaseUrl.value : undefined)
  })
)
