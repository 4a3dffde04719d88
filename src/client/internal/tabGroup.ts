/**
 * The layers of `TabGroup`: the browser's (Web Locks + BroadcastChannel),
 * a group of one, and a memory group for tests.
 *
 * Leadership is taken once per tab, by a fiber of the layer's scope that
 * waits for the leader lock and then holds it until the scope closes; users
 * only wait for it (`whenLeader`), so two parts of one tab never compete
 * for it.
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as PubSub from "effect/PubSub"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import type { BrowserOptions, TabGroup } from "../TabGroup.js"

const newTabId = (): string => {
  const bytes = new Uint8Array(8)
  globalThis.crypto.getRandomValues(bytes)
  return `t-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`
}

/** See `TabGroup.layerSolo`. */
export const makeSolo = (): TabGroup["Type"] => ({
  tabId: newTabId(),
  shared: false,
  whenLeader: Effect.void,
  isLeader: Effect.succeed(true),
  exclusive: (effect) => effect,
  post: () => Effect.void,
  messages: Queue.unbounded<unknown>()
})

/**
 * Run `use` holding the Web Lock `name` (exclusive): waits until it is
 * granted, releases it when `use` ends. Interrupted while waiting, the
 * request is aborted (and a grant that raced the interruption is given back).
 */
const withWebLock = (locks: Pick<LockManager, "request">, name: string) => <A, E, R>(use: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.flatMap(
      restore(Effect.async<() => void>((resume) => {
        const controller = new AbortController()
        let granted = false
        let release = () => {}
        const held = new Promise<void>((r) => {
          release = r
        })
        locks.request(name, { mode: "exclusive", signal: controller.signal }, () => {
          granted = true
          resume(Effect.succeed(release))
          return held
        }).catch(() => {}) // aborted while waiting, or the document is gone
        return Effect.sync(() => {
          controller.abort()
          if (granted) release()
        })
      })),
      (release) => Effect.ensuring(restore(use), Effect.sync(release))
    )
  )

/** The parts every shared group has: leadership by a fiber of the scope, messages through a PubSub. */
const makeShared = (parts: {
  readonly tabId: string
  /** Run an effect holding the group's leader lock. */
  readonly withLeaderLock: <A, E, R>(use: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  readonly exclusive: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  readonly post: (message: unknown) => Effect.Effect<void>
  readonly inbox: PubSub.PubSub<unknown>
}): Effect.Effect<TabGroup["Type"], never, Scope.Scope> =>
  Effect.gen(function*() {
    const leader = yield* Deferred.make<void>()
    yield* Effect.forkScoped(parts.withLeaderLock(Effect.zipRight(Deferred.succeed(leader, undefined), Effect.never)))
    return {
      tabId: parts.tabId,
      shared: true,
      whenLeader: Deferred.await(leader),
      isLeader: Deferred.isDone(leader),
      exclusive: parts.exclusive,
      post: parts.post,
      messages: PubSub.subscribe(parts.inbox)
    }
  })

/** See `TabGroup.makeBrowser`. */
export const makeBrowser = (options: BrowserOptions): Effect.Effect<TabGroup["Type"], never, Scope.Scope> =>
  Effect.gen(function*() {
    const locks = options.locks ?? (globalThis as { readonly navigator?: { readonly locks?: LockManager } }).navigator?.locks
    const Channel = options.BroadcastChannel ?? globalThis.BroadcastChannel
    if (locks === undefined || Channel === undefined) return makeSolo()
    const inbox = yield* Effect.acquireRelease(PubSub.unbounded<unknown>(), PubSub.shutdown)
    const channel = yield* Effect.acquireRelease(
      Effect.sync(() => new Channel(`mizu-sync:${options.name}`)),
      (c) => Effect.sync(() => c.close())
    )
    channel.onmessage = (event: MessageEvent) => {
      Effect.runSync(PubSub.publish(inbox, event.data))
    }
    return yield* makeShared({
      tabId: newTabId(),
      withLeaderLock: withWebLock(locks, `mizu-sync:${options.name}:leader`),
      exclusive: withWebLock(locks, `mizu-sync:${options.name}:write`),
      post: (message) =>
        Effect.sync(() => {
          try {
            channel.postMessage(message)
          } catch {
            // closed while the tab shuts down: nobody is left to tell
          }
        }),
      inbox
    })
  })

/** What the tabs of a memory group share. */
export interface Hub {
  readonly leader: Effect.Semaphore
  readonly write: Effect.Semaphore
  readonly channel: PubSub.PubSub<{ readonly from: string; readonly message: unknown }>
}

/** See `TabGroup.makeHub`. */
export const makeHub: Effect.Effect<Hub> = Effect.gen(function*() {
  return {
    leader: yield* Effect.makeSemaphore(1),
    write: yield* Effect.makeSemaphore(1),
    channel: yield* PubSub.unbounded<{ readonly from: string; readonly message: unknown }>()
  }
})

/** See `TabGroup.layerMemory`. */
export const makeMemory = (hub: Hub): Effect.Effect<TabGroup["Type"], never, Scope.Scope> =>
  Effect.gen(function*() {
    const tabId = newTabId()
    const inbox = yield* Effect.acquireRelease(PubSub.unbounded<unknown>(), PubSub.shutdown)
    const fromHub = yield* PubSub.subscribe(hub.channel)
    yield* Effect.forkScoped(Effect.forever(Effect.flatMap(Queue.take(fromHub), (m) =>
      m.from === tabId ? Effect.void : PubSub.publish(inbox, m.message))))
    return yield* makeShared({
      tabId,
      withLeaderLock: hub.leader.withPermits(1),
      exclusive: hub.write.withPermits(1),
      // a structured clone, as a BroadcastChannel gives: no tab shares an object with another
      post: (message) => Effect.asVoid(PubSub.publish(hub.channel, { from: tabId, message: structuredClone(message) })),
      inbox
    })
  })
