/**
 * The IndexedDB layer of `ClientStorage` (the invariants are in
 * `IndexedDbStorage`): the slot taken under a Web Lock, the database opened
 * for the scope, `load` and `commit` as one IndexedDB transaction each.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import { getOwn, setOwn } from "../../protocol/Sync.js"
import { type Batch, ClientStorage, type ClientStorageError, type StoredScope, type StoredState, unavailable } from "../ClientStorage.js"
import type { Options } from "../IndexedDbStorage.js"
import type { PendingMutation } from "../LocalView.js"

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
 * See `IndexedDbStorage.make`. A builder: it opens the database, then one
 * short method per `ClientStorage` operation over it.
 */
export const make = (options: Options = {}): Effect.Effect<ClientStorage["Type"], ClientStorageError, Scope.Scope> =>
  Effect.gen(function*() {
    const factory = options.indexedDB ?? globalThis.indexedDB
    const keyRange = options.IDBKeyRange ?? globalThis.IDBKeyRange
    if (factory === undefined || keyRange === undefined) return yield* unavailable("IndexedDB is not available here")
    const base = options.name ?? "mizu-sync"
    const locks = options.locks ?? (globalThis as { readonly navigator?: { readonly locks?: LockManager } }).navigator?.locks
    let name = base
    if (locks !== undefined && options.shared !== true) {
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
        const [meta, revision, scopeKeys, scopeValues, rows, pending] = await Promise.all([
          request(tx.objectStore("meta").get("meta")) as Promise<MetaRecord | undefined>,
          request(tx.objectStore("meta").get("revision")) as Promise<number | undefined>,
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
          pending: [...pending].sort((a, b) => a.id - b.id),
          ...(revision === undefined ? {} : { revision })
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
          if (batch.revision !== undefined) tx.objectStore("meta").put(batch.revision, "revision")
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

    const revision = Effect.tryPromise({
      try: async () => {
        const tx = db.transaction(["meta"], "readonly")
        const value = await request(tx.objectStore("meta").get("revision")) as number | undefined
        return typeof value === "number" ? value : 0
      },
      catch: (cause) => unavailable(`cannot read IndexedDB ${name}`, cause)
    })

    return ClientStorage.of({ load, commit, revision })
  })
