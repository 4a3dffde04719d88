/**
 * A small in-memory IndexedDB: just what `IndexedDbStorage` uses (open with
 * an upgrade, object stores with out-of-line keys, put / delete (key or
 * range) / clear / get / getAll / getAllKeys, transactions that commit all
 * or nothing), so the storage can be tested in Node. Databases outlive
 * connections, so closing and reopening is a browser restart.
 */

type Key = string | number

const keyId = (key: Key) => `${typeof key}:${key}`
/** IndexedDB order: numbers before strings. */
const compareKeys = (a: Key, b: Key) =>
  typeof a !== typeof b ? (typeof a === "number" ? -1 : 1) : a < b ? -1 : a > b ? 1 : 0

export class FakeKeyRange {
  constructor(readonly lower: Key, readonly upper: Key, readonly lowerOpen: boolean, readonly upperOpen: boolean) {}
  static bound(lower: string, upper: string, lowerOpen = false, upperOpen = false): FakeKeyRange {
    return new FakeKeyRange(lower, upper, lowerOpen, upperOpen)
  }
  includes(key: Key): boolean {
    const lo = compareKeys(key, this.lower)
    const hi = compareKeys(key, this.upper)
    return (this.lowerOpen ? lo > 0 : lo >= 0) && (this.upperOpen ? hi < 0 : hi <= 0)
  }
}

type Rows = Map<string, { readonly key: Key; readonly value: unknown }>
type Data = Map<string, Rows>

class FakeRequest<T> {
  result: T | undefined = undefined
  error: unknown = null
  onsuccess: (() => void) | null = null
  onerror: (() => void) | null = null
  onupgradeneeded: (() => void) | null = null
  onblocked: (() => void) | null = null
}

class FakeStore {
  constructor(private readonly tx: FakeTransaction, private readonly name: string) {}
  private rows(): Rows {
    const rows = this.tx.data.get(this.name)
    if (rows === undefined) throw new Error(`no object store ${this.name}`)
    return rows
  }
  private request<T>(f: () => T): FakeRequest<T> {
    const req = new FakeRequest<T>()
    this.tx.enqueue(() => {
      req.result = f()
      req.onsuccess?.()
    })
    return req
  }
  put(value: unknown, key: Key) {
    this.tx.checkWritable()
    const copy = structuredClone(value)
    return this.request(() => {
      this.rows().set(keyId(key), { key, value: copy })
      return key
    })
  }
  delete(key: Key | FakeKeyRange) {
    this.tx.checkWritable()
    return this.request(() => {
      const rows = this.rows()
      if (key instanceof FakeKeyRange) {
        for (const [id, row] of [...rows]) if (key.includes(row.key)) rows.delete(id)
      } else {
        rows.delete(keyId(key))
      }
      return undefined
    })
  }
  clear() {
    this.tx.checkWritable()
    return this.request(() => {
      this.rows().clear()
      return undefined
    })
  }
  get(key: Key) {
    return this.request(() => structuredClone(this.rows().get(keyId(key))?.value))
  }
  private sorted() {
    return [...this.rows().values()].sort((a, b) => compareKeys(a.key, b.key))
  }
  getAll() {
    return this.request(() => this.sorted().map((r) => structuredClone(r.value)))
  }
  getAllKeys() {
    return this.request(() => this.sorted().map((r) => r.key))
  }
}

class FakeTransaction {
  oncomplete: (() => void) | null = null
  onerror: (() => void) | null = null
  onabort: (() => void) | null = null
  error: unknown = null
  /** The transaction's own copy of the stores: committed only when it completes. */
  readonly data: Data
  private readonly ops: Array<() => void> = []
  constructor(private readonly db: FakeDatabase, private readonly mode: "readonly" | "readwrite") {
    this.data = new Map([...db.shared.data].map(([name, rows]) => [name, new Map(rows)]))
    setTimeout(() => this.finish(), 0)
  }
  checkWritable() {
    if (this.mode !== "readwrite") throw new Error("ReadOnlyError")
  }
  enqueue(op: () => void) {
    this.ops.push(op)
  }
  objectStore(name: string) {
    return new FakeStore(this, name)
  }
  private finish() {
    try {
      for (const op of this.ops) op()
      if (this.mode === "readwrite" && this.db.shared.failNextCommit) {
        this.db.shared.failNextCommit = false
        throw new Error("QuotaExceededError (injected)")
      }
    } catch (error) {
      this.error = error
      this.onabort?.()
      return
    }
    if (this.mode === "readwrite") this.db.shared.data = this.data
    this.oncomplete?.()
  }
}

interface Shared {
  data: Data
  failNextCommit: boolean
}

class FakeDatabase {
  closed = false
  constructor(readonly shared: Shared) {}
  get objectStoreNames() {
    return { contains: (name: string) => this.shared.data.has(name) }
  }
  createObjectStore(name: string) {
    this.shared.data.set(name, new Map())
  }
  transaction(_names: ReadonlyArray<string>, mode: "readonly" | "readwrite" = "readonly", _options?: unknown) {
    if (this.closed) throw new Error("InvalidStateError: the connection is closed")
    return new FakeTransaction(this, mode)
  }
  close() {
    this.closed = true
  }
}

/** An `IDBFactory` stand-in: databases by name, kept across `open`s. */
export class FakeIndexedDb {
  private readonly databases = new Map<string, Shared>()
  open(name: string, _version?: number) {
    const req = new FakeRequest<FakeDatabase>()
    setTimeout(() => {
      let shared = this.databases.get(name)
      const fresh = shared === undefined
      if (shared === undefined) {
        shared = { data: new Map(), failNextCommit: false }
        this.databases.set(name, shared)
      }
      req.result = new FakeDatabase(shared)
      if (fresh) req.onupgradeneeded?.()
      req.onsuccess?.()
    }, 0)
    return req
  }
  /** Make the next read-write transaction of `name` abort. */
  failNextCommit(name: string) {
    const shared = this.databases.get(name)
    if (shared !== undefined) shared.failNextCommit = true
  }
}
