/**
 * The DOM side of the live-page runtime: regions applied with idiomorph
 * (focus and input state survive a morph), COMMAND and REDIRECT frames run,
 * and the `mizu-*` attributes (listed in `PageRuntime`) bound by delegation
 * on `document`.
 *
 * @since 0.1.0
 * @internal
 */
import { Idiomorph } from "idiomorph"
import * as Live from "../../protocol/Live.js"

/** A region of a REPLY or PATCH. */
export type Region = { readonly id: string; readonly html: string; readonly action?: string | undefined }

/** Put a region's html in the element with its id (morphed unless the action says otherwise); no element, no change. */
export const applyRegion = (region: Region): void => {
  const el = document.getElementById(region.id)
  if (el === null) return
  switch (region.action ?? "morph") {
    case "replace":
      el.innerHTML = region.html
      return
    case "append":
      el.insertAdjacentHTML("beforeend", region.html)
      return
    case "prepend":
      el.insertAdjacentHTML("afterbegin", region.html)
      return
    case "remove":
      el.remove()
      return
    default:
      Idiomorph.morph(el, region.html, { morphStyle: "innerHTML", ignoreActiveValue: true, restoreFocus: true })
  }
}

const runCommand = (command: unknown) => {
  if (typeof command !== "object" || command === null) return
  const c = command as { op?: unknown; selector?: unknown; event?: unknown; detail?: unknown; title?: unknown }
  const target = typeof c.selector === "string" ? document.querySelector(c.selector) : null
  switch (c.op) {
    case "focus":
      if (target instanceof HTMLElement) target.focus()
      return
    case "scroll_into_view":
      target?.scrollIntoView({ block: "nearest" })
      return
    case "dispatch":
      if (target !== null && typeof c.event === "string") target.dispatchEvent(new CustomEvent(c.event, { bubbles: true, detail: c.detail }))
      return
    case "set_title":
      if (typeof c.title === "string") document.title = c.title
      return
  }
}

/** A PATCH, COMMAND or REDIRECT frame applied to the document; other frames are not the page's. */
export const applyFrame = (frame: typeof Live.ServerFrame.Type): void => {
  switch (frame.type) {
    case Live.FrameType.PATCH:
      frame.payload.regions.forEach(applyRegion)
      if (frame.payload.title !== undefined) document.title = frame.payload.title
      document.dispatchEvent(new CustomEvent("mizu:patched", { detail: frame.payload }))
      return
    case Live.FrameType.COMMAND:
      frame.payload.commands.forEach(runCommand)
      return
    case Live.FrameType.REDIRECT:
      if (frame.payload.replace === true) location.replace(frame.payload.to)
      else location.assign(frame.payload.to)
      return
    default:
      return
  }
}

/** The `mizu-value-*` attributes of an element, as values. */
const valuesOf = (el: Element): Record<string, unknown> => {
  const out: Record<string, unknown> = {}
  for (const attr of Array.from(el.attributes)) {
    if (attr.name.startsWith("mizu-value-")) out[attr.name.slice("mizu-value-".length)] = attr.value
  }
  return out
}

const fieldValues = (el: Element): Record<string, unknown> => {
  const field = el as HTMLInputElement
  const value = field.type === "checkbox" ? field.checked : field.value
  return { ...valuesOf(el), value, ...(field.name ? { name: field.name } : {}) }
}

/** Bind the `mizu-*` attributes of the document: each fires `send(name, values)` (after `mizu-debounce`, if set). */
export const bindEvents = (send: (name: string, values: Record<string, unknown>) => void): void => {
  const debouncers = new WeakMap<Element, ReturnType<typeof setTimeout>>()
  const fire = (el: Element, attr: string, values: Record<string, unknown>) => {
    const name = el.getAttribute(attr)
    if (name === null) return
    const delay = Number(el.getAttribute("mizu-debounce") ?? 0)
    const go = () => send(name, values)
    if (delay > 0) {
      clearTimeout(debouncers.get(el))
      debouncers.set(el, setTimeout(go, delay))
    } else {
      go()
    }
  }
  document.addEventListener("click", (e) => {
    const el = (e.target as Element | null)?.closest?.("[mizu-click]")
    if (el) fire(el, "mizu-click", valuesOf(el))
  })
  document.addEventListener("submit", (e) => {
    const form = (e.target as Element | null)?.closest?.("form[mizu-submit]")
    if (!(form instanceof HTMLFormElement)) return
    e.preventDefault()
    const values: Record<string, unknown> = { ...valuesOf(form) }
    new FormData(form).forEach((v, k) => {
      values[k] = typeof v === "string" ? v : v.name
    })
    fire(form, "mizu-submit", values)
    form.reset()
  })
  for (const [type, attr] of [["change", "mizu-change"], ["input", "mizu-input"]] as const) {
    document.addEventListener(type, (e) => {
      const el = (e.target as Element | null)?.closest?.(`[${attr}]`)
      if (el) fire(el, attr, fieldValues(el))
    })
  }
  document.addEventListener("keydown", (e) => {
    const el = (e.target as Element | null)?.closest?.("[mizu-keydown]")
    if (!el) return
    const key = el.getAttribute("mizu-key")
    if (key !== null && key !== e.key) return
    fire(el, "mizu-keydown", { ...fieldValues(el), key: e.key })
  })
}
