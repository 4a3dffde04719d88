/**
 * How a mutation made under an older app version becomes one of the current
 * version (`Mutation.versioned`, `Mutation.retire`): one function, used by
 * the server's `Mutator` and by a client that reloads on newer code, so both
 * upgrade a queued mutation the same way.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { formatParseError } from "../../protocol/Sync.js"
import type * as Mutation from "../Mutation.js"

/** A mutation ready to run: the definition and its args, decoded in the current shape. */
export interface Resolved {
  readonly mutation: Mutation.Mutation
  readonly args: unknown
}

/** Why a mutation cannot run (each reason a protocol mutation error code). */
export interface Unresolved {
  readonly reason: "unknown_mutation" | "invalid_args" | "rejected"
  readonly message: string
}

/** Whether a mutation of `name` made under `version` needs `resolve` (rather than the current Schema alone). */
export const needsUpgrade = (registry: Mutation.Registry, name: string, version: number | undefined): boolean => {
  if (version === undefined || version >= registry.version) return false
  const retired = registry.retired.get(name)
  if (retired !== undefined) return version < retired.removedIn
  const history = registry.mutations.get(name)?.history ?? []
  return history.some((h) => h.changedIn > version)
}

/** Decode `wire` as `mutation`'s args were under `version`, then upgrade through the later shapes. */
export const decodeAt = (mutation: Mutation.Mutation, wire: unknown, version: number): Effect.Effect<unknown, Unresolved> => {
  const from = mutation.history.findIndex((h) => h.changedIn > version)
  const schema = from === -1 ? mutation.args : mutation.history[from].args
  return Schema.decodeUnknown(schema, { errors: "all" })(wire).pipe(
    Effect.mapError((e): Unresolved => ({ reason: "invalid_args", message: formatParseError(e) })),
    Effect.flatMap((value) =>
      from === -1 ? Effect.succeed(value) : Effect.try({
        try: () => mutation.history.slice(from).reduce((v, step) => step.upgrade(v), value),
        catch: (cause): Unresolved => ({
          reason: "invalid_args",
          message: `${mutation.name}: the upgrade from app version ${version} failed: ${cause instanceof Error ? cause.message : String(cause)}`
        })
      })
    )
  )
}

/** The current mutation (and args) a mutation named `name` with `wire` args, made under `version`, stands for. */
export const resolve = (
  registry: Mutation.Registry,
  name: string,
  wire: unknown,
  version: number
): Effect.Effect<Resolved, Unresolved> => {
  const retired = registry.retired.get(name)
  if (retired !== undefined && version < retired.removedIn) {
    return Effect.flatMap(decodeAt(retired.mutation, wire, version), (args) => {
      const replace = retired.replace
      if (replace === undefined) return Effect.fail<Unresolved>({ reason: "rejected", message: retired.reason })
      return Effect.try({
        try: (): Resolved => replace(args),
        catch: (cause): Unresolved => ({ reason: "invalid_args", message: `${name}: its replacement failed: ${String(cause)}` })
      })
    })
  }
  const mutation = registry.mutations.get(name)
  if (mutation === undefined) return Effect.fail({ reason: "unknown_mutation", message: `unknown mutation ${name}` })
  return Effect.map(decodeAt(mutation, wire, version), (args) => ({ mutation, args }))
}
