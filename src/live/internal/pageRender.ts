/**
 * Rendering a live page: the whole document (`GET path`), the PATCH regions
 * of a render against the previous one, and the check of a handler's state
 * against the page's Schema.
 *
 * Invariants: every region is wrapped in the element the browser patches
 * (`data-mizu-region`); a PATCH carries only regions whose markup changed;
 * a state that does not match the page's Schema is a `PageError`, never a
 * broken session.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { escape, type Html, html, raw } from "../Html.js"
import { type Any, type Page, PageError, type Region, type Regions } from "../Page.js"

/** The HTML of a region value. */
export const regionHtml = (r: Html | Region): Html => ("html" in r && !("value" in r) ? r.html : r as Html)

/** The action of a region value. */
const regionAction = (r: Html | Region): Region["action"] => ("html" in r && !("value" in r) ? r.action : undefined)

/** Wrap a region for the document: the element the browser patches. */
const regionElement = (id: string, content: Html): Html => html`<div id="${id}" data-mizu-region="${id}">${content}</div>`

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
