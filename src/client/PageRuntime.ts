/**
 * The browser runtime of live pages: JOINs the live socket with the page's
 * url, applies the regions of the REPLY and every PATCH with idiomorph (focus
 * and input state survive), binds DOM events declared by `mizu-*` attributes
 * and sends them as EVENT frames, runs COMMANDs and REDIRECTs, and re-mounts
 * after a reconnect.
 *
 * It runs on the same connection module as `LiveClient`: the same socket,
 * JOIN, heartbeat, idle timeout and reconnect policy (`Backoff`: capped
 * exponential, full jitter). Every frame in is decoded with the protocol
 * Schemas; nothing else parses wire JSON.
 *
 * Attributes (on any element inside the page):
 * - `mizu-click="name"`: click → EVENT {name, values}; values are the
 *   element's `mizu-value-*` attributes.
 * - `mizu-submit="name"` on a form: submit (prevented) → EVENT with the
 *   form's fields as values.
 * - `mizu-change="name"`, `mizu-input="name"` on a field: → EVENT with
 *   `{value, name}` of the field (and its `mizu-value-*`); `mizu-debounce="ms"`
 *   delays it until typing pauses.
 * - `mizu-keydown="name"` (optionally `mizu-key="Enter"`): → EVENT with
 *   `{key, value}`.
 *
 * @since 0.1.0
 */
import type * as Live from "../protocol/Live.js"
import * as internal from "./internal/pageRuntime.js"

/**
 * Options of `connectPage`; durations in milliseconds.
 *
 * @since 0.1.0
 * @category options
 */
export interface PageOptions {
  /** The page url JOINed with (default: `data-mizu-page` of `<body>`, else the location). */
  readonly url?: string
  /** The WebSocket endpoint (default: `/_live/websocket` on this origin). */
  readonly endpoint?: string
  readonly params?: Readonly<Record<string, unknown>>
  /** First reconnect cap (500 ms), doubling to `reconnectMax` (20 s). */
  readonly reconnectInitial?: number
  readonly reconnectMax?: number
  /** Heartbeat interval (30 s). */
  readonly heartbeat?: number
}

/**
 * A connected page.
 *
 * @since 0.1.0
 * @category models
 */
export interface PageConnection {
  /**
   * Send an EVENT to the page (what the bound attributes do). Resolves with
   * the REPLY; rejects with a `LiveError` (see `PromiseErrors`) when offline
   * (nothing is queued), on the server's ERROR, or without a REPLY in time.
   */
  readonly send: (name: string, values?: Readonly<Record<string, unknown>>) => Promise<typeof Live.ReplyPayload.Type>
  /** `connecting`, `connected` or `disconnected`; also on `<body data-mizu-status>`. */
  readonly status: () => string
  /** Close the connection for good (no reconnect follows). */
  readonly close: () => void
}

/**
 * Connect the page in this document to its live session, and keep it
 * connected (reconnecting with backoff) until `close()` or until the server
 * says the page does not exist (`page_not_found`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const connectPage: (options?: PageOptions) => PageConnection = internal.connectPage
