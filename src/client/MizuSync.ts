/**
 * The sync client for front ends without Effect: the seed's `MizuSync`
 * (`push`, `pull(scope, cursor?)`, `on('changes')`) plus optimistic
 * `mutate`, queries and a sync status. A thin shell over `SyncClient` (and,
 * with `live`, a `LiveClient` in the same runtime) on a `ManagedRuntime`:
 * the guarantees are `SyncClient`'s, listeners get its events in order, and
 * every Promise rejects with a `MizuError` only.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import type { SnapshotData } from "../protocol/Sync.js"
import * as Entity from "../sync/Entity.js"
import type * as Mutation from "../sync/Mutation.js"
import * as ClientStorage from "./ClientStorage.js"
import * as IndexedDbStorage from "./IndexedDbStorage.js"
import * as LiveClient from "./LiveClient.js"
import { dispatch, Emitter } from "./internal/listeners.js"
import * as LocalView from "./LocalView.js"
import { layerOf as liveLayerOf, MizuLive, type MizuLiveOptions } from "./MizuLive.js"
import * as PromiseErrors from "./internal/promiseErrors.js"
import * as Query from "./Query.js"
import * as SyncClient from "./SyncClient.js"
import * as SyncTransport from "./SyncTransport.js"
import * as TabGroup from "./TabGroup.js"

/**
 * Event names of `on`, with what the listener receives.
 *
 * @since 0.1.0
 * @category models
 */
export interface MizuSyncEvents {
  /** The local view changed: every row that changed in one committed batch (the seed's `changes`). */
  readonly changes: ReadonlyArray<SyncClient.LocalChange>
  /** The server refused a mutation; it was rolled back. */
  readonly rejected: Extract<SyncClient.SyncEvent, { _tag: "Rejected" }>
  readonly reset: Extract<SyncClient.SyncEvent, { _tag: "Reset" }>
  readonly renumbered: Extract<SyncClient.SyncEvent, { _tag: "Renumbered" }>
  /** A request failed; it is retried with backoff. */
  readonly error: Extract<SyncClient.SyncEvent, { _tag: "Error" }>
  /** The push keeps failing at one mutation (`status.stuck`); it goes on retrying; `discard` lets the rest through. */
  readonly stuck: Extract<SyncClient.SyncEvent, { _tag: "Stuck" }>
  /** The server accepts only newer code (`version_too_old`): pushing stopped, nothing pending lost; reload the app (Replicache's `onUpdateNeeded`). */
  readonly updateNeeded: Extract<SyncClient.SyncEvent, { _tag: "UpdateNeeded" }>
  /** The scope's checksum differed from the server's; the rows of the ranges that differed were fetched and replaced. */
  readonly repaired: Extract<SyncClient.SyncEvent, { _tag: "Repaired" }>
  readonly status: SyncClient.SyncStatus
}

/**
 * Options of `MizuSync.open`, typed by the mutations `M` of the registry;
 * every one has a default that runs in a browser.
 *
 * @since 0.1.0
 * @category options
 */
export interface MizuSyncOptions<M extends Mutation.Mutation = Mutation.Mutation>
  extends SyncClient.Options<M>, Omit<Partial<SyncTransport.FetchOptions>, "baseUrl">
{
  /** The server's origin; `""` (same origin) by default. Also the live connection's, unless `live` names its own. */
  readonly baseUrl?: string
  /** `indexeddb` (the default where IndexedDB exists), `memory`, or any `ClientStorage` layer. */
  readonly storage?: "indexeddb" | "memory" | Layer.Layer<ClientStorage.ClientStorage, ClientStorage.ClientStorageError>
  /** The IndexedDB database name; `mizu-sync` by default. */
  readonly dbName?: string
  /**
   * Share the store among this browser's tabs (`TabGroup`): one IndexedDB
   * database, one leader tab that owns the network (one WebSocket, the
   * pulls, the push queue), every tab's mutations in every tab's view at
   * once, offline too. True by default where the browser has Web Locks and
   * `BroadcastChannel` and the storage is `indexeddb`; false gives each tab
   * its own store, client id and socket (`IndexedDbStorage`'s slots).
   */
  readonly tabs?: boolean
  /**
   * Open a live connection in the same runtime, for pokes (and `sync.live`);
   * `true` for the defaults. It takes `baseUrl` and `token` from these
   * options unless it gives its own.
   */
  readonly live?: boolean | MizuLiveOptions
  /** Replace the HTTP transport (tests). */
  readonly transport?: Layer.Layer<SyncTransport.SyncTransport>
}

/** The listener name of each event of the Effect API but `Changes` (whose listeners get its rows). */
const eventNames = {
  Rejected: "rejected",
  Reset: "reset",
  Renumbered: "renumbered",
  Error: "error",
  Stuck: "stuck",
  UpdateNeeded: "updateNeeded",
  Repaired: "repaired"
} as const satisfies Record<Exclude<SyncClient.SyncEvent["_tag"], "Changes">, keyof MizuSyncEvents>

/**
 * One mutation for `push`: a name of the registry with its args (any name
 * and args without a registry).
 *
 * @since 0.1.0
 * @category models
 */
export type MutationInput<M extends Mutation.Mutation = Mutation.Mutation> = string extends M["name"]
  ? { readonly name: string; readonly scope?: string; readonly args?: unknown }
  : {
    readonly [N in M["name"]]: { readonly name: N; readonly scope?: string; readonly args: SyncClient.MutationArgs<M, N> }
  }[M["name"]]

/** The live options of `MizuSync.open`: `live` with `baseUrl` and `token` of the sync options unless it has its own. */
const liveOptionsOf = (options: MizuSyncOptions): MizuLiveOptions | undefined => {
  if (options.live === undefined || options.live === false) return undefined
  const own: MizuLiveOptions = options.live === true ? {} : options.live
  const baseUrl = own.baseUrl ?? (options.baseUrl === "" ? undefined : options.baseUrl)
  const token = own.token ?? options.token
  return { ...own, ...(baseUrl === undefined ? {} : { baseUrl }), ...(token === undefined ? {} : { token }) }
}

const DEFAULT_DB_NAME = "mizu-sync"

/** The storage of the options, and the tab group over it (one of one unless the tabs share an IndexedDB store). */
const storageLayerOf = (options: MizuSyncOptions): {
  readonly storage: Layer.Layer<ClientStorage.ClientStorage, ClientStorage.ClientStorageError>
  readonly tabs: Layer.Layer<TabGroup.TabGroup> | undefined
} => {
  const storage = options.storage ?? (globalThis.indexedDB === undefined ? "memory" : "indexeddb")
  if (storage === "memory") return { storage: ClientStorage.layerMemory, tabs: undefined }
  if (storage !== "indexeddb") return { storage, tabs: undefined }
  const name = options.dbName ?? DEFAULT_DB_NAME
  const navigatorLocks = (globalThis as { readonly navigator?: { readonly locks?: LockManager } }).navigator?.locks
  const shared = options.tabs !== false && navigatorLocks !== undefined && globalThis.BroadcastChannel !== undefined
  return {
    storage: IndexedDbStorage.layer({ name, shared }),
    tabs: shared ? TabGroup.layerBrowser({ name }) : undefined
  }
}

type Services = SyncClient.SyncClient | LiveClient.LiveClient

/**
 * A sync client with a Promise/event API. Create it with `MizuSync.open`;
 * `close()` stops its background work (the stored state stays). Its Promises
 * reject with a `MizuError` (`MutateError`, `SyncError`, `ClientStorageError`,
 * …; see `PromiseErrors`), never with an Effect `FiberFailure`.
 *
 * @since 0.1.0
 * @category constructors
 */
export class MizuSync<M extends Mutation.Mutation = Mutation.Mutation> extends Emitter<MizuSyncEvents> {
  private readonly dispatcher: Fiber.RuntimeFiber<unknown, unknown>
  private closed = false
  private lastStatus: SyncClient.SyncStatus

  private constructor(
    private readonly runtime: ManagedRuntime.ManagedRuntime<Services, ClientStorage.ClientStorageError>,
    private readonly client: SyncClient.SyncClient["Type"],
    /** The live connection, when `live` was given. */
    readonly live: MizuLive | undefined
  ) {
    super()
    this.lastStatus = runtime.runSync(client.status)
    this.dispatcher = runtime.runFork(dispatch({
      events: client.subscribeEvents,
      statusChanges: client.statusChanges,
      onEvent: (event) => {
        if (event._tag === "Changes") this.emit("changes", event.changes)
        else this.emit(eventNames[event._tag], event as never)
      },
      onStatus: (status) => {
        this.lastStatus = status
        this.emit("status", status)
      }
    }))
  }

  /**
   * Open the client: load its stored state, start syncing. Typed by the
   * registry: without one, `mutate` takes any name and args. Rejects with a
   * `ClientStorageError` when the storage cannot be opened.
   */
  static async open<M extends Mutation.Mutation = Mutation.Mutation>(options: MizuSyncOptions<M> = {}): Promise<MizuSync<M>> {
    const transport = options.transport ?? SyncTransport.layerFetch({ ...options, baseUrl: options.baseUrl ?? "" })
    const liveOptions = liveOptionsOf(options)
    const { storage, tabs } = storageLayerOf(options)
    const liveLayer = liveOptions === undefined ? Layer.empty : liveLayerOf(liveOptions, tabs)
    const layer = Layer.merge(
      SyncClient.layer(options).pipe(Layer.provide(Layer.mergeAll(transport, storage, liveLayer, tabs ?? Layer.empty))),
      liveLayer
    ) as Layer.Layer<Services, ClientStorage.ClientStorageError>
    const runtime = ManagedRuntime.make(layer)
    const client = await PromiseErrors.runPromise(runtime, SyncClient.SyncClient).catch(async (error: unknown) => {
      await runtime.dispose()
      throw error
    })
    const live = liveOptions === undefined ? undefined : new MizuLive(liveOptions, runtime)
    return new MizuSync<M>(runtime, client, live)
  }

  /** This client's id, stable across restarts. */
  get clientId(): string {
    return this.client.clientId
  }

  /** Whether this tab leads the browser's tabs of this store (owns the socket, pushes and pulls); true when not shared. */
  get isLeader(): boolean {
    return this.runtime.runSync(this.client.isLeader)
  }

  /**
   * Apply a mutation locally at once, queue it and push it. Typed by the
   * registry (a name outside it, or args of the wrong shape, do not
   * type-check). Rejects with a `MutateError` (queuing nothing) on an
   * unknown mutation, bad args, a bad scope or a local rejection.
   */
  mutate<N extends M["name"]>(name: N, args: SyncClient.MutationArgs<M, N>, options?: SyncClient.MutateOptions): Promise<SyncClient.PendingMutation>
  mutate<Def extends M>(mutation: Def, args: Mutation.ArgsOf<Def>, options?: SyncClient.MutateOptions): Promise<SyncClient.PendingMutation>
  mutate(mutation: string | Mutation.Mutation, args: unknown, options?: SyncClient.MutateOptions): Promise<SyncClient.PendingMutation> {
    return this.run(this.client.mutateUnknown(mutation, args, options))
  }

  /** `mutate` with a name (or definition) and args known only at run time: the same checks, at run time only. */
  mutateUnknown(mutation: string | Mutation.Mutation, args: unknown, options?: SyncClient.MutateOptions): Promise<SyncClient.PendingMutation> {
    return this.run(this.client.mutateUnknown(mutation, args, options))
  }

  /**
   * Push: with mutations (the seed's `push(mutations)`), each is queued as by
   * `mutate` first; then the queue is pushed until every mutation has an
   * answer. Rejects with a `MutateError` for a mutation refused before it
   * was queued (the ones before it stay queued), a `SyncError` when the push
   * does not complete.
   */
  async push(mutations?: ReadonlyArray<MutationInput<M>>): Promise<void> {
    for (const m of mutations ?? []) {
      await this.run(this.client.mutateUnknown(m.name, m.args, m.scope === undefined ? {} : { scope: m.scope }))
    }
    return this.run(this.client.push)
  }

  /** Pull a scope to its head (and keep it synced). With `cursor` (a poke's), only if the local cursor is below it. Rejects with a `SyncError`. */
  pull(scope: string, cursor?: number): Promise<void> {
    return this.run(this.client.pull(scope, cursor))
  }

  /** Push and pull until nothing is pending. Rejects with a `SyncError` (`not_settled` when the server keeps the queue from emptying). */
  sync(): Promise<void> {
    return this.run(this.client.sync)
  }

  /** Keep a scope synced. */
  track(scope: string): Promise<void> {
    return this.run(this.client.track(scope))
  }

  /** An entity's rows in a scope's view: decoded with an `Entity`, raw JSON with a name. */
  query<A, I>(scope: string, entity: Entity.Entity<A, I>): ReadonlyArray<readonly [string, A]>
  query(scope: string, entity: string): ReadonlyArray<readonly [string, unknown]>
  query(scope: string, entity: Entity.Entity<unknown, unknown> | string): ReadonlyArray<readonly [string, unknown]> {
    if (typeof entity !== "string") return this.runtime.runSync(this.client.query(scope, entity))
    const data = this.runtime.runSync(this.client.view(scope))[entity] ?? {}
    return Object.entries(data)
  }

  /** One row of a scope's view. */
  get<A, I>(scope: string, entity: Entity.Entity<A, I> | string, id: string): A | unknown | undefined {
    if (typeof entity !== "string") return Option.getOrUndefined(this.runtime.runSync(this.client.get(scope, entity, id)))
    return LocalView.getRow(LocalView.fromSnapshot(this.view(scope)), entity, id).pipe(Option.getOrUndefined)
  }

  /** A scope's whole view as JSON. */
  view(scope: string): SnapshotData {
    return this.runtime.runSync(this.client.view(scope))
  }

  /** Call `listener` with the entity's rows now and after every change to them; returns a function that stops it. */
  subscribe<A, I>(scope: string, entity: Entity.Entity<A, I>, listener: (rows: ReadonlyArray<readonly [string, A]>) => void): () => void {
    const fiber = this.runtime.runFork(Stream.runForEach(this.client.watch(scope, entity), (rows) =>
      Effect.sync(() => {
        try {
          listener(rows)
        } catch (error) {
          this.listenerFailed(error)
        }
      })))
    return () => {
      this.runtime.runFork(Fiber.interrupt(fiber))
    }
  }

  /**
   * Call `listener` with the result of `query` now, and again each time a
   * row it read changes and the result with it (compared structurally).
   * The query reads the local view (optimistic) through `tx`, across scopes
   * and entities, and may be async. A query that throws (or reads a row that
   * does not decode: a `QueryError`) goes to `onError` (else the log), and
   * the watch goes on. Returns a function that stops it: after it returns,
   * neither the query nor the listeners are called again.
   */
  watch<A>(
    query: (tx: Query.PlainReadTransaction) => A | PromiseLike<A>,
    listener: (result: A) => void,
    options?: { readonly onError?: (error: unknown) => void }
  ): () => void {
    let stopped = false
    const toError = (e: Entity.EntityError) => PromiseErrors.fromFailure(e)
    const run = (tx: Query.ReadTransaction) =>
      stopped ? Effect.never : Effect.either(Effect.tryPromise({ try: () => Promise.resolve(query(Query.plain(tx, toError))), catch: (e) => e }))
    // a listener's bug must not stop the watch
    const safely = (f: () => void) => {
      if (stopped) return
      try {
        f()
      } catch (error) {
        this.listenerFailed(error)
      }
    }
    const onError = options?.onError ?? ((error: unknown) => this.runtime.runFork(Effect.logError("MizuSync query failed", error)))
    const fiber = this.runtime.runFork(Stream.runForEach(this.client.watch(run), (result) =>
      Effect.sync(() =>
        Either.match(result, {
          onLeft: (error) => safely(() => onError(error)),
          onRight: (value) => safely(() => listener(value))
        })
      )))
    return () => {
      stopped = true
      this.runtime.runFork(Fiber.interrupt(fiber))
    }
  }

  /**
   * Drop a pending mutation the server has not applied (a `stuck` one):
   * rolled back at once, the later ones go on. Rejects with a
   * `DiscardError` (`not_pending`, `accepted`).
   */
  discard(id: number): Promise<SyncClient.PendingMutation> {
    return this.run(this.client.discard(id))
  }

  /** What is pending, by id. */
  get pending(): ReadonlyArray<SyncClient.PendingMutation> {
    return this.runtime.runSync(this.client.pending)
  }

  /** The sync status as last seen. */
  get status(): SyncClient.SyncStatus {
    return this.lastStatus
  }

  /** Stop syncing (and the live connection, when owned); the stored state stays for the next `open`. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    await PromiseErrors.runPromise(this.runtime, Fiber.interrupt(this.dispatcher))
    await this.live?.close()
    await this.runtime.dispose()
  }

  private emit<K extends keyof MizuSyncEvents>(name: K, event: MizuSyncEvents[K]) {
    this.notify(name, event, this.listenerFailed)
  }

  /** A listener's bug must not stop the others: it goes to Effect's logger (routable by the app). */
  private readonly listenerFailed = (error: unknown): void => {
    this.runtime.runFork(Effect.logError("MizuSync listener failed", error))
  }

  private run<A, E extends PromiseErrors.Failure>(effect: Effect.Effect<A, E, Services>): Promise<A> {
    if (this.closed) return Promise.reject(PromiseErrors.closed("MizuSync"))
    return PromiseErrors.runPromise(this.runtime, effect)
  }
}
