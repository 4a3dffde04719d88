/**
 * `ClientStorage` on IndexedDB, for browsers. One database with four object
 * stores: `meta` (client id, next mutation id), `scopes` (cursor per scope),
 * `rows` (confirmed rows, keyed `scope \0 entity \0 id`) and `pending` (the
 * queue, keyed by mutation id).
 *
 * Invariants:
 * - Each `commit` is one `readwrite` transaction over the four stores with
 *   `durability: "strict"`; it resolves on the transaction's `complete`
 *   event, so a batch is all or nothing and on disk when `commit` returns.
 * - Scope names cannot contain `\0` (the protocol's `Scope`), so a scope's
 *   rows are exactly the keys in `[scope\0, scope\x01)`.
 * - One client per database, across tabs too: two tabs sharing a store would
 *   share a client id and hand out the same mutation ids, and the server
 *   would take the second of each pair for a duplicate. So the layer holds an
 *   exclusive Web Lock on its database for its lifetime; a second tab finds
 *   it taken and uses the next free slot (`name`, `name#1`, `name#2`, …),
 *   with its own client id and queue. A tab opened later takes over a free
 *   slot, queue included, so nothing a closed tab left pending is stranded.
 *   Without the Web Locks API (Node, old browsers) there is no locking.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import { getOwn, setOwn } from "../protocol/Sync.js"
import { type Batch, ClientStorage, type ClientStorageError, type StoredScope, type StoredState, unavailable } from "./ClientStorage.js"
import type { PendingMutation } from "./LocalView.js"

/**
 * Options of the IndexedDB storage.
 *
 * @since 0.1.0
 * @category options
 */
export interface Options {
  /** The database name; `mizu-sync` by default. One client per database. */
  readonly name?: string
  /** The `IDBFactory`; the global `indexedDB` by default. */
  readonly indexedDB?: IDBFactory
  /** The `IDBKeyRange` class; the global one by default. */
  readonly IDBKeyRange?: { readonly bound: (lower: string, upper: string, lowerOpen?: boolean, upperOpen?: boolean) => IDBKeyRange }
  /** The Web Locks manager; `navigator.locks` by default (none: no cross-tab locking). */
  readonly locks?: Pick<LockManager, "request">
  /** How many slots (tabs at once) to try before failing; 32 by default. */
  readonly maxSlots?: number
}

/**
 * Hold the lock `name` until the scope closes, if nobody holds it: true when
 * taken. With `ifAvailable`, the callback gets `null` when the lock is held.
 */
const tryLock = (locks: Pick<LockManager, "request">, name: string) =>
  Effect.acquireRelease(
    Effect.async<{ readonly held: boolean; readonly release: () => void }>((resume) => {
      let release = () => {}
      const held = new Promise<void>((r) => {
        release = r
      })
      locks.request(name, { ifAvailable: true, mode: "exclusive" }, (lock) => {
        resume(Effect.succeed({ held: lock !== null, release }))
        return lock === null ? undefined : held
      }).catch(() => resume(Effect.succeed({ held: false, release })))
    }),
    (lock) => Effect.sync(lock.release)
  )

const STORES = ["meta", "scopes", "rows", "pending"] as const

interface RowRecord {
  readonly scope: string
  readonly entity: string
  readonly id: string
  readonly data: unknown
}

interface MetaRecord {
  readonly clientId: string
  readonly nextId: number
}

const rowKey = (scope: string, entity: string, id: string) => `${scope}\u0000${entity}\u0000${id}`


const request = <A>(req: IDBRequest<A>): Promise<A> =>
  new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result)
    req.onerror = () => reject(req.error)
  })

const completion = (tx: IDBTransaction): Promise<void> =>
  new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve()
    tx.onerror = () => reject(tx.error)
    tx.onabort = () => reject(tx.error ?? new Error("transaction aborted"))
  })

const open = (factory: IDBFactory, name: string): Promise<IDBDatabase> =>
  new Promise((resolve, reject) => {
    const req = factory.open(name, 1)
    req.onupgradeneeded = () => {
      const db = req.result
      for (const store of STORES) if (!db.objectStoreNames.contains(store)) db.createObjectStore(store)
    }
    req.onsuccess = () => resolve(req.result)
    req.onerror = () => reject(req.error)
    req.onblocked = () => reject(new Error(`IndexedDB ${name} is blocked by another connection`))
  })

/**
 * Open the database; it is closed with the scope.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options = {}): Effect.Effect<ClientStorage["Type"], ClientStorageError, Scope.Scope> =>
  Effect.gen(function*() {
    const factory = options.indexedDB ?? globalThis.indexedDB
    const keyRange = options.IDBKeyRange ?? globalThis.IDBKeyRange
    if (factory === undefined || keyRange === undefined) return yield* unavailable("IndexedDB is not available here")
    const base = options.name ?? "mizu-sync"
    const locks = options.locks ?? (globalThis as { readonly navigator?: { readonly locks?: LockManager } }).navigator?.locks
    let name = base
    if (locks !== undefined) {
      const maxSlots = Math.max(1, options.maxSlots ?? 32)
      let slot = 0
      for (; slot < maxSlots; slot++) {
        const candidate = slot === 0 ? base : `${base}#${slot}`
        // each attempt gets its own scope: a lock not taken is released at once, the one taken stays
        const scope = yield* Effect.scope
        const child = yield* Scope.fork(scope, ExecutionStrategy.sequential)
        const lock = yield* Scope.extend(tryLock(locks, `mizu-sync:${candidate}`), child)
        if (lock.held) {
          name = candidate
          break
        }
        yield* Scope.close(child, Exit.void)
      }
      if (slot === maxSlots) return yield* unavailable(`all ${maxSlots} slots of IndexedDB ${base} are in use by other tabs`)
    }
    const db = yield* Effect.acquireRelease(
      Effect.tryPromise({ try: () => open(factory, name), catch: (cause) => unavailable(`cannot open IndexedDB ${name}`, cause) }),
      (db) => Effect.sync(() => db.close())
    )

    const load = Effect.tryPromise({
      try: async (): Promise<StoredState> => {
        const tx = db.transaction([...STORES], "readonly")
        const done = completion(tx)
        const [meta, scopeKeys, scopeValues, rows, pending] = await Promise.all([
          request(tx.objectStore("meta").get("meta")) as Promise<MetaRecord | undefined>,
          request(tx.objectStore("scopes").getAllKeys()),
          request(tx.objectStore("scopes").getAll()) as Promise<Array<{ readonly cursor: number }>>,
          request(tx.objectStore("rows").getAll()) as Promise<Array<RowRecord>>,
          request(tx.objectStore("pending").getAll()) as Promise<Array<PendingMutation>>
        ])
        await done
        // own properties whatever the name ("__proto__", "constructor"): see ClientStorage
        const scopes: Record<string, { cursor: number; rows: Record<string, Record<string, unknown>> }> = {}
        scopeKeys.forEach((key, i) => {
          setOwn(scopes, String(key), { cursor: scopeValues[i]?.cursor ?? 0, rows: {} })
        })
        for (const row of rows) {
          let scope = getOwn(scopes, row.scope)
          if (scope === undefined) {
            scope = { cursor: 0, rows: {} }
            setOwn(scopes, row.scope, scope)
          }
          let ids = getOwn(scope.rows, row.entity)
          if (ids === undefined) {
            ids = {}
            setOwn(scope.rows, row.entity, ids)
          }
          setOwn(ids, row.id, row.data)
        }
        return {
          clientId: meta?.clientId,
          nextId: meta?.nextId ?? 1,
          scopes: scopes as Record<string, StoredScope>,
          pending: [...pending].sort((a, b) => a.id - b.id)
        }
      },
      catch: (cause) => unavailable(`cannot read IndexedDB ${name}`, cause)
    })

    const commit = (batch: Batch) =>
      Effect.tryPromise({
        try: () => {
          const tx = db.transaction([...STORES], "readwrite", { durability: "strict" })
          const done = completion(tx)
          if (batch.meta !== undefined) {
            const meta: MetaRecord = { clientId: batch.meta.clientId, nextId: batch.meta.nextId }
            tx.objectStore("meta").put(meta, "meta")
          }
          const rows = tx.objectStore("rows")
          for (const w of batch.scopes ?? []) {
            if (w.reset === true) rows.delete(keyRange.bound(`${w.scope}\u0000`, `${w.scope}\u0001`, false, true))
            for (const [entity, id, data] of w.put ?? []) {
              const record: RowRecord = { scope: w.scope, entity, id, data }
              rows.put(record, rowKey(w.scope, entity, id))
            }
            for (const [entity, id] of w.delete ?? []) rows.delete(rowKey(w.scope, entity, id))
            tx.objectStore("scopes").put({ cursor: w.cursor }, w.scope)
          }
          const pending = tx.objectStore("pending")
          if (batch.pendingReplace !== undefined) {
            pending.clear()
            for (const m of batch.pendingReplace) pending.put(m, m.id)
          }
          for (const id of batch.pendingDelete ?? []) pending.delete(id)
          for (const m of batch.pendingPut ?? []) pending.put(m, m.id)
          return done
        },
        catch: (cause) => unavailable(`cannot write IndexedDB ${name}`, cause)
      })

    return ClientStorage.of({ load, commit })
  })

/**
 * The IndexedDB storage as a layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<ClientStorage, ClientStorageError> =>
  Layer.scoped(ClientStorage, make(options))
