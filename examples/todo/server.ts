/**
 * The todo example server (`npm start`): sync + live on SQLite by default
 * (`DATABASE_URL`, `PUBSUB_URL`, `PORT` select otherwise), serving
 *  - `/`            the todo app: a plain page using the client from /_live/runtime.js
 *  - `/live/todos`  the same list as a server-rendered live page
 *
 * `AUTH_TOKENS` (a JSON object of token → scope patterns, as
 * `TokenAuthorizer.layerConfig` reads it) turns on the token authorizer;
 * unset, every request is allowed. Either way the choice is logged at start.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Config, Effect, Layer, Option, Redacted } from "effect"
import { Authorizer, Server, TokenAuthorizer } from "mizu-sync-live"
import { options } from "./app.js"

/** How many usable tokens a table `TokenAuthorizer.layerConfig` has accepted holds (it skips the empty token). */
const tokenCount = (json: string): number => {
  const table: unknown = JSON.parse(json)
  return typeof table === "object" && table !== null ? Object.keys(table).filter((token) => token !== "").length : 0
}

/** The token authorizer when `AUTH_TOKENS` is set (a malformed value fails at start), else allow-all. */
const authorizer = Layer.unwrapEffect(
  Effect.map(Config.option(Config.redacted("AUTH_TOKENS")), (tokens) =>
    Option.match(tokens, {
      onNone: () =>
        Layer.effectDiscard(Effect.log("auth: AUTH_TOKENS not set, every request allowed (Authorizer.layerAllowAll)")).pipe(
          Layer.provideMerge(Authorizer.layerAllowAll)
        ),
      onSome: (value) =>
        TokenAuthorizer.layerConfig("AUTH_TOKENS").pipe(
          Layer.tap(() => {
            const n = tokenCount(Redacted.value(value))
            return Effect.log(`auth: AUTH_TOKENS set, ${n} token${n === 1 ? "" : "s"}, token authorizer`)
          })
        )
    }))
)

NodeRuntime.runMain(Layer.launch(Server.layerConfig({ ...options, authorizer })))
