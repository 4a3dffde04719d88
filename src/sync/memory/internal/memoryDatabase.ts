/**
 * The state behind the memory layers, and their transactions.
 *
 * Invariants:
 * - Every read and write of the memory layers holds one lock, so a reader
 *   never sees another fiber's uncommitted writes (read committed, and
 *   serializable for units run through `transaction` / `readConsistent`).
 * - A transaction records an undo entry for every write; on failure or
 *   interruption the entries are replayed in reverse, so memory is as
 *   all-or-nothing as SQL. A nested `transaction` is a savepoint: it rolls
 *   back only its own writes.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberRef from "effect/FiberRef"
import * as Option from "effect/Option"
import type { Change } from "../../../protocol/Sync.js"
import type { Failure } from "../../Clients.js"

/**
 * One scope's log: `changes` ascending by cursor, all above `floor`; below
 * `compacted` some cursors may be missing (folded into later changes of the
 * same row), above it none is. `sums[i]` is the scope's checksum after
 * `changes[i]`; `checksum` the checksum at `head`.
 */
export interface LogState {
  head: number
  floor: number
  changes: Array<Change>
  sums: Array<number>
  checksum: number
  compacted: number
  compactedAt: number | undefined
}

/** A fresh log. */
export const emptyLog = (): LogState => ({ head: 0, floor: 0, changes: [], sums: [], checksum: 0, compacted: 0, compactedAt: undefined })

/** One client's ledger. */
export interface ClientState {
  last: number
  /** The principal id that owns the client id; `undefined` until a named principal claims it. */
  owner: string | undefined
  readonly scopes: Map<string, number>
  /** The client's remembered failed mutations, by id (at most the `Clients` window). */
  readonly failures: Map<number, Failure>
  /** Epoch ms of its last push (undefined: not since the layer started). */
  seen?: number | undefined
}

/** What is kept of a client whose record expired (`Clients`): its last id and owner. */
export interface ExpiredClient {
  readonly last: number
  readonly owner: string | undefined
  readonly expired: number
}

/** Everything the memory layers keep. */
export interface State {
  readonly logs: Map<string, LogState>
  /** scope -> entity -> id -> JSON */
  readonly store: Map<string, Map<string, Map<string, unknown>>>
  readonly clients: Map<string, ClientState>
  readonly expired: Map<string, ExpiredClient>
}

type Undo = Array<() => void>

/** The state and its lock, shared by the memory layers of one family. */
export interface MemoryDatabase {
  /** Run a synchronous write; `undo` registers how to reverse each step. */
  readonly write: <A>(f: (state: State, undo: (step: () => void) => void) => A) => Effect.Effect<A>
  /** Run a synchronous read of committed state (or the current transaction's state). */
  readonly read: <A>(f: (state: State) => A) => Effect.Effect<A>
  /** All-or-nothing; nested calls are savepoints. */
  readonly transaction: <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
}

/** Build a fresh, empty memory database. */
export const make: Effect.Effect<MemoryDatabase> = Effect.gen(function*() {
  const state: State = { logs: new Map(), store: new Map(), clients: new Map(), expired: new Map() }
  const lock = yield* Effect.makeSemaphore(1)
  const current = FiberRef.unsafeMake<Option.Option<Undo>>(Option.none())

  const locked = <A, E, R>(self: Effect.Effect<A, E, R>) =>
    Effect.flatMap(FiberRef.get(current), (tx) => Option.isSome(tx) ? self : lock.withPermits(1)(self))

  const rollbackTo = (undo: Undo, mark: number) => {
    while (undo.length > mark) {
      const step = undo.pop()
      if (step !== undefined) step()
    }
  }

  const transaction = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.flatMap(FiberRef.get(current), (tx) => {
      if (Option.isSome(tx)) {
        const undo = tx.value
        const mark = undo.length
        return Effect.onExit(self, (exit) => Exit.isFailure(exit) ? Effect.sync(() => rollbackTo(undo, mark)) : Effect.void)
      }
      return lock.withPermits(1)(
        Effect.suspend(() => {
          const undo: Undo = []
          return self.pipe(
            Effect.locally(current, Option.some(undo)),
            Effect.onExit((exit) => Exit.isFailure(exit) ? Effect.sync(() => rollbackTo(undo, 0)) : Effect.void)
          )
        })
      )
    })

  const noUndo = () => {}
  const db: MemoryDatabase = {
    write: (f) =>
      Effect.flatMap(FiberRef.get(current), (tx) =>
        Option.isSome(tx)
          ? Effect.sync(() => f(state, (step) => tx.value.push(step)))
          : lock.withPermits(1)(Effect.sync(() => f(state, noUndo)))),
    read: (f) => locked(Effect.sync(() => f(state))),
    transaction
  }
  return db
})
