// The todo page: plain ES modules, no bundler. The client and the todo
// mutations come from the server (/_live/runtime.js, /todo/mutations.js).
// `?list=` picks the list, `?name=` who you are, `?token=` the bearer token
// sent on every request and on the live socket (for a server with AUTH_TOKENS),
// `?v=1` runs the app as it was at version 1 (no due dates): an old client the
// server (version 2) still accepts, its queued todos upgraded on the way in.
// Several tabs of one browser share one store, one socket and one push queue
// (MizuSync.open does it; nothing here is about tabs).
// After one online visit the page also opens offline: /sw.js caches the files it
// loads, and the list comes from the local store (IndexedDB), pending changes included.
import { AppShell, MizuSync } from "/_live/runtime.js"
import { byCreation, nextCreatedAt, registry, registryV1, TodoEntity } from "/todo/mutations.js"

performance.mark("todo:start") // the modules are loaded and evaluated (bench/first-render.ts reads the marks)
const shell = AppShell.register({ url: "/sw.js" })

const $ = (id) => document.getElementById(id)
const params = new URLSearchParams(location.search)
const list = params.get("list") ?? "demo"
const scope = `user:${list}:todos`
const me = params.get("name") ?? sessionStorage.getItem("mizu-name") ?? `guest-${Math.random().toString(36).slice(2, 6)}`
sessionStorage.setItem("mizu-name", me)
$("scope").textContent = scope
$("me").textContent = me

const token = params.get("token") || undefined
const appVersion = params.get("v") === "1" ? 1 : registry.version
$("due-input").hidden = appVersion < 2

const sync = await MizuSync.open({
  registry: appVersion === 1 ? registryV1 : registry,
  dbName: `mizu-todos-${list}`,
  // the token goes to the HTTP transport (Authorization: Bearer) and to the live socket (JOIN's token)
  ...(token === undefined ? { live: true } : { token, live: { token } })
})
performance.mark("todo:opened") // the local store is loaded
const live = sync.live

// -- the list, re-rendered from the reactive query, in creation order ---------------
// One listener per kind of event on the list (not per row): a list of 50,000 rows renders in one pass.
const pendingIds = () => new Set(sync.pending.map((m) => m.args?.id))
/** The todos as last rendered (no decode of the whole list per new todo). */
const todos = () => (latest ?? []).map(([, todo]) => todo)
let firstRender = true
const render = (entries) => {
  const rows = [...entries].sort(([, a], [, b]) => byCreation(a, b))
  const pending = pendingIds()
  const ul = $("todos")
  ul.replaceChildren(...rows.map(([id, todo]) => {
    const li = document.createElement("li")
    li.dataset.id = id
    li.className = todo.completed ? "done" : ""
    const label = document.createElement("label")
    const box = document.createElement("input")
    box.type = "checkbox"
    box.checked = todo.completed
    box.setAttribute("aria-label", `Done: ${todo.title}`)
    const title = document.createElement("span")
    title.className = "title"
    title.textContent = todo.title
    title.title = "Double-click to rename"
    label.append(box, title)
    if (todo.due !== undefined) {
      const due = document.createElement("time")
      due.className = "due"
      due.dateTime = todo.due
      due.textContent = todo.due
      label.append(due)
    }
    li.append(label)
    if (pending.has(id)) {
      const dot = document.createElement("span")
      dot.className = "pending-dot"
      dot.title = "not yet saved on the server"
      li.append(dot)
    }
    const del = document.createElement("button")
    del.type = "button"
    del.className = "delete"
    del.textContent = "×"
    del.setAttribute("aria-label", `Delete ${todo.title}`)
    li.append(del)
    return li
  }))
  $("empty").hidden = rows.length > 0
  const left = rows.filter(([, t]) => !t.completed).length
  $("count").textContent = `${left} left · ${rows.length} in all`
  if (firstRender) {
    firstRender = false
    performance.mark("todo:rendered")
  }
}

// The rows last seen (from the subscription: its first call is what this browser already has,
// offline or not), and one render per burst of changes: a status change and a row change in the
// same tick render once.
let latest
let scheduled = false
const show = (entries) => {
  if (entries !== undefined) latest = entries
  if (scheduled || latest === undefined) return
  scheduled = true
  queueMicrotask(() => {
    scheduled = false
    render(latest)
  })
}

const rowOf = (target) => {
  const li = target instanceof Element ? target.closest("#todos > li") : null
  return li === null ? undefined : { li, id: li.dataset.id }
}
$("todos").addEventListener("change", (e) => {
  const row = rowOf(e.target)
  if (row !== undefined && e.target.matches("input[type=checkbox]")) mutate("todo/toggle", { id: row.id })
})
$("todos").addEventListener("click", (e) => {
  const row = rowOf(e.target)
  if (row !== undefined && e.target.matches("button.delete")) mutate("todo/delete", { id: row.id })
})
$("todos").addEventListener("dblclick", (e) => {
  const row = rowOf(e.target)
  if (row !== undefined && e.target.matches("span.title")) rename(row.li, row.id, e.target.textContent)
})

const rename = (li, id, current) => {
  const input = document.createElement("input")
  input.className = "title-edit"
  input.value = current
  input.setAttribute("aria-label", "New title")
  const done = () => {
    const title = input.value.trim()
    if (title !== "" && title !== current) mutate("todo/rename", { id, title })
    else show()
  }
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter") input.blur()
    if (e.key === "Escape") { input.value = current; input.blur() }
  })
  input.addEventListener("blur", done, { once: true })
  li.querySelector("label").replaceWith(input)
  input.focus()
}

const mutate = (name, args) =>
  sync.mutate(name, { ...args }, { scope }).catch((e) => { $("error").textContent = String(e?.message ?? e) })

sync.subscribe(scope, TodoEntity, show)
sync.on("rejected", (e) => { $("error").textContent = `Not saved: ${e.message ?? e.error?.message ?? "rejected"}` })
// the server no longer takes this code's version: nothing is lost, the queue waits for the new code
sync.on("updateNeeded", () => { $("error").textContent = "A new version of the app is out: reload the page (your changes are kept)." })

// -- status badge -----------------------------------------------------------------
let shownPending
const renderStatus = (s) => {
  const badge = $("status")
  const online = s.online && s.live !== "disconnected"
  badge.className = `badge ${!online ? "offline" : s.pending > 0 ? "pending" : "online"}`
  badge.textContent = !online
    ? `offline${s.pending > 0 ? ` · ${s.pending} pending` : ""}`
    : s.pending > 0 ? `syncing ${s.pending}…` : "online · saved"
  // the pending dots follow the queue: the list is rendered again only when it changed
  if (s.pending !== shownPending) {
    shownPending = s.pending
    show()
  }
}
sync.on("status", renderStatus)
renderStatus(sync.status)

// -- new todos, typing indicator ----------------------------------------------------
let lastTyping = 0
$("title-input").addEventListener("input", () => {
  const now = Date.now()
  if (live && now - lastTyping > 1000) {
    lastTyping = now
    live.broadcast(scope, "typing", { name: me }).catch(() => {})
  }
})
$("new").addEventListener("submit", (e) => {
  e.preventDefault()
  const input = $("title-input")
  const title = input.value.trim()
  if (title === "") return
  input.value = ""
  $("error").textContent = ""
  // createdAt is in the args: the optimistic run and the server store the same value
  const due = appVersion >= 2 && $("due-input").value !== "" ? { due: $("due-input").value } : {}
  $("due-input").value = ""
  mutate("todo/create", { id: crypto.randomUUID(), title, createdAt: nextCreatedAt(todos()), ...due })
})

const typists = new Map()
const renderTyping = () => {
  const names = [...typists.keys()]
  $("typing").textContent = names.length === 0 ? "" : `${names.join(", ")} ${names.length === 1 ? "is" : "are"} typing…`
}
live?.on("broadcast", (b) => {
  if (b.topic !== scope || b.event !== "typing") return
  const name = String(b.payload?.name ?? "someone")
  clearTimeout(typists.get(name))
  typists.set(name, setTimeout(() => { typists.delete(name); renderTyping() }, 3000))
  renderTyping()
})

// -- who is here ----------------------------------------------------------------------
const renderPresence = (state) => {
  const names = [...new Set(Object.values(state).map((m) => String(m?.name ?? "?")))].sort()
  $("presence").replaceChildren(...names.map((n) => {
    const li = document.createElement("li")
    li.textContent = n === me ? `${n} (you)` : n
    return li
  }))
}
live?.on("presence", (p) => { if (p.topic === scope) renderPresence(p.current) })

window.mizu = { sync, scope, me, shell }
// Pull now and on every poke; offline, this keeps retrying in the background.
sync.track(scope).catch((e) => { $("error").textContent = String(e?.message ?? e) })
// Presence and typing need the socket subscribed to the scope's topic; the client re-announces after reconnects.
live?.subscribe(scope).then(() => live.presence(scope, { name: me })).catch(() => {})
