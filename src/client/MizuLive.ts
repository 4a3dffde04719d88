/**
 * The live client for front ends without Effect: the seed's `MizuLive`
 * (`connect`, `subscribe`, `unsubscribe`, `on('poke')`), with presence and
 * ephemeral events. A thin shell over `LiveClient` on a `ManagedRuntime`:
 * the guarantees are `LiveClient`'s, listeners get its events in order, and
 * every Promise rejects with a `MizuError` only.
 *
 * @since 0.1.0
 */
import type * as Socket from "@effect/platform/Socket"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as LiveClient from "./LiveClient.js"
import { dispatch, Emitter } from "./internal/listeners.js"
import * as PromiseErrors from "./internal/promiseErrors.js"
import type * as TabGroup from "./TabGroup.js"

/**
 * Event names of `on`, with what the listener receives.
 *
 * @since 0.1.0
 * @category models
 */
export interface MizuLiveEvents {
  /** A scope has new changes up to `cursor`: pull it. */
  readonly poke: { readonly scope: string; readonly cursor: number }
  readonly broadcast: Extract<LiveClient.LiveEvent, { _tag: "Broadcast" }>
  readonly presence: Extract<LiveClient.LiveEvent, { _tag: "Presence" }>
  /** Joined (again): `cursors` has the head of every subscribed scope. */
  readonly online: Extract<LiveClient.LiveEvent, { _tag: "Online" }>
  /** A SUBSCRIBE was accepted (by `subscribe`, or asked again after a transient refusal): the heads of its scopes. */
  readonly subscribed: Extract<LiveClient.LiveEvent, { _tag: "Subscribed" }>
  /** The server refused scopes as `forbidden`: they are no longer wanted. */
  readonly forbidden: Extract<LiveClient.LiveEvent, { _tag: "Forbidden" }>
  readonly offline: Extract<LiveClient.LiveEvent, { _tag: "Offline" }>
  readonly error: Extract<LiveClient.LiveEvent, { _tag: "Error" }>
  /** The server sent CLOSE (`shutdown`, `slow_consumer`, …); a reconnect follows. */
  readonly close: Extract<LiveClient.LiveEvent, { _tag: "Closed" }>
  /** PATCH, COMMAND and REDIRECT frames, for live pages. */
  readonly page: Extract<LiveClient.LiveEvent, { _tag: "Page" }>
}

/**
 * Options of `MizuLive`: `LiveClient`'s, with the endpoint found from the
 * page's origin by default.
 *
 * @since 0.1.0
 * @category options
 */
export interface MizuLiveOptions extends Omit<LiveClient.Options, "url"> {
  /** The WebSocket URL; by default `/_live/websocket` on `baseUrl` or on the page's origin. */
  readonly endpoint?: string
  /** The server's origin (`https://…`), when not the page's. */
  readonly baseUrl?: string
  /** The page sent in JOIN (the seed's `url`). */
  readonly url?: string
  /** The WebSocket constructor; the global `WebSocket` by default (pass the `ws` package's in Node). */
  readonly WebSocket?: new(url: string, protocols?: string | Array<string>) => unknown
}

const eventName = (event: LiveClient.LiveEvent): keyof MizuLiveEvents => {
  switch (event._tag) {
    case "Poke":
      return "poke"
    case "Broadcast":
      return "broadcast"
    case "Presence":
      return "presence"
    case "Online":
      return "online"
    case "Subscribed":
      return "subscribed"
    case "Forbidden":
      return "forbidden"
    case "Offline":
      return "offline"
    case "Error":
      return "error"
    case "Closed":
      return "close"
    case "Page":
      return "page"
  }
}

/** Resolve the WebSocket URL of the options, in a browser from `location`. */
const endpointOf = (options: { readonly endpoint?: string; readonly baseUrl?: string }): string => {
  if (options.endpoint !== undefined) return options.endpoint
  if (options.baseUrl !== undefined) return LiveClient.websocketUrl(options.baseUrl)
  const origin = (globalThis as { readonly location?: { readonly origin?: string } }).location?.origin
  if (origin === undefined) throw new Error("MizuLive: pass `endpoint` or `baseUrl` outside a browser")
  return LiveClient.websocketUrl(origin)
}

/**
 * The `LiveClient` layer of the options (with the WebSocket constructor
 * they name); `MizuSync` runs it in its own runtime. With `tabs`, the
 * socket is the group's (`LiveClient.layerTabs`: the leader tab's, shared).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerOf = (options: MizuLiveOptions, tabs?: Layer.Layer<TabGroup.TabGroup>): Layer.Layer<LiveClient.LiveClient> => {
  const ctor: Layer.Layer<Socket.WebSocketConstructor> = options.WebSocket !== undefined
    ? LiveClient.layerWebSocketConstructor(options.WebSocket)
    : LiveClient.layerWebSocketConstructor(globalThis.WebSocket)
  const clientOptions = { ...options, url: endpointOf(options), ...(options.url === undefined ? {} : { page: options.url }) }
  return tabs === undefined
    ? LiveClient.layer(clientOptions).pipe(Layer.provide(ctor))
    : LiveClient.layerTabs(clientOptions).pipe(Layer.provide(Layer.merge(ctor, tabs)))
}

/**
 * A live connection with a Promise/event API. `connect()` (or the first
 * `subscribe`) opens it; it then stays up, reconnecting with backoff, until
 * `close()`. Its Promises reject with a `MizuError` (a `LiveError` for a
 * request that failed; see `PromiseErrors`), never with an Effect `FiberFailure`.
 *
 * @since 0.1.0
 * @category constructors
 */
export class MizuLive extends Emitter<MizuLiveEvents> {
  private runtime: ManagedRuntime.ManagedRuntime<LiveClient.LiveClient, PromiseErrors.Failure> | undefined
  private readonly owned: boolean
  private dispatcher: Fiber.RuntimeFiber<unknown, unknown> | undefined
  private lastStatus: LiveClient.LiveStatus = "disconnected"

  constructor(
    private readonly options: MizuLiveOptions,
    runtime?: ManagedRuntime.ManagedRuntime<LiveClient.LiveClient, PromiseErrors.Failure>
  ) {
    super()
    this.owned = runtime === undefined
    if (runtime !== undefined) {
      this.runtime = runtime
      this.startDispatcher(runtime)
    }
  }

  /** Open the connection (idempotent). Resolves once the client runs, not when it is joined: listen for `online`. */
  connect(): Promise<void> {
    return this.run(Effect.void)
  }

  /**
   * Subscribe to scopes or topics; resolves with their heads. Transient
   * refusals are retried with backoff. Rejects with a `LiveError`: `refused`
   * for scopes the server forbids (they are forgotten), `invalid` for bad names.
   */
  subscribe(scopes: string | ReadonlyArray<string>): Promise<Readonly<Record<string, number>>> {
    const list = typeof scopes === "string" ? [scopes] : scopes
    return this.run(Effect.flatMap(LiveClient.LiveClient, (c) => c.subscribe(list)))
  }

  /** Stop receiving pokes for scopes; resolves once the server confirmed, or at once when offline. */
  unsubscribe(scopes: string | ReadonlyArray<string>): Promise<void> {
    const list = typeof scopes === "string" ? [scopes] : scopes
    return this.run(Effect.flatMap(LiveClient.LiveClient, (c) => c.unsubscribe(list)))
  }

  /** Send an ephemeral event to the other subscribers of `topic`. Rejects with a `LiveError` (`disconnected`) when offline: nothing is queued. */
  broadcast(topic: string, event: string, values?: Readonly<Record<string, unknown>>): Promise<void> {
    return this.run(Effect.flatMap(LiveClient.LiveClient, (c) => c.broadcast(topic, event, values)))
  }

  /** Announce presence on `topic`; re-sent after every reconnect. */
  presence(topic: string, values: Readonly<Record<string, unknown>>): Promise<void> {
    return this.run(Effect.flatMap(LiveClient.LiveClient, (c) => c.presence(topic, values)))
  }

  /** Who is on `topic`, as last reported. */
  presenceState(topic: string): Promise<Readonly<Record<string, unknown>>> {
    return this.run(Effect.flatMap(LiveClient.LiveClient, (c) => c.presenceState(topic)))
  }

  /** The connection status as last seen. */
  get status(): LiveClient.LiveStatus {
    return this.lastStatus
  }

  /** Close the connection for good (a `MizuLive` owned by a `MizuSync` closes with it). */
  async close(): Promise<void> {
    const runtime = this.runtime
    this.runtime = undefined
    this.lastStatus = "closed"
    const dispatcher = this.dispatcher
    this.dispatcher = undefined
    if (runtime !== undefined && dispatcher !== undefined) await PromiseErrors.runPromise(runtime, Fiber.interrupt(dispatcher))
    if (runtime !== undefined && this.owned) await runtime.dispose()
  }

  private ensure(): ManagedRuntime.ManagedRuntime<LiveClient.LiveClient, PromiseErrors.Failure> {
    if (this.runtime !== undefined) return this.runtime
    const runtime = ManagedRuntime.make(layerOf(this.options))
    this.runtime = runtime
    this.startDispatcher(runtime)
    return runtime
  }

  private run<A, E extends PromiseErrors.Failure>(effect: Effect.Effect<A, E, LiveClient.LiveClient>): Promise<A> {
    if (this.lastStatus === "closed") return Promise.reject(PromiseErrors.closed("MizuLive"))
    return PromiseErrors.runPromise(this.ensure(), effect)
  }

  private startDispatcher(runtime: ManagedRuntime.ManagedRuntime<LiveClient.LiveClient, PromiseErrors.Failure>) {
    if (this.dispatcher !== undefined) return
    // a listener's bug must not stop the others; it goes to Effect's logger (routable by the app)
    const onError = (error: unknown) => runtime.runFork(Effect.logError("MizuLive listener failed", error))
    this.dispatcher = runtime.runFork(Effect.flatMap(LiveClient.LiveClient, (client) =>
      dispatch({
        events: client.subscribeEvents,
        statusChanges: client.statusChanges,
        onEvent: (event) => this.notify(eventName(event), event as never, onError),
        onStatus: (status) => {
          if (this.lastStatus !== "closed") this.lastStatus = status
        }
      })))
  }
}
