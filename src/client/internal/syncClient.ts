/**
 * `SyncClient.make`: loads the stored state, builds the one state owner
 * (`syncState`), the push and pull workers and the live wiring, and the
 * client's operations over them: `mutate` and `track` (commits through the
 * rebase), queries over the views as they are (no lock, no I/O), `watch`.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as FiberSet from "effect/FiberSet"
import * as Option from "effect/Option"
import type * as ParseResult from "effect/ParseResult"
import * as PubSub from "effect/PubSub"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import * as Protocol from "../../protocol/Sync.js"
import * as Entity from "../../sync/Entity.js"
import type * as Mutation from "../../sync/Mutation.js"
import { ClientStorage, type ClientStorageError } from "../ClientStorage.js"
import { LiveClient } from "../LiveClient.js"
import * as LocalView from "../LocalView.js"
import type { PendingMutation, Rows } from "../LocalView.js"
import * as PushPolicy from "../PushPolicy.js"
import * as Query from "../Query.js"
import { type Client, MutateError, type MutateOptions, type Options, SyncError, type SyncFailure } from "../SyncClient.js"
import { SyncTransport } from "../SyncTransport.js"
import { TabGroup } from "../TabGroup.js"
import * as Live from "./syncLive.js"
import * as Pull from "./syncPull.js"
import * as QueryInternal from "./query.js"
import * as Push from "./syncPush.js"
import * as Rebase from "./syncRebase.js"
import * as SyncState from "./syncState.js"
import * as Tabs from "./syncTabs.js"
import * as Versions from "./syncVersions.js"
import * as TabGroupInternal from "./tabGroup.js"

const validScope = Schema.is(Protocol.Scope)

const newClientId = (): string => {
  const bytes = new Uint8Array(12)
  globalThis.crypto.getRandomValues(bytes)
  return `c-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`
}

const invalidScope = (scope: string) => new MutateError({ reason: "invalid_scope", message: `invalid scope ${JSON.stringify(scope)}` })

/** See `SyncClient.make`. */
export const make = <M extends Mutation.Mutation = Mutation.Mutation>(
  options: Options<M> = {}
): Effect.Effect<Client<M>, ClientStorageError, SyncTransport | ClientStorage | Scope.Scope> =>
  Effect.gen(function*() {
    const config = SyncState.config(options)
    const storage = yield* ClientStorage
    if (options.clientId !== undefined && !Schema.is(Protocol.ClientId)(options.clientId)) {
      return yield* Effect.dieMessage(`SyncClient: invalid clientId ${JSON.stringify(options.clientId)} (1..128 of A-Z a-z 0-9 _ - : .)`)
    }
    const group = Option.getOrElse(yield* Effect.serviceOption(TabGroup), TabGroupInternal.makeSolo)
    const tabs = group.shared && storage.revision === undefined ? TabGroupInternal.makeSolo() : group
    if (tabs !== group) yield* Effect.logWarning("SyncClient: this ClientStorage has no revision, so it cannot be shared by tabs; syncing as one tab")
    // the first tab of a new store picks the client id: under the group's lock, so two tabs opening at once agree
    // and a queue made by older code is upgraded to this code's app version before anything is pushed
    const { initial, revision, upgraded } = yield* tabs.exclusive(Effect.gen(function*() {
      const loaded = yield* storage.load
      const upgraded = yield* Versions.upgradeStored(config.registry, loaded)
      const initial = yield* Rebase.fromStored(config.registry, upgraded.stored, loaded.clientId ?? options.clientId ?? newClientId())
      const revision = loaded.revision ?? 0
      const write = {
        ...upgraded.write,
        ...(loaded.clientId === undefined ? { meta: { clientId: initial.clientId, nextId: initial.nextId } } : {})
      }
      if (upgraded.write === undefined && loaded.clientId !== undefined) return { initial, revision, upgraded }
      yield* storage.commit(tabs.shared ? { ...write, revision: revision + 1 } : write)
      return { initial, revision: tabs.shared ? revision + 1 : revision, upgraded }
    }))
    const s = yield* SyncState.make(config, initial, {
      transport: yield* SyncTransport,
      storage,
      live: yield* Effect.serviceOption(LiveClient),
      tabs
    }, revision)
    yield* Effect.forEach(upgraded.events, s.publish, { discard: true })
    const push = yield* Push.make(s)
    const pull = yield* Pull.make(s)
    const live = Live.make(s)
    const shared = yield* Tabs.make(s)
    const { mutate, track } = makeWrites(s, live)
    const local = makeSync(s, push, pull, track)
    const pullNow = (scope: string, cursor?: number) =>
      Effect.zipRight(track(scope), shared.viaLeader({ _tag: "Pull", scope, cursor }, local.pullNow(scope, cursor)))
    const sync = shared.viaLeader({ _tag: "Sync" }, local.sync)
    const pushNow = shared.viaLeader({ _tag: "Push" }, push.push)
    yield* shared.start({ push: push.push, sync: local.sync, pull: local.pullNow })
    yield* start(s, { push, pull, live, shared }, options.scopes ?? [])
    const reads = makeReads(s)
    const client: Client<M> = {
      clientId: s.clientId,
      isLeader: tabs.isLeader,
      registry: options.registry,
      mutate,
      mutateUnknown: mutate,
      track,
      pull: pullNow,
      push: pushNow,
      sync,
      query: reads.query,
      get: reads.get,
      view: (scope) => Effect.sync(() => LocalView.toSnapshot(reads.viewOf(scope))),
      cursor: (scope) => Effect.sync(() => s.current().scopes.get(scope)?.cursor ?? 0),
      scopes: Effect.sync(() => [...s.coordination.tracked]),
      pending: Effect.sync(() => Rebase.visible(s.current().pending)),
      discard: push.discard,
      watch: reads.watch as Client<M>["watch"],
      status: SubscriptionRef.get(s.status),
      statusChanges: s.status.changes,
      subscribeEvents: PubSub.subscribe(s.events),
      events: Stream.fromPubSub(s.events)
    }
    return client
  })

/** `sync` (push and pull until the queue is empty) and `pull` (one scope, now). */
const makeSync = (
  s: SyncState.SyncState,
  push: Push.Push,
  pull: Pull.Pull,
  track: (scope: string) => Effect.Effect<void, MutateError | ClientStorageError>
) => {
  const visible = () => Rebase.visible(s.current().pending)

  const sync: Effect.Effect<void, SyncFailure> = Effect.gen(function*() {
    for (let round = 0; round < 20; round++) {
      yield* push.push
      for (const scope of new Set([...s.coordination.tracked, ...visible().map((m) => m.scope)])) yield* pull.pullScope(scope)
      if (visible().length === 0) return
    }
    return yield* new SyncError({ reason: "not_settled", message: `${visible().length} mutations still pending` })
  })

  const pullNow = (scope: string, cursor?: number) =>
    Effect.gen(function*() {
      yield* track(scope)
      const local = s.current().scopes.get(scope)?.cursor ?? 0
      if (cursor !== undefined && cursor <= local && !s.coordination.needsReset.has(scope)) return
      yield* pull.pullScope(scope)
    })

  return { sync, pullNow }
}

/**
 * The background work: the scopes of `options`, the live wiring (every tab:
 * a follower's subscriptions go through the leader's socket) and, in the
 * tab that leads, both workers and the failsafe pull, once it leads (at
 * once without a `TabGroup`).
 */
const start = (
  s: SyncState.SyncState,
  parts: { readonly push: Push.Push; readonly pull: Pull.Pull; readonly live: Live.Live; readonly shared: Tabs.Tabs },
  scopes: ReadonlyArray<string>
) =>
  Effect.gen(function*() {
    for (const scope of scopes) {
      if (!validScope(scope)) {
        yield* Effect.logWarning(`SyncClient: ignoring the invalid scope ${JSON.stringify(scope)}`)
        continue
      }
      yield* s.locked(Effect.suspend(() => s.commit(Rebase.addScope(s.current(), scope))))
      s.coordination.tracked.add(scope)
    }
    const lead = Effect.gen(function*() {
      // what the other tabs wrote while this one followed
      yield* s.locked(Effect.void)
      yield* FiberSet.run(s.fibers, parts.push.worker)
      yield* FiberSet.run(s.fibers, parts.pull.worker)
      yield* FiberSet.run(s.fibers, parts.pull.failsafe)
      yield* Effect.forEach(s.coordination.tracked, s.requestPull, { discard: true })
      if (s.current().pending.length > 0) yield* SyncState.wake(s.pushWake)
      yield* parts.shared.announce
    })
    if (s.tabs.shared) {
      const scope = yield* Effect.scope
      yield* FiberSet.run(s.fibers, Effect.zipRight(
        s.tabs.whenLeader,
        lead.pipe(
          Scope.extend(scope),
          Effect.catchAll((e) => Effect.logError("SyncClient: cannot take over as the leader tab", e.message))
        )
      ))
    } else yield* lead
    yield* parts.live.start
  })

/** What `mutate` checked and prepared: the definition (if any), the decoded args, their wire form. */
interface Prepared {
  readonly definition: Mutation.Mutation | undefined
  readonly args: unknown
  readonly wire: unknown
}

const invalidArgs = (e: ParseResult.ParseError) => new MutateError({ reason: "invalid_args", message: Protocol.formatParseError(e) })

/** Check a mutation against the registry and its args against its Schema; the args in both forms. */
const prepare = (registry: Mutation.Registry | undefined, mutation: Mutation.Mutation | string, args: unknown): Effect.Effect<Prepared, MutateError> => {
  const name = typeof mutation === "string" ? mutation : mutation.name
  const known = registry?.mutations.get(name)
  if (registry !== undefined && known === undefined) {
    return Effect.fail(new MutateError({ reason: "unknown_mutation", message: `unknown mutation ${name}` }))
  }
  const definition = known ?? (typeof mutation === "string" ? undefined : mutation)
  if (definition === undefined) return Effect.succeed({ definition: undefined, args, wire: args })
  if (typeof mutation === "string") {
    return Schema.decodeUnknown(definition.args)(args).pipe(
      Effect.flatMap((decoded) => Effect.map(Schema.encode(definition.args)(decoded), (wire) => ({ definition, args: decoded, wire }))),
      Effect.mapError(invalidArgs)
    )
  }
  return Schema.encodeUnknown(definition.args)(args).pipe(
    Effect.map((wire) => ({ definition, args, wire })),
    Effect.mapError(invalidArgs)
  )
}

/** `track` and `mutate`: the writes the app makes. */
const makeWrites = (s: SyncState.SyncState, live: Live.Live) => {
  const { config } = s

  const track = (scope: string): Effect.Effect<void, MutateError | ClientStorageError> =>
    Effect.gen(function*() {
      if (!validScope(scope)) return yield* invalidScope(scope)
      if (s.coordination.tracked.has(scope)) return
      yield* s.locked(Effect.suspend(() => s.commit(Rebase.addScope(s.current(), scope))))
      if (s.coordination.tracked.has(scope)) return
      s.coordination.tracked.add(scope)
      yield* s.requestPull(scope)
      yield* live.subscribe([scope])
    })

  const mutate = (mutation: Mutation.Mutation | string, args: unknown, opts?: MutateOptions): Effect.Effect<PendingMutation, MutateError | ClientStorageError> =>
    Effect.gen(function*() {
      const name = typeof mutation === "string" ? mutation : mutation.name
      const scope = opts?.scope ?? config.defaultScope
      if (!validScope(scope)) return yield* invalidScope(scope)
      if (PushPolicy.isReservedName(name)) return yield* new MutateError({ reason: "unknown_mutation", message: `${name} is reserved` })
      const prepared = yield* prepare(config.registry, mutation, args)
      const bytes = PushPolicy.singleRequestBytes(s.clientId, PushPolicy.wireOf({ id: s.current().nextId, name, scope, args: prepared.wire }))
      if (bytes > config.maxPushBytes) {
        const message = `${name}: a push of it alone is ${bytes} bytes, over maxPushBytes (${config.maxPushBytes})`
        return yield* new MutateError({ reason: "too_large", message })
      }
      const result = yield* s.locked(Effect.gen(function*() {
        const state = s.current()
        const m: PendingMutation = {
          id: state.nextId,
          name,
          scope,
          args: prepared.wire,
          ...(config.registry === undefined ? {} : { version: config.registry.version })
        }
        const local = prepared.definition === undefined ? undefined : { definition: prepared.definition, args: prepared.args }
        const applied = yield* Rebase.applyMutate(config.registry, state, m, local)
        if (Either.isLeft(applied)) return yield* new MutateError({ reason: applied.left.reason, message: applied.left.message })
        yield* s.commit(applied.right)
        return m
      }))
      yield* SyncState.wake(s.pushWake)
      yield* track(scope)
      return result
    }).pipe(Effect.withSpan("SyncClient.mutate", { attributes: { name: typeof mutation === "string" ? mutation : mutation.name } }))

  return { track, mutate }
}

/** Queries: the views as they are now (replaced, never changed, by commits), and watches over the events. */
const makeReads = (s: SyncState.SyncState) => {
  const registry = s.config.registry
  const viewOf = (scope: string): Rows => s.current().scopes.get(scope)?.view ?? LocalView.emptyRows()

  /**
   * A stored row this code's Schema (and the entity's migration) cannot
   * read: left out of reads, and its scope reset from a snapshot once (the
   * server may have it in a shape this code reads), with a warning.
   */
  const resetForSchema = new Set<string>()
  const onUnreadable: Query.OnUnreadable = (scope, entity, id, error) =>
    Effect.suspend(() => {
      if (resetForSchema.has(scope)) return Effect.void
      resetForSchema.add(scope)
      s.coordination.needsReset.set(scope, "schema")
      return Effect.zipRight(
        Effect.logWarning(`SyncClient: ${entity} ${id} in ${scope} does not decode with this code's Schema; left out of reads, the scope is reset from a snapshot`, error.message),
        s.requestPull(scope)
      )
    })
  const readRow = QueryInternal.readRowWith(onUnreadable)

  const query = <A, I>(scope: string, entity: Entity.Entity<A, I>) =>
    Effect.suspend(() => {
      const ids = viewOf(scope).get(entity.name)
      const rows = ids === undefined ? [] : [...ids].sort(([a], [b]) => Entity.idOrder(a, b))
      return Effect.map(
        Effect.forEach(rows, ([id, json]) => Effect.map(readRow(entity, scope, id, json), Option.map((value) => [id, value] as const))),
        (found) => found.flatMap((r) => Option.isSome(r) ? [r.value] : [])
      )
    })

  const get = <A, I>(scope: string, entity: Entity.Entity<A, I>, id: string) =>
    Effect.suspend(() =>
      Option.match(LocalView.getRow(viewOf(scope), entity.name, id), {
        onNone: () => Effect.succeedNone,
        onSome: (json) => readRow(entity, scope, id, json)
      })
    )

  const watchEntity = <A, I>(scope: string, entity: Entity.Entity<A, I>) =>
    Stream.unwrapScoped(Effect.gen(function*() {
      const events = yield* PubSub.subscribe(s.events)
      const touched = Stream.fromQueue(events).pipe(
        Stream.filter((e) => e._tag === "Changes" && e.changes.some((c) => c.scope === scope && c.entity === entity.name))
      )
      return Stream.concat(Stream.make(undefined), touched).pipe(Stream.mapEffect(() => query(scope, entity)))
    }))

  /** The views as they are now: what one run of a query reads. */
  const snapshotViews = (): ReadonlyMap<string, Rows> => new Map([...s.current().scopes].map(([scope, st]) => [scope, st.view] as const))

  const watchQuery = <A, E>(run: (tx: Query.ReadTransaction) => Effect.Effect<A, E>): Stream.Stream<A, E> =>
    Stream.unwrapScoped(Effect.gen(function*() {
      // subscribed before the first run, so no commit falls between it and the events
      const events = yield* PubSub.subscribe(s.events)
      let reads = Query.readNothing
      const once = Effect.suspend(() => {
        const { reads: read, tx } = Query.makeReadTransaction(registry, snapshotViews(), onUnreadable)
        return Effect.map(run(tx), (a) => {
          reads = read
          return a
        })
      })
      // `reads` is looked at when each event is taken, after the run before it finished
      const reruns = Stream.fromQueue(events).pipe(
        Stream.mapEffect((e): Effect.Effect<Option.Option<A>, E> =>
          e._tag === "Changes" && e.changes.some((c) => reads.touches(c)) ? Effect.asSome(once) : Effect.succeedNone
        ),
        Stream.filterMap((a) => a)
      )
      return Stream.concat(Stream.fromEffect(once), reruns).pipe(Stream.changesWith(Query.equivalent))
    }))

  const watch = (first: string | ((tx: Query.ReadTransaction) => Effect.Effect<unknown, unknown>), entity?: Entity.Entity<unknown, unknown>) =>
    typeof first === "function" ? watchQuery(first) : watchEntity(first, entity as Entity.Entity<unknown, unknown>)

  return { viewOf, query, get, watch }
}
