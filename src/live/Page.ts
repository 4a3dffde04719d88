/**
 * Live pages: server-rendered regions kept in sync with the browser over the
 * live socket (the seed's Mount / Render / Handle / Info).
 *
 * - A page is registered on a path. `GET path` renders the whole document
 *   over HTTP (it works without JavaScript); the runtime then JOINs with that
 *   `url`, the page is mounted again on the socket and its regions come in
 *   the JOIN's REPLY.
 * - State is typed (the page's `state` Schema checks every state a handler
 *   returns); the session keeps it, and handles its events one at a time, in
 *   order (the session fiber is sequential).
 * - After each `handle` / `info`, the page is rendered and only the regions
 *   whose HTML changed are sent, in one PATCH.
 * - Durable changes go through sync: `ctx.pushMutation` runs a mutation
 *   through the same `SyncEngine` as `POST /_sync/push` (same transaction,
 *   same pokes), with the session's token, deduplicated under a client id of
 *   the page session's own: random, in no frame, so nobody else can push
 *   under it. Ephemeral ones go through live: `ctx.broadcast`.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Schema from "effect/Schema"
import type * as Protocol from "../protocol/Sync.js"
import type { Html } from "./Html.js"

/**
 * A handler's failure: the EVENT is answered `REPLY {status: "error", message}`,
 * the page keeps its previous state and the session stays.
 *
 * @since 0.1.0
 * @category errors
 */
export class PageError extends Data.TaggedError("PageError")<{ readonly message: string }> {}

/**
 * An event from the browser: `EVENT {name, values}`, handled in arrival order.
 *
 * @since 0.1.0
 * @category models
 */
export interface PageEvent {
  readonly name: string
  readonly values: Readonly<Record<string, unknown>>
}

/**
 * A message for `info`: a poke of a scope the page subscribed, a broadcast,
 * or its own timer message; handled in order with the page's events.
 *
 * @since 0.1.0
 * @category models
 */
export type Info<M = unknown> =
  | { readonly _tag: "Poke"; readonly scope: string; readonly cursor: number }
  | { readonly _tag: "Broadcast"; readonly topic: string; readonly event: string; readonly payload: unknown; readonly from: string }
  | { readonly _tag: "Message"; readonly message: M }

/**
 * One region of a render, with how the browser applies it (`morph` by default).
 *
 * @since 0.1.0
 * @category models
 */
export interface Region {
  readonly html: Html
  readonly action?: "morph" | "replace" | "append" | "prepend" | "remove"
}

/**
 * What `render` returns: region id → HTML (or a `Region` with an action).
 * Only regions whose markup changed since the last render are sent.
 *
 * @since 0.1.0
 * @category models
 */
export type Regions = Readonly<Record<string, Html | Region>>

/**
 * What a page handler may do besides changing its state.
 *
 * @since 0.1.0
 * @category models
 */
export interface PageContext<M = unknown> {
  /** The live session's id (told to its own client only; `"http"` for the HTTP render). */
  readonly sessionId: string
  /** The page's query and JOIN params. */
  readonly params: Readonly<Record<string, unknown>>
  /**
   * Run a mutation through the `SyncEngine`, as `POST /_sync/push` does; the
   * result is returned. A page's pushes go one at a time, numbered by the
   * page; the number moves on only when the server has recorded the mutation,
   * so a push that failed (`unavailable`, `forbidden`) leaves the next one in
   * order.
   */
  readonly pushMutation: (mutation: {
    readonly name: string
    readonly scope?: string
    readonly args?: unknown
  }) => Effect.Effect<Protocol.MutationResult, Protocol.ProtocolError>
  /**
   * Send an ephemeral BROADCAST to the other subscribers of `topic` (the
   * page's own topic by default), `from` the session's handle on the topic.
   * Needs the `Authorizer`'s `broadcast` action on the topic for the
   * session's token (asked once per topic); refused, it is dropped and logged.
   */
  readonly broadcast: (event: string, payload?: unknown, topic?: string) => Effect.Effect<void>
  /** Deliver pokes of `scope` (and broadcasts on it) to `info`; returns the scope's head. */
  readonly subscribe: (scope: string) => Effect.Effect<number, Protocol.ProtocolError>
  /** Deliver `message` to `info` after `delay` (cancelled with the session). */
  readonly sendAfter: (message: M, delay: Duration.DurationInput) => Effect.Effect<void>
  /** Queue COMMANDs for the browser (focus, scroll_into_view, dispatch, set_title), sent after the PATCH. */
  readonly command: (...commands: ReadonlyArray<Command>) => Effect.Effect<void>
  /** Send the browser elsewhere. */
  readonly redirect: (to: string, replace?: boolean) => Effect.Effect<void>
}

/**
 * A browser command, sent in a COMMAND frame after the PATCH of the same step.
 *
 * @since 0.1.0
 * @category models
 */
export type Command =
  | { readonly op: "focus"; readonly selector: string }
  | { readonly op: "scroll_into_view"; readonly selector: string }
  | { readonly op: "dispatch"; readonly selector: string; readonly event: string; readonly detail?: unknown }
  | { readonly op: "set_title"; readonly title: string }

/**
 * A page definition. `R` is what its effects need (Store, SyncEngine, …),
 * provided by `Page.layer`. Every state a handler returns is checked against `state`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Page<S, I = S, M = unknown, R = never> {
  readonly path: `/${string}`
  readonly state: Schema.Schema<S, I>
  readonly title?: (state: S) => string
  readonly mount: (ctx: PageContext<M>) => Effect.Effect<S, PageError, R>
  readonly render: (state: S) => Regions
  readonly handle: (event: PageEvent, state: S, ctx: PageContext<M>) => Effect.Effect<S, PageError, R>
  readonly info?: (message: Info<M>, state: S, ctx: PageContext<M>) => Effect.Effect<S, PageError, R>
  /** Lay the regions out in the document's body (default: each region in order). */
  readonly layout?: (regions: Readonly<Record<string, Html>>, state: S) => Html
  /** Extra markup for `<head>` (styles). */
  readonly head?: Html
  /** The topic `ctx.broadcast` uses by default (`page:<path>`). */
  readonly topic?: string
}

/**
 * Define a page (the identity, for its types).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <S, I, M = unknown, R = never>(page: Page<S, I, M, R>): Page<S, I, M, R> => page

/**
 * A page of any type, as the registry holds them.
 *
 * @since 0.1.0
 * @category models
 */
export type Any = Page<any, any, any, any>

/**
 * The registered pages, with the context their effects need.
 *
 * @since 0.1.0
 * @category services
 */
export class LivePages extends Context.Tag("@mizu/live/LivePages")<LivePages, {
  /** The page registered for a URL's path, if any. */
  readonly find: (url: string) => Any | undefined
  readonly pages: ReadonlyArray<Any>
  /** Provide the pages' requirements to one of their effects. */
  readonly provide: <A, E>(effect: Effect.Effect<A, E, any>) => Effect.Effect<A, E>
}>() {}

const pathOf = (url: string) => {
  try {
    return new URL(url, "http://x").pathname
  } catch {
    return undefined
  }
}

/**
 * Register pages by path (one page per path); their requirements `R` are
 * taken from the layer's context, once, when it is built.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <R>(pages: ReadonlyArray<Page<any, any, any, R>>): Layer.Layer<LivePages, never, R> =>
  Layer.effect(
    LivePages,
    Effect.map(Effect.context<R>(), (context) => {
      const byPath = new Map(pages.map((p) => [p.path as string, p as Any]))
      return LivePages.of({
        pages: pages as ReadonlyArray<Any>,
        find: (url) => {
          const path = pathOf(url)
          return path === undefined ? undefined : byPath.get(path)
        },
        provide: (effect) => Effect.provide(effect, context as Context.Context<any>)
      })
    })
  )

/**
 * No pages (a sync-only server).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerEmpty: Layer.Layer<LivePages> = layer([])

