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
import * as Schema from "effect/Schema"
import type * as Live from "../protocol/Live.js"
import type * as Protocol from "../protocol/Sync.js"
import { escape, type Html, html, raw } from "./Html.js"

/** A handler's failure: answered with `REPLY {status: "error", message}`; the session stays. */
export class PageError extends Data.TaggedError("PageError")<{ readonly message: string }> {}

/** An event from the browser: `EVENT {name, values}`. */
export interface PageEvent {
  readonly name: string
  readonly values: Readonly<Record<string, unknown>>
}

/** A message for `info`: a poke of a scope the page subscribed, a broadcast, or its own timer message. */
export type Info<M = unknown> =
  | { readonly _tag: "Poke"; readonly scope: string; readonly cursor: number }
  | { readonly _tag: "Broadcast"; readonly topic: string; readonly event: string; readonly payload: unknown; readonly from: string }
  | { readonly _tag: "Message"; readonly message: M }

/** One region of a render, with how the browser applies it (`morph` by default). */
export interface Region {
  readonly html: Html
  readonly action?: "morph" | "replace" | "append" | "prepend" | "remove"
}

/** What `render` returns: region id → HTML (or a `Region` with an action). */
export type Regions = Readonly<Record<string, Html | Region>>

/** What a page handler may do besides changing its state. */
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

/** A browser command. */
export type Command =
  | { readonly op: "focus"; readonly selector: string }
  | { readonly op: "scroll_into_view"; readonly selector: string }
  | { readonly op: "dispatch"; readonly selector: string; readonly event: string; readonly detail?: unknown }
  | { readonly op: "set_title"; readonly title: string }

/** A page definition. `R` is what its effects need (Store, SyncEngine, …), provided by `LivePages.layer`. */
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

/** Define a page. */
export const make = <S, I, M = unknown, R = never>(page: Page<S, I, M, R>): Page<S, I, M, R> => page

/** A page of any type, as the registry holds them. */
export type Any = Page<any, any, any, any>

/** The HTML of a region value. */
export const regionHtml = (r: Html | Region): Html => ("html" in r && !("value" in r) ? r.html : r as Html)
/** The action of a region value. */
export const regionAction = (r: Html | Region): Region["action"] => ("html" in r && !("value" in r) ? r.action : undefined)

/** Wrap a region for the document: the element the browser patches. */
export const regionElement = (id: string, content: Html): Html =>
  html`<div id="${id}" data-mizu-region="${id}">${content}</div>`

/** The whole document of a page, as `GET path` serves it. */
export const document = (page: Any, state: unknown, options: { readonly runtimeUrl: string; readonly url: string }): string => {
  const regions = page.render(state)
  const rendered: Record<string, Html> = {}
  for (const [id, region] of Object.entries(regions)) rendered[id] = regionElement(id, regionHtml(region))
  const body = page.layout ? page.layout(rendered, state) : raw(Object.values(rendered).map((h) => h.value).join("\n"))
  const title = page.title ? page.title(state) : ""
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escape(title)}</title>
${page.head?.value ?? ""}
</head>
<body data-mizu-page="${escape(options.url)}">
${body.value}
<script type="module">import { connectPage } from ${JSON.stringify(options.runtimeUrl)}; connectPage();</script>
</body>
</html>`
}

/** The registered pages, with the context their effects need. */
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

/** Register pages; their requirements `R` are taken from the layer's context. */
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

/** No pages (a sync-only server). */
export const layerEmpty: Layer.Layer<LivePages> = layer([])

/** Check a state against the page's Schema (a handler bug surfaces as a PageError, not a broken session). */
export const checkState = <S, I>(page: Page<S, I, any, any>, state: unknown): Effect.Effect<S, PageError> =>
  Schema.is(page.state)(state)
    ? Effect.succeed(state as S)
    : Effect.fail(new PageError({ message: `page ${page.path} produced a state that does not match its Schema` }))

/**
 * The PATCH regions of a render against the previous one: only regions whose
 * markup changed, whatever their action (so an `append` region is appended
 * once per new markup, not on every render).
 */
export const diff = (
  previous: Map<string, string>,
  regions: Regions
): Array<{ readonly id: string; readonly html: string; readonly action?: NonNullable<Region["action"]> }> => {
  const out: Array<{ id: string; html: string; action?: NonNullable<Region["action"]> }> = []
  for (const [id, region] of Object.entries(regions)) {
    const markup = regionHtml(region).value
    const action = regionAction(region)
    if (previous.get(id) === markup) continue
    previous.set(id, markup)
    out.push(action === undefined ? { id, html: markup } : { id, html: markup, action })
  }
  return out
}

/** Typed frames a page session sends. */
export type PatchPayload = typeof Live.PatchPayload.Type
