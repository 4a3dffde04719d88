/**
 * HTML built from a tagged template that escapes every interpolated value,
 * so state containing `<script>` renders inert. Only values that are already
 * `Html` (from `html` or, explicitly, `raw`) are inserted as markup.
 *
 * @since 0.1.0
 */

const HtmlTypeId: unique symbol = Symbol.for("@mizu/live/Html")

/**
 * A fragment of markup that is safe to insert as is: made only by `html`
 * (which escapes what it interpolates) or, explicitly, by `raw`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Html {
  readonly [HtmlTypeId]: typeof HtmlTypeId
  readonly value: string
  toString(): string
}

const make = (value: string): Html => ({ [HtmlTypeId]: HtmlTypeId, value, toString: () => value })

const isHtml = (u: unknown): u is Html => typeof u === "object" && u !== null && HtmlTypeId in u

const ESCAPES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;", "`": "&#96;" }

/**
 * Escape text for use in element content and quoted attribute values
 * (`&`, `<`, `>`, `"`, `'` and the backtick become entities).
 *
 * @since 0.1.0
 * @category utils
 */
export const escape = (text: string): string => text.replace(/[&<>"'`]/g, (c) => ESCAPES[c] ?? c)

const interpolate = (value: unknown): string => {
  if (value === null || value === undefined || value === false) return ""
  if (isHtml(value)) return value.value
  if (Array.isArray(value)) return value.map(interpolate).join("")
  return escape(String(value))
}

/**
 * The template tag. `null`, `undefined` and `false` render nothing, arrays
 * render each item, `Html` values are inserted as markup, everything else is
 * escaped text.
 *
 * @since 0.1.0
 * @category constructors
 */
export const html = (strings: TemplateStringsArray, ...values: ReadonlyArray<unknown>): Html => {
  let out = strings[0]
  for (let i = 0; i < values.length; i++) out += interpolate(values[i]) + strings[i + 1]
  return make(out)
}

/**
 * Trusted markup, inserted without escaping. Never pass user input.
 *
 * @since 0.1.0
 * @category constructors
 */
export const raw = (markup: string): Html => make(markup)

/**
 * The empty fragment.
 *
 * @since 0.1.0
 * @category constants
 */
export const empty: Html = make("")
