/**
 * The wanted scopes of a `LiveClient` and how they are asked for: JOIN with
 * all of them, SUBSCRIBE in one request or scope by scope, the background
 * retry of the ones a transient refusal left out.
 *
 * Invariants:
 * - A scope leaves `desired` only by `unsubscribe` or a `forbidden`
 *   refusal (reported as a `Forbidden` event); any other refusal or a
 *   timeout keeps it wanted, and it is asked for again with `Backoff`.
 * - A scope a `subscribe` call is asking for (`inflight`) is left to that
 *   call by the background retry.
 * - A link's `subscribed` holds only scopes the server accepted on that
 *   connection and that are still wanted.
 *
 * @since 0.1.0
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import * as Queue from "effect/Queue"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import * as Live from "../../protocol/Live.js"
import * as Protocol from "../../protocol/Sync.js"
import * as Backoff from "../Backoff.js"
import { LiveError, type LiveEvent, type LiveStatus, type Options } from "../LiveClient.js"
import * as Token from "../Token.js"
import type { Connection } from "./liveConnection.js"

/** A connection that joined, with the scopes the server accepted on it. */
export interface Link {
  readonly conn: Connection
  readonly subscribed: Set<string>
}

/** The state of one live client, owned by `liveClient.make`. */
export interface State {
  readonly options: Options
  readonly backoff: Backoff.Options
  readonly pubsub: PubSub.PubSub<LiveEvent>
  readonly status: SubscriptionRef.SubscriptionRef<LiveStatus>
  readonly current: SubscriptionRef.SubscriptionRef<Option.Option<Link>>
  /** What every JOIN asks for. */
  readonly desired: Set<string>
  /** Scopes a `subscribe` call is asking for itself, with how many calls. */
  readonly inflight: Map<string, number>
  /** Wakes the background retry (a `subscribe` ended, an `unsubscribe` freed room). */
  readonly retryWake: Queue.Queue<void>
  /** The values set with `presence`, re-sent on every connection. */
  readonly presenceValues: Map<string, Readonly<Record<string, unknown>>>
  /** The last known presence state per topic. */
  readonly presence: Map<string, Record<string, unknown>>
  sessionId: string | undefined
  joinedOnce: boolean
}

export const publish = (state: State, event: LiveEvent): Effect.Effect<boolean> => PubSub.publish(state.pubsub, event)

/** What a SUBSCRIBE came to: accepted with heads, refused as forbidden (forget), or failed for now (ask again later). */
type SubscribeOutcome =
  | { readonly _tag: "Ok"; readonly cursors: Readonly<Record<string, number>> }
  | { readonly _tag: "Forbidden"; readonly message: string | undefined }
  | { readonly _tag: "Transient"; readonly reason: string; readonly message: string | undefined }

const why = (outcome: Exclude<SubscribeOutcome, { _tag: "Ok" }>): string =>
  outcome.message ?? (outcome._tag === "Transient" ? outcome.reason : "forbidden")

/** A SUBSCRIBE on `conn`, classified; a timeout is transient, a closed connection fails `disconnected`. */
const trySubscribe = (conn: Connection, scopes: ReadonlyArray<string>): Effect.Effect<SubscribeOutcome, LiveError> =>
  conn.request((ref) => ({ type: Live.FrameType.SUBSCRIBE, ref, payload: { scopes } })).pipe(
    Effect.map((reply): SubscribeOutcome => {
      if (reply.status === "ok") return { _tag: "Ok", cursors: reply.cursors ?? {} }
      if (reply.reason === "forbidden") return { _tag: "Forbidden", message: reply.message }
      return { _tag: "Transient", reason: reply.reason ?? "refused", message: reply.message }
    }),
    Effect.catchIf(
      (e) => e.reason === "timeout",
      (e) => Effect.succeed<SubscribeOutcome>({ _tag: "Transient", reason: "timeout", message: e.message })
    )
  )

/** What `subscribeOn` came to. */
export interface Subscribed {
  readonly cursors: Record<string, number>
  readonly forbidden: Array<string>
  readonly failed: Array<string>
}

/** The server refused these scopes as forbidden: no longer wanted. */
const forget = (state: State, link: Link, scopes: ReadonlyArray<string>, message: string | undefined) =>
  scopes.length === 0 ? Effect.void : Effect.suspend(() => {
    for (const s of scopes) {
      state.desired.delete(s)
      link.subscribed.delete(s)
    }
    return publish(state, { _tag: "Forbidden", scopes, message })
  })

/**
 * Subscribe `scopes` on `link`: in one request, or one by one when that is
 * refused (so one bad scope does not hold back the others). Forbidden
 * scopes are forgotten; the others that failed stay wanted. `announce`:
 * publish the accepted heads as a `Subscribed` event (JOIN reports its own
 * in `Online`).
 */
export const subscribeOn = (
  state: State,
  link: Link,
  scopes: ReadonlyArray<string>,
  announce: boolean
): Effect.Effect<Subscribed, LiveError> =>
  Effect.gen(function*() {
    const out: Subscribed = { cursors: {}, forbidden: [], failed: [] }
    const record = (asked: ReadonlyArray<string>, outcome: SubscribeOutcome) => {
      if (outcome._tag !== "Ok") return (outcome._tag === "Forbidden" ? out.forbidden : out.failed).push(...asked)
      for (const s of asked) {
        out.cursors[s] = outcome.cursors[s] ?? 0
        if (state.desired.has(s)) link.subscribed.add(s)
      }
    }
    const all = yield* trySubscribe(link.conn, scopes)
    let reason: string | undefined = all._tag === "Ok" ? undefined : why(all)
    if (all._tag === "Ok" || scopes.length === 1) record(scopes, all)
    else {
      for (const scope of scopes) {
        const one = yield* trySubscribe(link.conn, [scope])
        if (one._tag !== "Ok") reason = why(one)
        record([scope], one)
      }
    }
    yield* forget(state, link, out.forbidden, reason)
    if (out.failed.length > 0) {
      yield* publish(state, {
        _tag: "Error",
        code: "subscribe_failed",
        message: `${out.failed.join(", ")}: ${reason ?? ""} (asked again later)`,
        recoverable: true
      })
    }
    if (announce && Object.keys(out.cursors).length > 0) yield* publish(state, { _tag: "Subscribed", cursors: out.cursors })
    return out
  })

const joinFrame = (state: State, scopes: ReadonlyArray<string>, token: string | undefined) =>
(ref: number): typeof Live.ClientFrame.Encoded => ({
  type: Live.FrameType.JOIN,
  ref,
  payload: {
    scopes,
    ...(token === undefined ? {} : { token }),
    ...(state.options.params === undefined ? {} : { params: state.options.params }),
    ...(state.options.page === undefined ? {} : { url: state.options.page }),
    ...(state.sessionId === undefined ? {} : { session: state.sessionId }),
    ...(state.joinedOnce ? { reconnect: true } : {})
  }
})

/** What a JOIN came to. */
export interface Joined {
  readonly link: Link
  readonly sessionId: string | undefined
  readonly cursors: Record<string, number>
}

/**
 * JOIN with every wanted scope (and a fresh token). If the server refuses
 * (one scope may have become forbidden, or storage failed), JOIN with none
 * and subscribe scope by scope: forbidden ones are forgotten (and
 * reported), the others that failed are left to `retryWanted`, so one bad
 * scope never keeps the client offline.
 */
export const join = (state: State) => (conn: Connection): Effect.Effect<Joined, LiveError> =>
  Effect.gen(function*() {
    const token = yield* Token.resolve(state.options.token).pipe(
      Effect.tapError((e) => publish(state, { _tag: "Error", code: "token_failed", message: e.message, recoverable: true })),
      Effect.mapError((e) => new LiveError({ reason: "refused", message: e.message }))
    )
    const link: Link = { conn, subscribed: new Set() }
    const scopes = [...state.desired]
    const first = yield* conn.request(joinFrame(state, scopes, token))
    if (first.status === "ok") {
      for (const s of scopes) if (state.desired.has(s)) link.subscribed.add(s)
      return { link, sessionId: first.session_id, cursors: { ...first.cursors } }
    }
    yield* publish(state, { _tag: "Error", code: first.reason ?? "join_failed", message: first.message, recoverable: true })
    if (scopes.length === 0) return yield* new LiveError({ reason: "refused", message: first.reason ?? "JOIN refused" })
    const bare = yield* conn.request(joinFrame(state, [], token))
    if (bare.status === "error") return yield* new LiveError({ reason: "refused", message: bare.reason ?? "JOIN refused" })
    const result = yield* subscribeOn(state, link, scopes, false)
    return { link, sessionId: bare.session_id, cursors: result.cursors }
  })

/** A retry round of `retryWanted` ended with some wanted scopes still refused. */
const stillMissing = { _tag: "StillMissing" } as const

/**
 * Ask again, with backoff (`Backoff.wakeable`), for the wanted scopes `link`
 * does not have (and no `subscribe` call is asking for), until none is
 * missing; then idle until woken. A wake cuts a wait short; the delays start
 * over after a round that got every scope. Ends when the connection closes.
 */
export const retryWanted = (state: State, link: Link): Effect.Effect<void> => {
  const missing = () => [...state.desired].filter((s) => !link.subscribed.has(s) && !state.inflight.has(s))
  const round = Effect.suspend(() => {
    const scopes = missing()
    if (scopes.length === 0) return Effect.void
    return Effect.flatMap(subscribeOn(state, link, scopes, true), (r) => r.failed.length === 0 ? Effect.void : Effect.fail(stillMissing))
  })
  const untilSubscribed = Effect.retry(round, {
    schedule: Backoff.wakeable(state.backoff, state.retryWake),
    while: (e) => e._tag === "StillMissing" || e.reason !== "disconnected"
  })
  const idle = Effect.suspend(() => (missing().length === 0 ? Queue.take(state.retryWake) : Effect.void))
  return Effect.forever(Effect.zipRight(untilSubscribed, idle)).pipe(Effect.ignore)
}

/** The current link, once there is one. */
export const awaitLink = (state: State): Effect.Effect<Link> =>
  state.current.changes.pipe(
    Stream.filterMap((c) => c),
    Stream.runHead,
    Effect.flatMap(Option.match({ onNone: () => Effect.never, onSome: Effect.succeed }))
  )

const validateScopes = Schema.decodeUnknownEither(Schema.Array(Protocol.Scope))

export const checkScopes = (scopes: ReadonlyArray<string>): Effect.Effect<ReadonlyArray<string>, LiveError> =>
  Either.match(validateScopes(scopes), {
    onLeft: (e) => Effect.fail(new LiveError({ reason: "invalid", message: Protocol.formatParseError(e) })),
    onRight: (s) => Effect.succeed(s)
  })

/** While `self` runs, the background retry leaves `scopes` to it; afterwards it looks again. */
const asking = <A, E>(state: State, scopes: ReadonlyArray<string>, self: Effect.Effect<A, E>): Effect.Effect<A, E> =>
  Effect.acquireUseRelease(
    Effect.sync(() => {
      for (const s of scopes) state.inflight.set(s, (state.inflight.get(s) ?? 0) + 1)
    }),
    () => self,
    () =>
      Effect.zipRight(
        Effect.sync(() => {
          for (const s of scopes) {
            const n = (state.inflight.get(s) ?? 1) - 1
            if (n > 0) state.inflight.set(s, n)
            else state.inflight.delete(s)
          }
        }),
        Queue.offer(state.retryWake, undefined)
      )
  )

/**
 * `LiveClient.subscribe`: the scopes are wanted from the start, whatever the
 * call comes to. Each attempt waits for a connection (a drop before the
 * REPLY asks again on the next one); scopes that failed for now are asked
 * for again with `Backoff.schedule`; a `forbidden` one fails the call.
 */
export const subscribe = (state: State) => (scopes: ReadonlyArray<string>): Effect.Effect<Readonly<Record<string, number>>, LiveError> =>
  Effect.gen(function*() {
    yield* checkScopes(scopes)
    for (const s of scopes) state.desired.add(s)
    const cursors: Record<string, number> = {}
    let remaining: ReadonlyArray<string> = scopes
    /** One attempt on the current connection; true once nothing is left to ask for. */
    const attempt = Effect.flatMap(awaitLink(state), (link) => subscribeOn(state, link, remaining, true)).pipe(
      Effect.retry({ while: (e) => e.reason === "disconnected" }),
      Effect.flatMap((result) => {
        Object.assign(cursors, result.cursors)
        if (result.forbidden.length > 0) {
          return Effect.fail(new LiveError({ reason: "refused", message: `forbidden: ${result.forbidden.join(", ")}` }))
        }
        remaining = result.failed.filter((s) => state.desired.has(s))
        return Effect.succeed(remaining.length === 0)
      })
    )
    yield* Effect.repeat(attempt, { schedule: Backoff.schedule(state.backoff), until: (done) => done })
    return cursors
  }).pipe((self) => asking(state, scopes, self))

/** `LiveClient.unsubscribe`: no longer wanted at once; the server is told when connected. */
export const unsubscribe = (state: State) => (scopes: ReadonlyArray<string>): Effect.Effect<void, LiveError> =>
  Effect.gen(function*() {
    yield* checkScopes(scopes)
    for (const s of scopes) state.desired.delete(s)
    const link = yield* SubscriptionRef.get(state.current)
    if (Option.isNone(link)) return
    for (const s of scopes) link.value.subscribed.delete(s)
    const reply = yield* link.value.conn.request((ref) => ({ type: Live.FrameType.UNSUBSCRIBE, ref, payload: { scopes } })).pipe(
      Effect.catchTag("LiveError", (e) => e.reason === "disconnected" ? Effect.succeed(undefined) : Effect.fail(e))
    )
    // room freed (too_many_scopes): the background retry may get the others now
    yield* Queue.offer(state.retryWake, undefined)
    if (reply !== undefined && reply.status === "error") {
      return yield* new LiveError({ reason: "refused", message: reply.reason ?? reply.message ?? "refused" })
    }
  })
