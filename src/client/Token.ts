/**
 * Where the clients get a bearer token: a fixed string, a function (called
 * for every request, and on every live connect; it may return a Promise), or
 * an Effect run each time. A source that throws, rejects or fails yields a
 * `TokenError`: the request is not sent, and is retried like a network
 * failure.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"

/**
 * A bearer token, or how to get the current one. `undefined` means "send none".
 *
 * @since 0.1.0
 * @category models
 */
export type Source =
  | string
  | (() => string | undefined | PromiseLike<string | undefined>)
  | Effect.Effect<string | undefined, unknown>

/**
 * The app's token source threw, rejected or failed.
 *
 * @since 0.1.0
 * @category errors
 */
export class TokenError extends Data.TaggedError("TokenError")<{
  readonly message: string
  readonly cause?: unknown
}> {}

/**
 * Whether the source gives a different token over time (a function or an Effect), as opposed to a fixed string.
 *
 * @since 0.1.0
 * @category guards
 */
export const isDynamic = (source: Source | undefined): boolean => source !== undefined && typeof source !== "string"

/**
 * The current token of a source.
 *
 * @since 0.1.0
 * @category utils
 */
export const resolve = (source: Source | undefined): Effect.Effect<string | undefined, TokenError> => {
  if (source === undefined || typeof source === "string") return Effect.succeed(source)
  if (Effect.isEffect(source)) {
    return source.pipe(
      Effect.mapError((cause) => new TokenError({ message: `the token effect failed: ${String(cause)}`, cause })),
      Effect.catchAllDefect((cause) => Effect.fail(new TokenError({ message: `the token effect died: ${String(cause)}`, cause })))
    )
  }
  const call = source
  const failed = (cause: unknown) =>
    new TokenError({ message: `the token function failed: ${cause instanceof Error ? cause.message : String(cause)}`, cause })
  return Effect.flatMap(Effect.try({ try: call, catch: failed }), (value) =>
    isThenable(value)
      ? Effect.tryPromise({ try: () => Promise.resolve(value), catch: failed })
      : Effect.succeed(value))
}

const isThenable = (value: unknown): value is PromiseLike<string | undefined> =>
  typeof value === "object" && value !== null && typeof (value as { readonly then?: unknown }).then === "function"
