/**
 * The tabs of one browser profile that open the same client store, as one
 * group: one of them leads (it owns the network: the WebSocket, the pulls,
 * the push queue), all of them read and write the one shared store.
 *
 * Guarantees of every layer:
 * - At most one tab of a group leads at a time. A tab that leads leads until
 *   its layer's scope closes (the tab closes, crashes or the client is
 *   closed); then the next tab waiting takes over at once.
 * - `exclusive(effect)` runs `effect` while no other tab of the group runs
 *   one: the writes of the shared store are serialized across tabs.
 * - `post(message)` reaches every other tab of the group (not this one), in
 *   the order posted; a message is a plain value (structured clone).
 *
 * Layers: `layerBrowser` (Web Locks elect the leader and serialize writes,
 * `BroadcastChannel` carries messages; where either is missing it is
 * `layerSolo`), `layerSolo` (a group of one: it leads at once) and
 * `layerMemory` (tabs in one process sharing a `Hub`: what Node tests use).
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as internal from "./internal/tabGroup.js"

/**
 * The group as a tab sees it.
 *
 * @since 0.1.0
 * @category services
 */
export class TabGroup extends Context.Tag("@mizu/client/TabGroup")<TabGroup, {
  /** This tab's id, unique in the group. */
  readonly tabId: string
  /** False for a group of one (`layerSolo`): nothing is shared, nothing is posted. */
  readonly shared: boolean
  /** Completes once this tab leads (at once when it already does). */
  readonly whenLeader: Effect.Effect<void>
  /** Whether this tab leads now. */
  readonly isLeader: Effect.Effect<boolean>
  /** Run `effect` while no other tab of the group runs an `exclusive` one (not reentrant). */
  readonly exclusive: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /** Send a message to every other tab of the group. */
  readonly post: (message: unknown) => Effect.Effect<void>
  /** The messages of the other tabs from now on, until the scope closes. */
  readonly messages: Effect.Effect<Queue.Dequeue<unknown>, never, Scope.Scope>
}>() {}

/**
 * Options of the browser group.
 *
 * @since 0.1.0
 * @category options
 */
export interface BrowserOptions {
  /** The group's name: the store's name (the IndexedDB database). */
  readonly name: string
  /** The Web Locks manager; `navigator.locks` by default. */
  readonly locks?: Pick<LockManager, "request">
  /** The `BroadcastChannel` class; the global one by default. */
  readonly BroadcastChannel?: new(name: string) => BroadcastChannel
}

/**
 * The tabs of this browser profile that open `name`: Web Locks
 * (`mizu-sync:<name>:leader`, `mizu-sync:<name>:write`) and a
 * `BroadcastChannel` (`mizu-sync:<name>`). Without either API it is a group
 * of one (`layerSolo`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeBrowser: (options: BrowserOptions) => Effect.Effect<TabGroup["Type"], never, Scope.Scope> = internal.makeBrowser

/**
 * `makeBrowser` as a layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerBrowser = (options: BrowserOptions): Layer.Layer<TabGroup> => Layer.scoped(TabGroup, makeBrowser(options))

/**
 * A group of one tab: it leads at once, `exclusive` adds nothing, `post` goes nowhere.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerSolo: Layer.Layer<TabGroup> = Layer.sync(TabGroup, internal.makeSolo)

/**
 * What the tabs of a memory group share (one per simulated browser profile).
 *
 * @since 0.1.0
 * @category models
 */
export interface Hub extends internal.Hub {}

/**
 * A new memory hub.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeHub: Effect.Effect<Hub> = internal.makeHub

/**
 * One tab of a memory group: tabs of the same `hub` in one process behave as
 * the tabs of one browser profile (the first built leads; closing its scope
 * hands over to the next waiting).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerMemory = (hub: Hub): Layer.Layer<TabGroup> => Layer.scoped(TabGroup, internal.makeMemory(hub))
