/**
 * The pull side of a sync client: a scope is pulled page by page from its
 * cursor, and the pages of one pull are committed together with the
 * `last_mutation_id` of the last (invariant 2 of `SyncClient`); a page that
 * does not continue the cursor is refused (3); a backlog past
 * `maxPullPages`, `cursor_too_old` and `cursor_ahead` reset the scope from
 * a snapshot (6). A pull whose generation ended (the queue was renumbered)
 * is stale and starts again. A pull that reached the head compares the
 * scope's checksum with the server's; a difference is repaired range by
 * range (`syncRepair`), or by a snapshot when that cannot mend it.
 *
 * The worker pulls the scopes asked for (pokes, heads, answers, the
 * failsafe interval) and retries failures with the shared policy
 * (`Backoff`, through `Effect.retry`); the live socket coming back cuts a
 * wait short.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Queue from "effect/Queue"
import * as Protocol from "../../protocol/Sync.js"
import type { ClientStorageError } from "../ClientStorage.js"
import { type ResetReason, SyncError, type SyncFailure } from "../SyncClient.js"
import * as Rebase from "./syncRebase.js"
import * as Repair from "./syncRepair.js"
import type { SyncState } from "./syncState.js"
import * as Backoff from "../Backoff.js"

/** The request field of this client's app version (none without a registry). */
const appVersion = (config: SyncState["config"]): { readonly app_version?: number } =>
  config.registry === undefined ? {} : { app_version: config.registry.version }

/** The pull side, as `syncClient` uses it. */
export interface Pull {
  /** Pull a scope to its head now (resetting it first if it must be). */
  readonly pullScope: (scope: string) => Effect.Effect<void, SyncFailure>
  /** The background worker: pull the scopes asked for, retry with backoff. */
  readonly worker: Effect.Effect<never>
  /** Ask for a pull of every tracked scope every `pullInterval`. */
  readonly failsafe: Effect.Effect<never>
}

/** `mismatch`: committed, but the scope's checksum differs from the server's at the same cursor (repair it). */
type PullOutcome = "done" | "stale" | "mismatch"

const isResetCode = (e: SyncFailure): e is Protocol.ProtocolError =>
  e._tag === "ProtocolError" && (e.code === "cursor_too_old" || e.code === "cursor_ahead")

/**
 * Whether a page continues the log from `cursor` (3): its changes are the
 * scope's, ascending, and every cursor skipped is at or below the page's
 * `compacted_through` (a compacted log); above it none is skipped.
 */
const continuesLog = (scope: string, cursor: number, page: Protocol.PullResponse): boolean => {
  const mark = page.compacted_through ?? 0
  let previous = cursor
  for (const c of page.changes) {
    if (c.scope !== scope || c.cursor <= previous || c.cursor - 1 > Math.max(previous, mark)) return false
    previous = c.cursor
  }
  return true
}

/**
 * The pull side of the client whose state is `s`. A builder: the paged pull of
 * one scope, its retry and the snapshot path are named helpers over `s`.
 */
export const make = (s: SyncState): Effect.Effect<Pull> =>
  Effect.map(Effect.makeSemaphore(1), (pullMutex) => {
    const { clientId, config } = s
    const { commitPull, resetScope } = makeCommits(s)
    const { repair } = Repair.make(s)

    /** Repair a scope whose checksum differs; a snapshot when the repair cannot mend it. */
    const repairOrReset = (scope: string, gen0: number): Effect.Effect<"done" | "stale", SyncFailure> =>
      Effect.flatMap(repair(scope, gen0), (outcome) => {
        if (outcome !== "reset") return Effect.succeed(outcome)
        return Effect.map(resetScope(scope, "checksum", gen0), (o) => (o === "mismatch" ? "stale" : o))
      })

    const pullPages = (scope: string, gen0: number): Effect.Effect<PullOutcome, SyncFailure> =>
      Effect.gen(function*() {
        const from = s.current().scopes.get(scope)?.cursor ?? 0
        let cursor = from
        const changes: Array<Protocol.Change> = []
        for (let page = 0;; page++) {
          if (page >= config.maxPullPages) return yield* resetScope(scope, "backlog", gen0)
          const request = { protocol: Protocol.PROTOCOL_VERSION, ...appVersion(config), scope, cursor, limit: config.pullLimit, client_id: clientId }
          const response = yield* s.transport.pull(request).pipe(
            Effect.map(Either.right),
            Effect.catchIf(isResetCode, (e) => Effect.succeed(Either.left(e))),
            Effect.tapError(s.reportFailure("pull"))
          )
          if (Either.isLeft(response)) {
            return yield* resetScope(scope, response.left.code === "cursor_ahead" ? "cursor_ahead" : "cursor_too_old", gen0)
          }
          const r = response.right
          const last = r.changes[r.changes.length - 1]
          const continues = continuesLog(scope, cursor, r) && r.cursor === (last?.cursor ?? cursor) && (r.changes.length > 0 || !r.has_more)
          if (!continues) {
            return yield* new SyncError({ reason: "bad_response", message: `pull of ${scope} from ${cursor} does not continue the log` })
          }
          changes.push(...r.changes)
          cursor = r.cursor
          if (!r.has_more) return yield* commitPull(gen0, { scope, from, changes, cursor, lastMutationId: r.last_mutation_id, checksum: r.checksum })
        }
      })

    const pullScope = (scope: string): Effect.Effect<void, SyncFailure> =>
      pullMutex.withPermits(1)(Effect.gen(function*() {
        for (let tries = 0; tries < 10; tries++) {
          const gen0 = s.coordination.generation
          const reset = s.coordination.needsReset.get(scope)
          const pulled = reset !== undefined ? yield* resetScope(scope, reset, gen0) : yield* pullPages(scope, gen0)
          const outcome = pulled === "mismatch" ? yield* repairOrReset(scope, gen0) : pulled
          if (outcome === "done") return
        }
      })).pipe(Effect.withSpan("SyncClient.pull", { attributes: { scope } }))

    /** Pull every scope asked for; those that failed are asked for again, and the round fails. */
    const pullDirty = Effect.gen(function*() {
      const dirty = s.coordination.dirty
      const batch = [...dirty]
      dirty.clear()
      let failed = false
      for (const scope of batch) {
        const outcome = yield* Effect.either(pullScope(scope))
        if (Either.isLeft(outcome)) {
          failed = true
          dirty.add(scope)
        }
      }
      if (failed) yield* Effect.fail("retry" as const)
    })

    const worker = Effect.forever(
      Effect.suspend(() => s.coordination.dirty.size === 0 ? Queue.take(s.pullWake) : Effect.void).pipe(
        // the schedule never ends, so the retry never gives up: `orDie` only says so in the type
        Effect.zipRight(Effect.orDie(Effect.retry(pullDirty, Backoff.wakeable(config.retry, s.onlinePull))))
      )
    )

    const failsafe = Effect.forever(Effect.delay(
      Effect.suspend(() => Effect.forEach([...s.coordination.tracked], s.requestPull, { discard: true })),
      config.pullInterval
    ))

    return { pullScope, worker, failsafe }
  })

/** The two ways a pull ends in a commit: its pages, or a snapshot. */
const makeCommits = (s: SyncState) => {
  const registry = s.config.registry

  const commitPull = (gen0: number, pulled: Rebase.Pulled): Effect.Effect<PullOutcome, ClientStorageError> =>
    s.locked(Effect.gen(function*() {
      if (s.coordination.generation !== gen0) return "stale" as const
      const step = yield* Rebase.applyPull(registry, s.current(), pulled)
      if (step === undefined) return "stale" as const
      yield* s.commit(step)
      yield* s.reportSuccess("lastPullAt")
      // at the head the scope must equal the server's: compared whenever the server sent its checksum
      const st = s.current().scopes.get(pulled.scope)
      const drifted = pulled.checksum !== undefined && st !== undefined && Rebase.checksumOf(st.confirmed) !== pulled.checksum
      return drifted ? "mismatch" as const : "done" as const
    }))

  /** Replace a scope by a snapshot (invariant 6), keeping pending mutations. */
  const resetScope = (scope: string, reason: ResetReason, gen0: number): Effect.Effect<PullOutcome, SyncFailure> =>
    Effect.gen(function*() {
      const snapshot = yield* s.transport.snapshot({ protocol: Protocol.PROTOCOL_VERSION, ...appVersion(s.config), scope, client_id: s.clientId }).pipe(
        Effect.tapError(s.reportFailure("snapshot"))
      )
      return yield* s.locked(Effect.gen(function*() {
        if (s.coordination.generation !== gen0) return "stale" as const
        yield* s.commit(yield* Rebase.applySnapshot(registry, s.current(), scope, snapshot, reason))
        s.coordination.needsReset.delete(scope)
        yield* s.reportSuccess("lastPullAt")
        return "done" as const
      }))
    }).pipe(Effect.withSpan("SyncClient.reset", { attributes: { scope, reason } }))

  return { commitPull, resetScope }
}
