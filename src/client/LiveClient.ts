/**
 * The live connection of a client (PROTOCOL.md section 2): one WebSocket to
 * `/_live/websocket` with the `mizu-live-v1` subprotocol, kept up for as long
 * as the layer's scope is open.
 *
 * Invariants:
 * - The wanted scopes (`scopes`: the options' and every `subscribe`, minus
 *   `unsubscribe`) are forgotten only when the server refuses them as
 *   `forbidden` (a `Forbidden` event says which). Any other refusal
 *   (`unavailable`, `too_many_scopes`) or a timeout keeps them wanted, and
 *   they are asked for again with backoff until the server accepts them;
 *   each accepted SUBSCRIBE is a `Subscribed` event with the heads.
 * - JOIN is the first frame of every connection and carries every wanted
 *   scope, so after a reconnect the subscriptions are back without the
 *   caller doing anything, and the JOIN reply's `cursors` reach subscribers as
 *   an `Online` event. If the server refuses the JOIN, the client joins with
 *   no scope and subscribes scope by scope, dropping (and reporting) only the
 *   forbidden ones; the others that failed are retried in the background.
 * - Reconnects and retries use `Backoff` (capped exponential, full jitter:
 *   0.5 s doubling to 20 s by default). The reconnect delays start over after
 *   a JOIN was accepted, except when the server closed the session for what
 *   the client did (`rate_limited`, `slow_consumer`, `unauthorized`): then
 *   they keep growing. A heartbeat goes out every 30 s; a connection with no
 *   incoming frame for the idle timeout (60 s) is dropped and reconnected.
 * - The token is asked for again on every connect (`Token.Source`).
 * - A request (`subscribe`, `unsubscribe`) is answered by the REPLY with its
 *   `ref`; if the connection drops before the reply, `subscribe` waits for
 *   the next connection and asks again (the scope is in the JOIN anyway).
 * - Presence values set with `presence` are re-sent after every reconnect,
 *   since the server forgets a session's presence when it disconnects.
 * - Every incoming frame is decoded with the protocol Schemas; a frame that
 *   does not decode is reported as an `Error` event and otherwise ignored.
 *
 * The WebSocket constructor comes from `Socket.WebSocketConstructor`:
 * `Socket.layerWebSocketConstructorGlobal` in browsers, the `ws` package in
 * Node (`mizu-sync-live/client/node`), so this module imports nothing of Node.
 *
 * @since 0.1.0
 */
import * as Socket from "@effect/platform/Socket"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import type * as Live from "../protocol/Live.js"
import * as internal from "./internal/liveClient.js"
import * as internalTabs from "./internal/liveTabs.js"
import type { TabGroup } from "./TabGroup.js"
import type * as Token from "./Token.js"

/**
 * The state of the connection: `connected` once a JOIN was accepted,
 * `closed` once the client was stopped (it will not reconnect).
 *
 * @since 0.1.0
 * @category models
 */
export type LiveStatus = "connecting" | "connected" | "disconnected" | "closed"

/**
 * What a live client reports, in the order the frames came in.
 *
 * @since 0.1.0
 * @category models
 */
export type LiveEvent =
  /** A JOIN was accepted: `cursors` holds the head of every subscribed scope. */
  | { readonly _tag: "Online"; readonly sessionId: string | undefined; readonly cursors: Readonly<Record<string, number>>; readonly reconnect: boolean }
  /** A SUBSCRIBE was accepted (asked by `subscribe`, or again after a transient refusal): the heads of its scopes. */
  | { readonly _tag: "Subscribed"; readonly cursors: Readonly<Record<string, number>> }
  /** The server refused these scopes as `forbidden`: they are no longer wanted (not asked for again). */
  | { readonly _tag: "Forbidden"; readonly scopes: ReadonlyArray<string>; readonly message: string | undefined }
  /** The connection went down (a reconnect follows unless the client is closed). */
  | { readonly _tag: "Offline"; readonly reason: string }
  | { readonly _tag: "Poke"; readonly scope: string; readonly cursor: number }
  | { readonly _tag: "Broadcast"; readonly topic: string; readonly event: string; readonly payload: unknown; readonly from: string | undefined }
  /** A PRESENCE frame, with `current`: the topic's whole presence state after applying it. */
  | {
    readonly _tag: "Presence"
    readonly topic: string
    readonly current: Readonly<Record<string, unknown>>
    readonly joins: Readonly<Record<string, unknown>> | undefined
    readonly leaves: Readonly<Record<string, unknown>> | undefined
  }
  /** An ERROR frame, or a frame the client could not decode (`code: "invalid_frame"`). */
  | { readonly _tag: "Error"; readonly code: string; readonly message: string | undefined; readonly recoverable: boolean | undefined }
  /** A CLOSE frame from the server (`shutdown`, `slow_consumer`, `normal`, …). */
  | { readonly _tag: "Closed"; readonly reason: string; readonly message: string | undefined }
  /** Frames for live pages (PATCH, COMMAND, REDIRECT), passed through decoded. */
  | { readonly _tag: "Page"; readonly frame: typeof Live.ServerFrame.Type }

/**
 * A live request that could not be completed: `disconnected` (no
 * connection, or it closed before the REPLY), `timeout`, `refused` (by the
 * server), `invalid` (a bad scope name), `closed`.
 *
 * @since 0.1.0
 * @category errors
 */
export class LiveError extends Data.TaggedError("LiveError")<{
  readonly reason: "disconnected" | "timeout" | "refused" | "invalid" | "closed"
  readonly message: string
}> {}

/**
 * Options of a live client; every duration has a default.
 *
 * @since 0.1.0
 * @category options
 */
export interface Options {
  /** The WebSocket URL, e.g. `wss://app.example.com/_live/websocket` (see `websocketUrl`). */
  readonly url: string | (() => string)
  /** Scopes (and topics) to subscribe to from the first JOIN. */
  readonly scopes?: ReadonlyArray<string>
  /** Sent as JOIN's `token`: a string, or a function or Effect asked on every connect. */
  readonly token?: Token.Source
  /** Sent as JOIN's `url`: the page this client belongs to, for live pages. */
  readonly page?: string
  /** Sent as JOIN's `params`. */
  readonly params?: Readonly<Record<string, unknown>>
  /** 30 s by default. */
  readonly heartbeatInterval?: Duration.DurationInput
  /** A connection with no incoming frame for this long is dropped; 60 s by default. */
  readonly idleTimeout?: Duration.DurationInput
  /** First reconnect (and re-subscribe) backoff cap, 500 ms by default (doubling per attempt). */
  readonly reconnectInitial?: Duration.DurationInput
  /** Largest reconnect (and re-subscribe) backoff cap, 20 s by default. */
  readonly reconnectMax?: Duration.DurationInput
  /** How long to wait for the socket to open and for a REPLY; 10 s by default. */
  readonly requestTimeout?: Duration.DurationInput
}

/**
 * The live connection service: one socket kept up, subscriptions kept
 * across reconnects, events in the order the server sent them.
 *
 * @since 0.1.0
 * @category services
 */
export class LiveClient extends Context.Tag("@mizu/client/LiveClient")<LiveClient, {
  /** The current status. */
  readonly status: Effect.Effect<LiveStatus>
  /** The current status, then every change. */
  readonly statusChanges: Stream.Stream<LiveStatus>
  /** Every event from now on (subscribe before acting, so nothing falls in between). */
  readonly subscribeEvents: Effect.Effect<Queue.Dequeue<LiveEvent>, never, Scope.Scope>
  /** Every event from when the stream is run. */
  readonly events: Stream.Stream<LiveEvent>
  /**
   * Subscribe to scopes (or topics); resolves with their heads from the
   * server's REPLY. Waits for a connection when offline; a transient refusal
   * (`unavailable`, `too_many_scopes`, a timeout) is retried with backoff.
   * Fails with `refused` when the server refuses some as `forbidden`: those
   * are forgotten (a `Forbidden` event), the others of the call stay.
   */
  readonly subscribe: (scopes: ReadonlyArray<string>) => Effect.Effect<Readonly<Record<string, number>>, LiveError>
  /** Stop receiving pokes for scopes; resolves once the server confirmed, or at once when offline. */
  readonly unsubscribe: (scopes: ReadonlyArray<string>) => Effect.Effect<void, LiveError>
  /** The wanted scopes: kept subscribed across reconnects, asked for again after transient refusals. */
  readonly scopes: Effect.Effect<ReadonlyArray<string>>
  /** Send an ephemeral event to the other subscribers of `topic` (dropped, with `disconnected`, when offline). */
  readonly broadcast: (topic: string, event: string, values?: Readonly<Record<string, unknown>>) => Effect.Effect<void, LiveError>
  /** Announce this session's presence on `topic` with `values`; kept and re-sent after reconnects. */
  readonly presence: (topic: string, values: Readonly<Record<string, unknown>>) => Effect.Effect<void>
  /** The last known presence state of `topic` (`key → meta`). */
  readonly presenceState: (topic: string) => Effect.Effect<Readonly<Record<string, unknown>>>
  /** Drop the current connection now (a reconnect with backoff follows). For apps that know the network changed, and tests. */
  readonly reconnect: Effect.Effect<void>
}>() {}

/**
 * `http(s)://host` → `ws(s)://host/_live/websocket` (or `path`).
 *
 * @since 0.1.0
 * @category utils
 */
export const websocketUrl = (baseUrl: string, path = "/_live/websocket"): string =>
  `${baseUrl.replace(/^http/, "ws")}${path}`

/**
 * Build a live client whose connection lives as long as the scope: it
 * connects at once and reconnects with `Backoff` until the scope closes
 * (then `status` is `closed`). Never fails: a connection that cannot be
 * made is an `Error` event and another attempt.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: (options: Options) => Effect.Effect<LiveClient["Type"], never, Socket.WebSocketConstructor | Scope.Scope> =
  internal.make

/**
 * A live client for the layer's lifetime (see `make`); needs a
 * `Socket.WebSocketConstructor`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<LiveClient, never, Socket.WebSocketConstructor> =>
  Layer.scoped(LiveClient, make(options))

/**
 * A live client on the global `WebSocket` (browsers, Deno, Node 22+).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerGlobal = (options: Options): Layer.Layer<LiveClient> =>
  layer(options).pipe(Layer.provide(Socket.layerWebSocketConstructorGlobal))

/**
 * A live client shared by the tabs of a `TabGroup`: the same `LiveClient`,
 * over ONE WebSocket for all the tabs of the group (one live session on the
 * server for a browser profile, however many tabs it has open).
 *
 * - The tab that leads runs `make`'s connection (opened once it leads, for
 *   as long as its scope is open) and subscribes the union of every tab's
 *   wanted scopes; a tab's scopes stay subscribed until it unsubscribes them
 *   or closes. It relays the connection's events (all but `Page`, which
 *   stay in the leading tab) and its status to the other tabs.
 * - Any other tab opens no socket: its calls go to the leader and resolve
 *   with the leader's answer (`subscribe` with the heads or the leader's
 *   `LiveError`). When the leader closes, the next tab takes over with a new
 *   socket, and every tab sends its scopes and presence values again, so
 *   the new connection carries all of them; calls waiting meanwhile are
 *   asked again (they are idempotent), except `broadcast`, which fails
 *   `disconnected` when no leader answered it.
 * - Each tab keeps its own `scopes` and sees the events of its own scopes
 *   only (`Poke`, `Broadcast`, `Presence`; `Online` and `Subscribed` carry
 *   its own scopes' heads). `status` is the leader's (`connecting` until a
 *   follower hears from it).
 * - Presence is per browser, not per tab: the server sees one session, so
 *   every tab announcing on a topic sets the same entry and the last one to
 *   announce sets its values (after a takeover, the last tab to send its
 *   values again). A tab's `broadcast` reaches the other tabs of its
 *   browser too (relayed by the leader, with `from` undefined), as it did
 *   when every tab had its own session.
 * - A tab that dies without closing its scope keeps its scopes subscribed
 *   until the next takeover.
 *
 * Without a shared group (`TabGroup.layerSolo`, or a browser without Web
 * Locks or BroadcastChannel) it is exactly `make`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeTabs: (
  options: Options
) => Effect.Effect<LiveClient["Type"], never, Socket.WebSocketConstructor | TabGroup | Scope.Scope> = internalTabs.make

/**
 * `makeTabs` for the layer's lifetime: needs a `Socket.WebSocketConstructor`
 * and the tab's `TabGroup`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerTabs = (options: Options): Layer.Layer<LiveClient, never, Socket.WebSocketConstructor | TabGroup> =>
  Layer.scoped(LiveClient, makeTabs(options))

/**
 * `layerTabs` on the global `WebSocket` (browsers): with
 * `TabGroup.layerBrowser`, the tabs of a browser profile share one socket.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerTabsGlobal = (options: Options): Layer.Layer<LiveClient, never, TabGroup> =>
  layerTabs(options).pipe(Layer.provide(Socket.layerWebSocketConstructorGlobal))

/**
 * A `Socket.WebSocketConstructor` from a constructor you pass (the `ws`
 * package's `WebSocket` in Node, a test double, …).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerWebSocketConstructor = (
  ctor: new(url: string, protocols?: string | Array<string>) => unknown
): Layer.Layer<Socket.WebSocketConstructor> =>
  Layer.succeed(Socket.WebSocketConstructor, (url, protocols) => new ctor(url, protocols) as globalThis.WebSocket)
