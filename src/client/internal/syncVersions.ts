/**
 * A sync client's side of app versions (`Mutation.versioned`,
 * `Mutation.retire`): the queue a client loads, made under older code, is
 * upgraded to its registry's version through the same chain the server
 * uses (`sync/internal/versions.ts`), before anything is pushed.
 *
 * Invariants:
 * - A queued mutation keeps its id: upgraded in place (new args, maybe a
 *   replacement's name), or, when the chain refuses it (a retired mutation
 *   without a replacement, args the old shape does not decode), a
 *   placeholder that keeps its id (`PushPolicy`), reported as `Rejected` —
 *   never dropped silently.
 * - Mutations of newer code than this client's (another tab already
 *   reloaded) are left as they are, and not pushed by this tab
 *   (`pushable`).
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import { formatParseError } from "../../protocol/Sync.js"
import * as Versions from "../../sync/internal/versions.js"
import type * as Mutation from "../../sync/Mutation.js"
import type { Batch, StoredState } from "../ClientStorage.js"
import type { PendingMutation } from "../LocalView.js"
import * as PushPolicy from "../PushPolicy.js"
import type { SyncEvent } from "../SyncClient.js"

/** The app version a queued mutation was made under (1 for one stored before versions existed). */
export const versionOf = (m: PendingMutation): number => m.version ?? 1

/** What loading did to the queue: the state to start from, what to commit, whom to tell. */
export interface Upgraded {
  readonly stored: StoredState
  readonly write: Batch | undefined
  readonly events: ReadonlyArray<SyncEvent>
}

/** Upgrade the stored queue's mutations made under an older version than `registry`'s. */
export const upgradeStored = (registry: Mutation.Registry | undefined, stored: StoredState): Effect.Effect<Upgraded> =>
  Effect.gen(function*() {
    if (registry === undefined) return { stored, write: undefined, events: [] }
    const changed: Array<PendingMutation> = []
    const events: Array<SyncEvent> = []
    const pending: Array<PendingMutation> = []
    for (const m of stored.pending) {
      if (PushPolicy.isReserved(m) || versionOf(m) >= registry.version) {
        pending.push(m)
        continue
      }
      const next = yield* Effect.either(upgradeOne(registry, m))
      const replaced = Either.isRight(next) ? next.right : PushPolicy.placeholder(m)
      if (Either.isLeft(next)) {
        events.push({ _tag: "Rejected", mutation: m, code: next.left.reason, message: next.left.message })
        yield* Effect.logWarning(`SyncClient: mutation ${m.id} (${m.name}) cannot be upgraded to app version ${registry.version}`, next.left.message)
      }
      pending.push(replaced)
      changed.push(replaced)
    }
    if (changed.length === 0) return { stored, write: undefined, events }
    return { stored: { ...stored, pending }, write: { pendingPut: changed }, events }
  })

/** One mutation in the current shape: decoded as it was made, upgraded, encoded with its (maybe replacing) definition. */
const upgradeOne = (registry: Mutation.Registry, m: PendingMutation): Effect.Effect<PendingMutation, Versions.Unresolved> =>
  Effect.flatMap(Versions.resolve(registry, m.name, m.args, versionOf(m)), ({ args, mutation }) =>
    Schema.encodeUnknown(mutation.args)(args).pipe(
      Effect.mapError((e): Versions.Unresolved => ({ reason: "invalid_args", message: formatParseError(e) })),
      Effect.map((wire): PendingMutation => ({ id: m.id, name: mutation.name, scope: m.scope, args: wire, version: registry.version }))
    ))

/** The head of the queue this client's code may push: up to the first mutation of newer code (another tab's). */
export const pushable = (registry: Mutation.Registry | undefined, pending: ReadonlyArray<PendingMutation>): ReadonlyArray<PendingMutation> => {
  if (registry === undefined) return pending
  const newer = pending.findIndex((m) => !PushPolicy.isReserved(m) && versionOf(m) > registry.version)
  return newer === -1 ? pending : pending.slice(0, newer)
}
