/**
 * The process-local hub between live sessions and the `LivePubSub`
 * transport.
 *
 * Invariants:
 * - Sessions register a `Sink` per topic; the hub holds ONE transport
 *   subscription per topic for the whole process (acquired with the first
 *   sink, released with the last, shared through an `RcMap`), so 10,000
 *   sessions on one scope cost one transport subscription and one dispatch
 *   fiber, not 10,000.
 * - Fan-out: a topic's messages come from the transport's per-topic Effect
 *   `PubSub` (sliding: publishers never block) and one fiber per topic
 *   delivers each to the topic's sinks. A message is decoded once per
 *   process and a frame encoded once per message; the per-session step is
 *   "hand these bytes over" (pokes: "note this cursor"), which never blocks.
 * - Messages between processes are Schema-decoded envelopes: a malformed one
 *   is dropped and logged, never trusted.
 * - Presence is replicated: every process keeps the presence of every topic
 *   it has sinks for, re-announces its own entries every `renewInterval`
 *   and expires other processes' entries not renewed within `presenceTtl`
 *   (their process died). A topic holds at most `maxEntriesPerTopic`
 *   entries; when it is full new ones are refused and existing ones keep
 *   their place.
 * - Presence keys and broadcast `from` are whatever the caller gives (the
 *   session gives opaque per-topic handles, never its session id); a
 *   broadcast is not echoed to the sink whose id is its `origin`.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as internal from "./internal/hub.js"
import type { LivePubSub } from "./LivePubSub.js"

/**
 * What a session gives the hub to be reached. Every method is synchronous
 * and never blocks: the hub calls them from the topic's one dispatch fiber.
 *
 * @since 0.1.0
 * @category models
 */
export interface Sink {
  /** The session id: broadcasts are not echoed to their sender. */
  readonly id: string
  /** A commit in `scope` reached `cursor`. */
  readonly poke: (scope: string, cursor: number) => void
  /** A ready-encoded frame. */
  readonly send: (frame: string) => void
  /**
   * The topic's full presence (a PRESENCE `state` frame), on registration.
   * A sink may drop `frame` and write `presenceState(topic)` later instead
   * (fresh then); without this method the frame goes to `send`.
   */
  readonly sendState?: (topic: string, frame: string) => void
  /** If present, broadcasts come here decoded instead of as frames (live pages' `info`). */
  readonly broadcast?: (topic: string, event: string, payload: unknown, from: string) => void
}

/**
 * Presence replication and bounds.
 *
 * @since 0.1.0
 * @category options
 */
export interface Options {
  /** How often a process re-announces its presence entries (default 5 s). */
  readonly renewInterval?: Duration.DurationInput
  /** How long another process's entry lives without renewal (default 15 s). */
  readonly presenceTtl?: Duration.DurationInput
  /** Most presence entries per topic (default 1,000); when full, new entries are refused. */
  readonly maxEntriesPerTopic?: number
}

/**
 * The hub of this process: sinks by topic, pokes / broadcasts / presence to
 * every process through the `LivePubSub`. Delivery is at most once.
 *
 * @since 0.1.0
 * @category services
 */
export class LiveHub extends Context.Tag("@mizu/live/LiveHub")<LiveHub, {
  /** This process's id (presence entries carry it). */
  readonly node: string
  /**
   * Register a sink on a topic until `remove`. Messages published after this
   * returns reach it; the topic's current presence, if any, is given to it
   * (a `state` frame) before it returns. Interruptible while the topic's
   * transport subscription is being opened; an interrupted add registers
   * nothing.
   */
  readonly add: (topic: string, sink: Sink) => Effect.Effect<void>
  /** Unregister a sink; nothing if it is not registered. The last sink of a topic releases its transport subscription. */
  readonly remove: (topic: string, sink: Sink) => Effect.Effect<void>
  /** Poke every sink of a scope, on every process. */
  readonly poke: (scope: string, cursor: number) => Effect.Effect<void>
  /**
   * Relay an ephemeral event to every sink of the topic, on every process,
   * but the sinks whose id is `origin` (default: `from`). Sinks see `from`.
   */
  readonly broadcast: (topic: string, event: string, payload: unknown, from: string, origin?: string) => Effect.Effect<void>
  /**
   * Track `key` as present on the topic with `meta` until `untrack`. False
   * (nothing tracked) when the topic holds `maxEntriesPerTopic` entries and
   * `key` is not one of them.
   */
  readonly trackUnscoped: (topic: string, key: string, meta: Readonly<Record<string, unknown>>) => Effect.Effect<boolean>
  /** The topic's current presence as a PRESENCE `state` frame; undefined when nobody is present (or no sink is on it here). */
  readonly presenceState: (topic: string) => string | undefined
  /** End a presence entry of this process; nothing if there is none. */
  readonly untrack: (topic: string, key: string) => Effect.Effect<void>
  /** The number of sinks registered on this process (all topics). */
  readonly sinkCount: Effect.Effect<number>
  /** The number of topics this process holds a transport subscription for. */
  readonly topicCount: Effect.Effect<number>
}>() {}

/**
 * The hub over the `LivePubSub` in context; its topics' subscriptions and
 * the presence renewal fiber are closed with the Scope.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: (options?: Options) => Effect.Effect<LiveHub["Type"], never, LivePubSub | Scope.Scope> = internal.make

/**
 * The hub over the `LivePubSub` in context.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<LiveHub, never, LivePubSub> => Layer.scoped(LiveHub, make(options))
