/**
 * The reads of the engine: pull, snapshot and the repair reads (ranges,
 * rows), each one `readConsistent` unit that checks the client id's owner
 * before anything else is read.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import { whenTracing, withLogAnnotations } from "../../internal/spans.js"
import * as Metric from "effect/Metric"
import * as Metrics from "../../Metrics.js"
import * as Checksum from "../../protocol/Checksum.js"
import * as Protocol from "../../protocol/Sync.js"
import { ProtocolError } from "../../protocol/Sync.js"
import type { Caller, SyncEngine } from "../SyncEngine.js"
import type { PullRead } from "../SyncStorage.js"
import type { Access } from "./access.js"
import type { StorageError } from "../StorageError.js"
import { logStorageError } from "./errors.js"
import type { Deps } from "./syncEngine.js"

/** `compacted_through` of a page from `request.cursor`: present when the page may skip cursors (it starts below the mark). */
const compactedThrough = (request: Protocol.PullRequest, compacted: number | undefined): { readonly compacted_through?: number } =>
  compacted !== undefined && request.cursor < compacted ? { compacted_through: compacted } : {}

/** The engine's `pull` and `snapshot` over its services (a builder of the two, ~30 lines each). */
export const make = (
  { clients, log, storage, store }: Deps,
  { authorize, checkOwner, notOwner }: Access
): Pick<SyncEngine["Type"], "pull" | "pullBody" | "snapshot" | "ranges" | "rows"> => {
  /** The owner check first (nothing read is revealed to another principal), then the cursor checks. */
  const checkRead = (request: Protocol.PullRequest, owner: string | undefined, read: PullRead) => {
    if (request.client_id !== undefined && read.owner !== undefined && read.owner !== owner) {
      return notOwner(request.client_id)
    }
    if (request.cursor > read.head) {
      return Effect.fail(
        new ProtocolError({
          code: "cursor_ahead",
          message: `cursor ${request.cursor} is beyond the scope's head ${read.head}`,
          details: { head: read.head }
        })
      )
    }
    if (request.cursor < read.floor) {
      return Effect.fail(
        new ProtocolError({
          code: "cursor_too_old",
          message: `cursor ${request.cursor} is older than the log keeps (floor ${read.floor})`,
          details: { floor: read.floor }
        })
      )
    }
    return Metric.increment(Metrics.pullPages)
  }

  /** A pull through the storage's one-statement read (`SyncStorage.readPull`), checked. */
  const readFused = (readPull: PullRead.Reader, request: Protocol.PullRequest, owner: string | undefined, limit: number) =>
    Effect.tap(readPull(request.scope, request.cursor, limit, request.client_id), (read) => checkRead(request, owner, read))

  /** The response of a fused read (the page's JSON parsed: the typed API). */
  const responseOf = (request: Protocol.PullRequest, read: PullRead): Protocol.PullResponse => {
    const response: Protocol.PullResponse = {
      changes: JSON.parse(read.changesJson) as ReadonlyArray<Protocol.Change>,
      cursor: read.lastCursor,
      has_more: read.hasMore,
      ...(read.checksum === undefined ? {} : { checksum: read.checksum }),
      ...compactedThrough(request, read.compacted)
    }
    return request.client_id === undefined ? response : { ...response, last_mutation_id: read.lastId }
  }

  /** The response body of a fused read: the page's JSON spliced as the database encoded it, nothing parsed. */
  const bodyOf = (request: Protocol.PullRequest, read: PullRead): string =>
    `{"changes":${read.changesJson},"cursor":${read.lastCursor},"has_more":${read.hasMore}${
      request.client_id === undefined ? "" : `,"last_mutation_id":${read.lastId}`
    }${read.checksum === undefined ? "" : `,"checksum":${read.checksum}`}${
      read.compacted !== undefined && request.cursor < read.compacted ? `,"compacted_through":${read.compacted}` : ""
    }}`

  // made once (`Effect.fnUntraced`), not a generator function per call: see bench/README
  const pullComposedIn = Effect.fnUntraced(function*(request: Protocol.PullRequest, owner: string | undefined, limit: number) {
    yield* checkOwner(request.client_id, owner)
    const head = yield* log.head(request.scope)
    if (request.cursor > head) {
      return yield* new ProtocolError({
        code: "cursor_ahead",
        message: `cursor ${request.cursor} is beyond the scope's head ${head}`,
        details: { head }
      })
    }
    const floor = yield* log.floor(request.scope)
    if (request.cursor < floor) {
      return yield* new ProtocolError({
        code: "cursor_too_old",
        message: `cursor ${request.cursor} is older than the log keeps (floor ${floor})`,
        details: { floor }
      })
    }
    const page = yield* log.since(request.scope, request.cursor, limit)
    yield* Metric.increment(Metrics.pullPages)
    const lastChange = page.changes[page.changes.length - 1]
    const response: Protocol.PullResponse = {
      changes: page.changes,
      cursor: lastChange === undefined ? request.cursor : lastChange.cursor,
      has_more: page.hasMore,
      ...(page.checksum === undefined ? {} : { checksum: page.checksum }),
      ...compactedThrough(request, page.compacted)
    }
    if (request.client_id === undefined) return response
    return { ...response, last_mutation_id: yield* clients.lastIdForScope(request.client_id, request.scope) }
  })

  const pullComposed = (request: Protocol.PullRequest, owner: string | undefined, limit: number) =>
    storage.readConsistent(pullComposedIn(request, owner, limit))

  /** Authorize, then the read (fused when the storage has one, else composed), then the answer in the wanted form. */
  const pullAs = <A>(
    request: Protocol.PullRequest,
    caller: Caller,
    fused: (read: PullRead) => A,
    composed: (response: Protocol.PullResponse) => A
  ) =>
    Effect.flatMap(authorize("pull", [request.scope], caller, request.client_id), (owner) => {
      const limit = request.limit ?? Protocol.DEFAULT_PULL_LIMIT
      return storage.readPull !== undefined
        ? Effect.map(readFused(storage.readPull, request, owner, limit), fused)
        : Effect.map(pullComposed(request, owner, limit), composed)
    }).pipe(
      (self) => logStorageError(self),
      whenTracing("SyncEngine.pull", {
        attributes: { scope: request.scope, cursor: request.cursor },
        captureStackTrace: false
      }),
      withLogAnnotations({ scope: request.scope, client_id: request.client_id ?? "" })
    )

  const pull = (request: Protocol.PullRequest, caller: Caller) =>
    pullAs(request, caller, (read) => responseOf(request, read), (response) => response)

  const pullBody = (request: Protocol.PullRequest, caller: Caller) =>
    pullAs(request, caller, (read) => bodyOf(request, read), (response) => JSON.stringify(response))

  /**
   * A read of the whole scope at its head: authorized as a snapshot, then the
   * owner check, the head, the checksum and the rows in one snapshot, given to `answer`.
   */
  const scopeRead = <A>(
    name: string,
    request: Protocol.SnapshotRequest | Protocol.RangesRequest | Protocol.RowsRequest,
    caller: Caller,
    answer: (head: { readonly cursor: number; readonly checksum: number }, data: Protocol.SnapshotData) => Effect.Effect<A, ProtocolError | StorageError>
  ) =>
    Effect.gen(function*() {
      const owner = yield* authorize("snapshot", [request.scope], caller, request.client_id)
      return yield* storage.readConsistent(Effect.gen(function*() {
        yield* checkOwner(request.client_id, owner)
        const cursor = yield* log.head(request.scope)
        const checksum = yield* log.checksum(request.scope)
        return yield* answer({ cursor, checksum }, yield* store.snapshot(request.scope))
      }))
    }).pipe(
      (self) => logStorageError(self),
      whenTracing(name, { attributes: { scope: request.scope }, captureStackTrace: false }),
      withLogAnnotations({ scope: request.scope, client_id: request.client_id ?? "" })
    )

  const snapshot = (request: Protocol.SnapshotRequest, caller: Caller) =>
    scopeRead("SyncEngine.snapshot", request, caller, ({ checksum, cursor }, data) =>
      Effect.gen(function*() {
        yield* Metric.increment(Metrics.snapshots)
        const response: Protocol.SnapshotResponse = { data, cursor, checksum }
        if (request.client_id === undefined) return response
        return { ...response, last_mutation_id: yield* clients.lastIdForScope(request.client_id, request.scope) }
      }))

  const ranges = (request: Protocol.RangesRequest, caller: Caller) =>
    scopeRead("SyncEngine.ranges", request, caller, (head, data) => {
      const rows = Checksum.rowsIn(data, request.from, request.to)
      const ranges = Checksum.split(rows, request.parts ?? Protocol.DEFAULT_RANGE_PARTS, request.from, request.to)
      const whole = request.from === undefined && request.to === undefined
      return Effect.as(
        Effect.zipRight(Metric.incrementBy(Metrics.repairRanges, ranges.length), whole ? Metric.increment(Metrics.repairMismatches) : Effect.void),
        { cursor: head.cursor, checksum: head.checksum, ranges }
      )
    })

  const rows = (request: Protocol.RowsRequest, caller: Caller) =>
    scopeRead("SyncEngine.rows", request, caller, (head, data) => {
      const rows = Checksum.rowsIn(data, request.from, request.to)
      const page = rows.slice(0, Protocol.MAX_REPAIR_ROWS)
      return Effect.as(Metric.incrementBy(Metrics.repairRows, page.length), {
        cursor: head.cursor,
        rows: page.map(({ data, entity, id }) => ({ entity, id, data })),
        has_more: rows.length > page.length
      })
    })

  return { pull, pullBody, snapshot, ranges, rows }
}
