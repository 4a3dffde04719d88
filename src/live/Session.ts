/**
 * One live session: a WebSocket connection as a scoped Effect.
 *
 * A session is three parts (in `internal/`): the socket adapter (the `ws`
 * listeners, which decode each frame at the edge, the frame-rate limit,
 * pause/resume, writes with their backlog and close codes), the session
 * protocol (a function of one `Stream` of decoded client messages merged
 * with the hub's deliveries, writing the frames they produce), and the
 * live-page session. Closing the session's `Scope`, for whatever cause,
 * releases its hub subscriptions, its presence and its socket.
 *
 * Invariants:
 * - Inputs are handled one at a time, in arrival order.
 * - At most `maxQueuedFrames` client frames wait (then the socket is paused,
 *   so TCP pushes back); more than `maxFramesPerSecond` frames (burst
 *   `frameBurst`) closes with `rate_limited` (4029).
 * - No JOIN within `joinTimeout` closes with `join_timeout` (1008); no frame
 *   for `idleTimeout` with `idle_timeout`; these and the pending-bytes limit
 *   are enforced by the server's ticker, never behind the inbox.
 * - More than `maxPendingBytes` pending for a client closes it with
 *   `slow_consumer` (4008); pokes are conflated per scope meanwhile.
 * - A refused re-authorization (at the principal's `expiresAt`, and every
 *   `reauthorizeInterval`) closes with `unauthorized` (4001).
 * - A subscription is made before the scope's head is read for the reply.
 * - BROADCAST `from` and PRESENCE keys are opaque per-topic handles (an HMAC
 *   of session id and topic), never the session id.
 *
 * @since 0.1.0
 */
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { WebSocket } from "ws"
import type * as Authorizer from "../sync/Authorizer.js"
import type { ChangeLog } from "../sync/ChangeLog.js"
import type { SyncEngine } from "../sync/SyncEngine.js"
import * as internal from "./internal/session.js"
import * as limits from "./internal/sessionLimits.js"
import type { LiveHub } from "./LiveHub.js"
import type * as Page from "./Page.js"

/**
 * Limits and timers of a session. Defaults: PROTOCOL.md's, and the ones
 * given here. Refusals are answered with `REPLY {status: "error", reason}`:
 * `presence_too_large`, `broadcast_too_large`, `rate_limited` (broadcasts),
 * `presence_full`, `forbidden`; the session stays open.
 *
 * @since 0.1.0
 * @category options
 */
export interface Options {
  /** Close a connection with no incoming frame after JOIN for this long (60 s). */
  readonly idleTimeout?: Duration.DurationInput
  /** Close a connection that has not JOINed within this long, with `join_timeout` (10 s). */
  readonly joinTimeout?: Duration.DurationInput
  /** Most scopes (topics) one session may subscribe to (100). */
  readonly maxScopes?: number
  /** Most bytes of frames pending for one session before it is a slow consumer (1 MiB). */
  readonly maxPendingBytes?: number
  /** Socket send buffer above which broadcasts wait in the backlog (64 KiB). */
  readonly highWaterBytes?: number
  /** Frames a client may send per second, on average (100); more closes it with `rate_limited` (4029). */
  readonly maxFramesPerSecond?: number
  /** Frames a client may send at once above that rate (200). */
  readonly frameBurst?: number
  /** Client frames waiting in a session's inbox above which its socket is paused (32). */
  readonly maxQueuedFrames?: number
  /** Largest presence meta, in bytes of JSON (1 KiB); larger is refused with `presence_too_large`. */
  readonly maxPresenceBytes?: number
  /** Largest broadcast payload, in bytes of JSON (16 KiB); larger is refused with `broadcast_too_large`. */
  readonly maxBroadcastBytes?: number
  /** Broadcasts and presence updates a session may send per second, on average (20); more are refused with `rate_limited`. */
  readonly maxBroadcastsPerSecond?: number
  /** Broadcasts and presence updates a session may send at once above that rate (40). */
  readonly broadcastBurst?: number
  /**
   * How often an open session's token is authorized again for every scope
   * and topic it holds (5 minutes; `Duration.infinity` turns it off). It is
   * also done when the earliest `expiresAt` of the principals seen passes.
   * A refusal closes the session with `CLOSE {reason: "unauthorized"}` (4001).
   */
  readonly reauthorizeInterval?: Duration.DurationInput
}

/**
 * Where a server keeps its running sessions (ticks, shutdown): a session is
 * added when it starts and deleted when it ends, synchronously.
 *
 * @since 0.1.0
 * @category models
 */
export interface SessionRegistry {
  readonly add: (handle: Handle) => void
  readonly delete: (handle: Handle) => void
}

/**
 * What a session holds of its server beyond the registry (an admission
 * slot): released exactly once, when the session ends.
 *
 * @since 0.1.0
 * @category models
 */
export interface Lease {
  readonly release: () => void
}

/**
 * The handle the server keeps on a running session. Both methods are
 * synchronous and never wait behind the session's inbox.
 *
 * @since 0.1.0
 * @category models
 */
export interface Handle {
  readonly id: string
  /**
   * Enforce the deadlines (JOIN, idle), the pending-bytes limit and the
   * re-authorization schedule as of `now`, and wake the session to flush
   * what it holds back.
   */
  readonly tick: (now: number) => void
  /** Close with `CLOSE {reason: "shutdown"}` once the session reaches it in its inbox. */
  readonly shutdown: () => void
}

/**
 * What a session needs from context.
 *
 * @since 0.1.0
 * @category models
 */
export type Requirements = Scope.Scope | LiveHub | ChangeLog | Authorizer.Authorizer | Page.LivePages | SyncEngine

/**
 * How often a server ticks its sessions so that its deadlines are enforced
 * closely enough: a quarter of the shortest, between 10 ms and 1 s.
 *
 * @since 0.1.0
 * @category constants
 */
export const tickMillis: (options: Options) => number = limits.tickMillis

/**
 * Run a session over an upgraded `ws` socket until it ends (LEAVE, a
 * deadline, a limit, a refused re-authorization, shutdown, the peer going
 * away, or interruption). It is in `registry` while it runs; `lease` is
 * released when it ends. It never fails: every end is a close. It runs in
 * a `Scope` of its own, closed when it ends for whatever cause (which
 * releases what it holds); the caller's Scope is not used.
 *
 * @since 0.1.0
 * @category constructors
 */
export const run: (
  ws: WebSocket,
  options: Options & { readonly registry: SessionRegistry },
  lease?: Lease
) => Effect.Effect<void, never, Exclude<Requirements, Scope.Scope>> = internal.run
