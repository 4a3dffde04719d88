/**
 * The browser runtime of live pages: JOINs the live socket with the page's
 * url, applies the regions of the REPLY and every PATCH with idiomorph (focus
 * and input state survive), binds DOM events declared by attributes and sends
 * them as EVENT frames, runs COMMANDs and REDIRECTs, and re-mounts after a
 * reconnect (randomized exponential backoff, full jitter).
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
 * Every frame in is decoded with the protocol Schemas; nothing else parses
 * wire JSON.
 *
 * @since 0.1.0
 */
import * as Either from "effect/Either"
import { Idiomorph } from "idiomorph"
import * as Live from "../protocol/Live.js"

/** Options of `connectPage`. */
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

/** A connected page. */
export interface PageConnection {
  /** Send an EVENT to the page (what the bound attributes do). Resolves with the REPLY. */
  readonly send: (name: string, values?: Readonly<Record<string, unknown>>) => Promise<typeof Live.ReplyPayload.Type>
  /** `connecting`, `connected` or `disconnected`; also on `<body data-mizu-status>`. */
  readonly status: () => string
  readonly close: () => void
}

type Region = { readonly id: string; readonly html: string; readonly action?: string | undefined }

const applyRegion = (region: Region) => {
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

/** Connect the page in this document to its live session. */
export const connectPage = (options: PageOptions = {}): PageConnection => {
  const url = options.url ?? document.body.dataset["mizuPage"] ?? location.pathname + location.search
  const endpoint = options.endpoint ?? `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/_live/websocket`
  const initial = options.reconnectInitial ?? 500
  const max = options.reconnectMax ?? 20_000
  let socket: WebSocket | undefined
  let status = "connecting"
  let attempt = 0
  let ref = 0
  let closed = false
  let heartbeat: ReturnType<typeof setInterval> | undefined
  const waiting = new Map<number, (reply: typeof Live.ReplyPayload.Type) => void>()

  const setStatus = (next: string) => {
    status = next
    document.body.dataset["mizuStatus"] = next
  }

  const sendFrame = (frame: typeof Live.ClientFrame.Encoded) => {
    if (socket?.readyState === WebSocket.OPEN) socket.send(Live.encodeClientFrame(frame))
  }

  const request = (type: 1 | 3, payload: Record<string, unknown>) =>
    new Promise<typeof Live.ReplyPayload.Type>((resolve) => {
      const r = ++ref
      waiting.set(r, resolve)
      sendFrame({ type, ref: r, payload } as typeof Live.ClientFrame.Encoded)
    })

  const onFrame = (text: string) => {
    const decoded = Live.decodeServerFrame(text)
    if (Either.isLeft(decoded)) return
    const frame = decoded.right
    switch (frame.type) {
      case Live.FrameType.REPLY: {
        if (frame.payload.regions !== undefined) frame.payload.regions.forEach(applyRegion)
        const resolve = frame.ref === undefined ? undefined : waiting.get(frame.ref)
        if (resolve !== undefined && frame.ref !== undefined) {
          waiting.delete(frame.ref)
          resolve(frame.payload)
        }
        return
      }
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
      case Live.FrameType.CLOSE:
        if (frame.payload.reason === "page_not_found") closed = true
        return
      default:
        return
    }
  }

  const connect = () => {
    setStatus("connecting")
    const ws = new WebSocket(endpoint, Live.SUBPROTOCOL)
    socket = ws
    ws.onopen = () => {
      request(Live.FrameType.JOIN, { url, ...(options.params ? { params: options.params } : {}) }).then((reply) => {
        if (reply.status === "ok") {
          attempt = 0
          setStatus("connected")
        }
      })
      heartbeat = setInterval(() => sendFrame({ type: Live.FrameType.HEARTBEAT, payload: { ping: Date.now() } }), options.heartbeat ?? 30_000)
    }
    ws.onmessage = (event) => {
      if (typeof event.data === "string") onFrame(event.data)
    }
    ws.onclose = () => {
      clearInterval(heartbeat)
      waiting.clear()
      setStatus("disconnected")
      if (closed) return
      const cap = Math.min(max, initial * 2 ** attempt++)
      setTimeout(connect, Math.random() * cap)
    }
  }

  // -- DOM events, delegated --------------------------------------------------
  const debouncers = new WeakMap<Element, ReturnType<typeof setTimeout>>()
  const fire = (el: Element, attr: string, values: Record<string, unknown>) => {
    const name = el.getAttribute(attr)
    if (name === null) return
    const delay = Number(el.getAttribute("mizu-debounce") ?? 0)
    const go = () => void request(Live.FrameType.EVENT, { name, values })
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

  connect()
  return {
    send: (name, values = {}) => request(Live.FrameType.EVENT, { name, values }),
    status: () => status,
    close: () => {
      closed = true
      socket?.close()
    }
  }
}
