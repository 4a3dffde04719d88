/**
 * What the push worker sends, and what it makes of a request the server
 * refused as a whole.
 *
 * Requests: the queue is sent from its head, in id order, cut so that a
 * request has at most `count` mutations and its JSON body at most `bytes`
 * bytes (exactly as `JSON.stringify` writes it; the head alone may exceed a
 * learned budget, never `maxPushBytes`).
 *
 * Placeholders: the server keeps one counter per client and refuses an id
 * that skips one (`out_of_order`), so a mutation dropped before the server
 * consumed its id (discarded by the app, or refused by the client as too
 * large, forbidden, …) is not deleted but replaced by a placeholder with the
 * same id: the reserved name `$mizu/discarded`, no args. The server consumes
 * it as `unknown_mutation` (no change), or answers `duplicate` if the
 * original had reached it after all — either way the id is used up, the ids
 * after it never move, and no answer in flight is misread. A placeholder has
 * no local effect and is not reported as pending. It travels in the scope of
 * the next real mutation after it (a scope the client is about to push to
 * anyway, so a forbidden scope is never sent again), and is not sent while
 * no real mutation follows it: until then no id depends on it.
 *
 * Probes: a pull may show that the server processed a mutation whose answer
 * the client never got (a lost response). Its effect is then in the pulled
 * rows, or it was rejected — which only the server's answer can tell. So it
 * stays in the queue as a probe (`$mizu/probe`, the original kept in its
 * args, no local effect) and is sent again, alone in its own scope: the
 * server answers a duplicate, with the rejection it remembers if it had
 * rejected it, and the client reports that as `Rejected`.
 *
 * @since 0.1.0
 */
import type * as Protocol from "../protocol/Sync.js"
import * as internal from "./internal/pushPolicy.js"
import type { PendingMutation } from "./LocalView.js"
import type { SyncTransportError } from "./SyncTransport.js"

/**
 * The reserved mutation name of placeholders; a registry must not define it.
 *
 * @since 0.1.0
 * @category constants
 */
export const DISCARDED = "$mizu/discarded"

/**
 * The reserved mutation name of probes; a registry must not define it.
 *
 * @since 0.1.0
 * @category constants
 */
export const PROBE = "$mizu/probe"

/**
 * The default `maxPushBytes`: the server's default body limit (1 MiB) minus 16 KiB of headroom.
 *
 * @since 0.1.0
 * @category constants
 */
export const DEFAULT_MAX_PUSH_BYTES = 1024 * 1024 - 16 * 1024

/**
 * Whether a name is one of the client's own (never an app mutation).
 *
 * @since 0.1.0
 * @category guards
 */
export const isReservedName: (name: string) => boolean = internal.isReservedName

/**
 * Whether a queued mutation is a placeholder for a dropped one.
 *
 * @since 0.1.0
 * @category guards
 */
export const isPlaceholder: (m: PendingMutation) => boolean = internal.isPlaceholder

/**
 * Whether a queued mutation is a probe for the answer to one the server processed.
 *
 * @since 0.1.0
 * @category guards
 */
export const isProbe: (m: PendingMutation) => boolean = internal.isProbe

/**
 * Whether a queued mutation is the client's own (a placeholder or a probe): no local effect, not pending for the app.
 *
 * @since 0.1.0
 * @category guards
 */
export const isReserved: (m: PendingMutation) => boolean = internal.isReserved

/**
 * The placeholder that takes `m`'s id (and keeps its scope, for the record).
 *
 * @since 0.1.0
 * @category constructors
 */
export const placeholder: (m: PendingMutation) => PendingMutation = internal.placeholder

/**
 * The probe for `m`'s answer.
 *
 * @since 0.1.0
 * @category constructors
 */
export const probe: (m: PendingMutation) => PendingMutation = internal.probe

/**
 * The mutation a probe asks about.
 *
 * @since 0.1.0
 * @category constructors
 */
export const probed: (m: PendingMutation) => PendingMutation = internal.probed

/**
 * A mutation as it goes on the wire.
 *
 * @since 0.1.0
 * @category utils
 */
export const wireOf: (m: PendingMutation, scope?: string) => Protocol.Mutation = internal.wireOf

/**
 * Bytes of a push body of one mutation: what `maxPushBytes` bounds for a single mutation.
 *
 * @since 0.1.0
 * @category utils
 */
export const singleRequestBytes: (clientId: string, wire: Protocol.Mutation) => number = internal.singleRequestBytes

/**
 * One mutation of a request: as queued, and as sent.
 *
 * @since 0.1.0
 * @category models
 */
export interface Sent {
  readonly mutation: PendingMutation
  readonly wire: Protocol.Mutation
}

/**
 * The next request: its mutations and the size of its body.
 *
 * @since 0.1.0
 * @category models
 */
export interface Batch {
  readonly sent: ReadonlyArray<Sent>
  readonly bytes: number
}

/**
 * The longest prefix of `queue` (unanswered mutations, in id order) within
 * the limits, placeholders in their carrier's scope; at least the head
 * whatever its size, unless it is a placeholder with no real mutation after it.
 *
 * @since 0.1.0
 * @category utils
 */
export const nextBatch: (
  queue: ReadonlyArray<PendingMutation>,
  limits: { readonly count: number; readonly bytes: number },
  clientId: string
) => Batch = internal.nextBatch

/**
 * The app mutation a placeholder travels with: the first after it (itself, for any other entry).
 *
 * @since 0.1.0
 * @category utils
 */
export const carrierOf: (queue: ReadonlyArray<PendingMutation>, m: PendingMutation) => PendingMutation | undefined = internal.carrierOf

/**
 * Why the client drops a mutation the server never consumed.
 *
 * @since 0.1.0
 * @category models
 */
export type RefusalCode = "too_large" | "invalid_request" | "unauthorized" | "forbidden" | "not_found"

/**
 * What a failed push request means for its mutations:
 * - `TooLarge` (413): send fewer bytes; a mutation alone is dropped as `too_large`;
 * - `Refused` (400, 401 after the transport's refresh, 403, 404): the server
 *   will refuse these mutations every time; find which by halving the
 *   request, drop that one;
 * - `Retry`: anything else (5xx, 408, 429, no answer, an unknown answer,
 *   `version_not_supported`): nothing was refused for good; send again later.
 *
 * @since 0.1.0
 * @category models
 */
export type RequestFailure =
  /** `409 version_too_old`: this client's code is older than the server accepts; keep everything, stop pushing until the app reloads. */
  | { readonly _tag: "UpdateNeeded"; readonly min: number | undefined; readonly message: string }
  /** `409 version_too_new`: the server runs older code (a rolling deploy); refuse nothing, send again later. */
  | { readonly _tag: "ServerBehind"; readonly message: string }
  | { readonly _tag: "TooLarge"; readonly message: string }
  | { readonly _tag: "Refused"; readonly code: RefusalCode; readonly message: string }
  | { readonly _tag: "Retry" }

/**
 * What a failed request means (`RequestFailure`): by its HTTP status, whatever the error's kind; `version_not_supported` is retried.
 *
 * @since 0.1.0
 * @category utils
 */
export const classify: (error: SyncTransportError) => RequestFailure = internal.classify
