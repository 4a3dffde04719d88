/**
 * The incremental repair of a scope whose checksum differs from the
 * server's at the same cursor (PROTOCOL.md "Checksums and repair").
 *
 * Invariants:
 * - Only confirmed rows are compared and replaced, never the queue: pending
 *   mutations are replayed on the repaired rows as on any others (1).
 * - Every answer is read at the server's head; one at another cursor than
 *   the scope's means the log moved on, and the repair is `stale` (the pull
 *   catches up, compares again and repairs again if it must), so rows of two
 *   different cursors are never mixed.
 * - Bounded: at most `MAX_REQUESTS` range requests and `MAX_LEAVES` row
 *   fetches; past them, or when the repaired scope still differs, the scope
 *   is reset from a snapshot (`checksum`), as it is when the transport has
 *   no repair endpoints.
 *
 * The split: the server answers checksums of up to 16 key ranges of about
 * equal row counts; a range whose count and checksum match is skipped, one
 * of at most `LEAF_ROWS` rows on the server is fetched whole, a larger one is
 * split again. A corrupted row costs ~log16(rows) range requests and the
 * rows of one leaf.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Checksum from "../../protocol/Checksum.js"
import * as Protocol from "../../protocol/Sync.js"
import type { SyncFailure } from "../SyncClient.js"
import type { Rows } from "../LocalView.js"
import * as Rebase from "./syncRebase.js"
import type { SyncState } from "./syncState.js"

/** A range of the server's rows this few or fewer is fetched, not split. */
export const LEAF_ROWS = 64
const MAX_REQUESTS = 64
const MAX_LEAVES = 32
const PARTS = Protocol.DEFAULT_RANGE_PARTS

/** How a repair ended: the scope equals the server's (`done`), the log moved on (`stale`), or it needs a snapshot. */
export type RepairOutcome = "done" | "stale" | "reset"

interface Bounds {
  readonly from?: Checksum.Key | undefined
  readonly to?: Checksum.Key | undefined
}

/** The local rows in key order with their hashes, and the summary of any range of them (binary search, no rehash). */
const localIndex = (rows: Rows) => {
  const sorted = Checksum.rowsIn(rows, undefined, undefined)
  const hashes = sorted.map((row) => Checksum.rowHash(row.entity, row.id, row.data))
  const lowerBound = (key: Checksum.Key | undefined): number => {
    if (key === undefined) return 0
    let lo = 0
    let hi = sorted.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (Checksum.compareKeys(sorted[mid], key) < 0) lo = mid + 1
      else hi = mid
    }
    return lo
  }
  return (range: Bounds): { readonly count: number; readonly checksum: number } => {
    const start = lowerBound(range.from)
    const end = range.to === undefined ? sorted.length : lowerBound(range.to)
    let checksum = 0
    for (let i = start; i < end; i++) checksum = Checksum.add(checksum, hashes[i])
    return { count: Math.max(0, end - start), checksum }
  }
}

const bounds = (range: Bounds): Bounds => ({
  ...(range.from === undefined ? {} : { from: range.from }),
  ...(range.to === undefined ? {} : { to: range.to })
})

/**
 * The repair of the client whose state is `s`: `repair(scope, gen0)` finds
 * the ranges that differ, fetches their rows and commits them (see the
 * module header); the caller resets the scope on `reset`.
 */
export const make = (s: SyncState) => {
  const { clientId, config, transport } = s
  const base = (scope: string) => ({
    protocol: Protocol.PROTOCOL_VERSION,
    ...(config.registry === undefined ? {} : { app_version: config.registry.version }),
    scope,
    client_id: clientId
  })

  /** The ranges whose rows differ, each of at most `LEAF_ROWS` server rows; `stale` / `reset` as the module says. */
  const findLeaves = (
    ranges: NonNullable<typeof transport.ranges>,
    scope: string,
    cursor: number,
    local: ReturnType<typeof localIndex>
  ): Effect.Effect<{ readonly leaves: ReadonlyArray<Bounds>; readonly checksum: number } | "stale" | "reset", SyncFailure> =>
    Effect.gen(function*() {
      const todo: Array<Bounds> = [{}]
      const leaves: Array<Bounds> = []
      let checksum = 0
      for (let requests = 0; todo.length > 0; requests++) {
        if (requests >= MAX_REQUESTS) return "reset" as const
        const next = todo.shift() ?? {}
        const answer = yield* ranges({ ...base(scope), ...bounds(next), parts: PARTS }).pipe(Effect.tapError(s.reportFailure("pull")))
        if (answer.cursor !== cursor) return "stale" as const
        if (requests === 0) checksum = answer.checksum
        for (const range of answer.ranges) {
          const mine = local(range)
          if (mine.count === range.count && mine.checksum === range.checksum) continue
          if (range.count <= LEAF_ROWS) leaves.push(bounds(range))
          else todo.push(bounds(range))
        }
        if (leaves.length > MAX_LEAVES) return "reset" as const
      }
      return { leaves, checksum }
    })

  const repair = (scope: string, gen0: number): Effect.Effect<RepairOutcome, SyncFailure> =>
    Effect.gen(function*() {
      const { ranges, rows } = transport
      const st = s.current().scopes.get(scope)
      if (ranges === undefined || rows === undefined || st === undefined) return "reset" as const
      const cursor = st.cursor
      const found = yield* findLeaves(ranges, scope, cursor, localIndex(st.confirmed))
      if (typeof found === "string") return found
      if (found.leaves.length === 0) return Rebase.checksumOf(st.confirmed) === found.checksum ? "done" as const : "reset" as const
      const fetched: Array<Rebase.RepairedRange> = []
      for (const leaf of found.leaves) {
        const answer = yield* rows({ ...base(scope), ...leaf }).pipe(Effect.tapError(s.reportFailure("pull")))
        if (answer.cursor !== cursor) return "stale" as const
        if (answer.has_more) return "reset" as const
        fetched.push({ ...leaf, rows: answer.rows })
      }
      return yield* s.locked(Effect.gen(function*() {
        if (s.coordination.generation !== gen0) return "stale" as const
        const step = yield* Rebase.applyRepair(config.registry, s.current(), scope, cursor, fetched)
        if (step === undefined) return "stale" as const
        yield* s.commit(step)
        const repaired = step.state.scopes.get(scope)
        return repaired !== undefined && Rebase.checksumOf(repaired.confirmed) === found.checksum ? "done" as const : "reset" as const
      }))
    }).pipe(Effect.withSpan("SyncClient.repair", { attributes: { scope } }))

  return { repair }
}
