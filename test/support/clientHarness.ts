/**
 * Test infrastructure for the clients: a seeded PRNG, a transport that can be
 * re-pointed at another server, one that holds pushes until released, and one
 * that injects faults (drop, duplicate, delay, reorder, replay) into requests
 * and responses.
 */
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import { ClientStorage, type LiveClient, SyncClient, SyncTransport } from "mizu-sync-live/client"

const { TransportError } = SyncTransport
type TransportError = SyncTransport.TransportError

type Transport = SyncTransport.SyncTransport["Type"]

/** mulberry32: a small seeded PRNG, so a failing run can be replayed from its seed. */
export const prng = (seed: number): (() => number) => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** A transport whose target can be switched (a server restarted on another port, a server that lost its data). */
export const switchable = (initial: Transport): { readonly transport: Transport; readonly set: (t: Transport) => void } => {
  let current = initial
  return {
    transport: SyncTransport.SyncTransport.of({
      push: (r) => Effect.suspend(() => current.push(r)),
      pull: (r) => Effect.suspend(() => current.pull(r)),
      snapshot: (r) => Effect.suspend(() => current.snapshot(r))
    }),
    set: (t) => {
      current = t
    }
  }
}

const offline = (what: string) => new TransportError({ reason: "network", message: `${what}: injected network failure` })

/** A transport that fails every request while `down.value` is true. */
export const unplugged = (inner: Transport, down: { value: boolean }): Transport =>
  SyncTransport.SyncTransport.of({
    push: (r) => Effect.suspend(() => down.value ? Effect.fail(offline("push")) : inner.push(r)),
    pull: (r) => Effect.suspend(() => down.value ? Effect.fail(offline("pull")) : inner.pull(r)),
    snapshot: (r) => Effect.suspend(() => down.value ? Effect.fail(offline("snapshot")) : inner.snapshot(r))
  })

/** Pushes wait for `release` before they reach the server. */
export const gated = (inner: Transport, release: Deferred.Deferred<void>): Transport =>
  SyncTransport.SyncTransport.of({
    ...inner,
    push: (r) => Effect.zipRight(Deferred.await(release), inner.push(r))
  })

/** Fault probabilities; the object is read on every request, so a test may change it as it runs. */
export interface Faults {
  /** Every request fails at once (a client that is offline). */
  offline: boolean
  /** The request is lost: the server never sees it. */
  dropRequest: number
  /** The server handles the request but the response is lost. */
  dropResponse: number
  /** The server gets the request twice (the copy concurrently, with its own delay). */
  duplicateRequest: number
  /** An identical earlier request's response is returned again instead of asking the server. */
  replayResponse: number
  /** The client gives up at once (timeout) while the request still reaches the server later, after newer ones. */
  lateDelivery: number
  /** Requests and responses are each delayed by up to this many ms (so concurrent ones reorder). */
  maxDelayMs: number
}

export const noFaults = (): Faults => ({
  offline: false,
  dropRequest: 0,
  dropResponse: 0,
  duplicateRequest: 0,
  replayResponse: 0,
  lateDelivery: 0,
  maxDelayMs: 0
})

/** How many faults of each kind were injected. */
export interface FaultStats {
  requests: number
  dropRequest: number
  dropResponse: number
  duplicateRequest: number
  replayResponse: number
  lateDelivery: number
}

export const emptyStats = (): FaultStats => ({ requests: 0, dropRequest: 0, dropResponse: 0, duplicateRequest: 0, replayResponse: 0, lateDelivery: 0 })

/** Wrap a transport with faults drawn from `random`. */
export const faulty = (inner: Transport, faults: Faults, random: () => number, stats: FaultStats = emptyStats()): Transport => {
  const replay = new Map<string, unknown>()
  const delay = Effect.suspend(() => faults.maxDelayMs > 0 ? Effect.sleep(`${Math.floor(random() * faults.maxDelayMs)} millis`) : Effect.void)
  const wrap = <Req, Res, E>(what: string, call: (r: Req) => Effect.Effect<Res, E>) => (r: Req): Effect.Effect<Res, E | TransportError> =>
    Effect.gen(function*() {
      stats.requests++
      if (faults.offline) return yield* offline(what)
      const key = `${what}:${JSON.stringify(r)}`
      const remembered = replay.get(key)
      if (remembered !== undefined && random() < faults.replayResponse) {
        stats.replayResponse++
        yield* delay
        return remembered as Res
      }
      if (random() < faults.lateDelivery) {
        stats.lateDelivery++
        yield* Effect.forkDaemon(Effect.zipRight(Effect.sleep(`${5 + Math.floor(random() * (faults.maxDelayMs + 20))} millis`), Effect.ignore(call(r))))
        return yield* new TransportError({ reason: "timeout", message: `${what}: injected timeout (the request is still on its way)` })
      }
      if (random() < faults.dropRequest) {
        stats.dropRequest++
        yield* delay
        return yield* offline(what)
      }
      yield* delay
      if (random() < faults.duplicateRequest) {
        stats.duplicateRequest++
        yield* Effect.forkDaemon(Effect.zipRight(delay, Effect.ignore(call(r))))
      }
      const response = yield* call(r)
      replay.set(key, response)
      yield* delay
      if (random() < faults.dropResponse) {
        stats.dropResponse++
        return yield* offline(what)
      }
      return response
    })
  return SyncTransport.SyncTransport.of({
    push: wrap("push", inner.push),
    pull: wrap("pull", inner.pull),
    snapshot: wrap("snapshot", inner.snapshot)
  })
}

/** Start a `SyncClient` in the current scope over a transport and a storage layer. */
export const startClient = (
  options: SyncClient.Options,
  transport: Transport,
  storage: Layer.Layer<ClientStorage.ClientStorage, ClientStorage.ClientStorageError> = ClientStorage.layerMemory,
  live?: Layer.Layer<LiveClient.LiveClient>
): Effect.Effect<SyncClient.SyncClient["Type"], ClientStorage.ClientStorageError, Scope.Scope> =>
  Effect.map(
    Layer.build(
      SyncClient.layer(options).pipe(
        Layer.provide(Layer.mergeAll(Layer.succeed(SyncTransport.SyncTransport, transport), storage, live ?? Layer.empty))
      )
    ),
    Context.get(SyncClient.SyncClient)
  )

/** A client in its own scope, so a test can stop it (a crash or a restart) and start another over the same storage. */
export const startStoppable = (
  options: SyncClient.Options,
  transport: Transport,
  storage: Layer.Layer<ClientStorage.ClientStorage, ClientStorage.ClientStorageError>,
  live?: Layer.Layer<LiveClient.LiveClient>
) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const client = yield* Scope.extend(startClient(options, transport, storage, live), scope)
    return { client, stop: Scope.close(scope, Exit.void) }
  })

/**
 * A client over a memory store of its own (a `Ref` that outlives it) that
 * synced `scopes` with the server at `base` and stopped: the store, its
 * layer and the transport, to start another client over it later.
 */
export const syncedStore = (base: string, options: SyncClient.Options) =>
  Effect.gen(function*() {
    const ref = yield* Ref.make(ClientStorage.emptyState)
    const storage = ClientStorage.layerMemoryRef(ref)
    const fetch = SyncTransport.makeFetch({ baseUrl: base })
    const first = yield* startStoppable(options, fetch, storage)
    yield* first.client.sync
    yield* first.stop
    return { ref, storage, fetch }
  })

/** Retry an effect on a wall-clock schedule until it succeeds (or the attempts run out). */
export const eventually = <A, E, R>(self: Effect.Effect<A, E, R>, attempts = 200, everyMs = 50): Effect.Effect<A, E, R> =>
  Effect.retry(self, Schedule.intersect(Schedule.recurs(attempts), Schedule.spaced(`${everyMs} millis`)))

/** Check until `check` gives true (its failures count as "not yet"); dies with `what` when the attempts run out. */
export const eventuallyTrue = <E>(what: string, check: Effect.Effect<boolean, E>, attempts = 200, everyMs = 50): Effect.Effect<void> =>
  eventually(Effect.flatMap(Effect.orElseSucceed(check, () => false), (ok) => ok ? Effect.void : Effect.fail(what)), attempts, everyMs).pipe(
    Effect.orDie
  )

/** Take from `queue` until an item matches (and `also` holds for it); that item. */
export function takeUntil<A, B extends A>(queue: Queue.Dequeue<A>, pred: (a: A) => a is B, also?: (b: B) => boolean): Effect.Effect<B>
export function takeUntil<A>(queue: Queue.Dequeue<A>, pred: (a: A) => boolean): Effect.Effect<A>
export function takeUntil<A>(queue: Queue.Dequeue<A>, pred: (a: A) => boolean, also: (a: A) => boolean = () => true): Effect.Effect<A> {
  return Effect.gen(function*() {
    while (true) {
      const a = yield* Queue.take(queue)
      if (pred(a) && also(a)) return a
    }
  })
}

/** Push one todo through plain HTTP, as another client would. */
export const pushOne = (base: string, scope: string, id: string) =>
  Effect.orDie(SyncTransport.makeFetch({ baseUrl: base }).push({ mutations: [{ name: "todo/create", scope, args: { id, title: id } }] }))
