// The hand-written baseline of bench/first-render.ts: what a page does with no library.
// Raw IndexedDB (one read-only transaction, getAll of the scope's rows and of the queue,
// the same database the todo app wrote), a shape check per row instead of a Schema
// decode, the queue's creates applied by hand, and a plain DOM render of the same
// markup as examples/todo/public/app.js.

/** The scope's stored rows and the pending queue, as the todo app's client stored them. */
export const read = (dbName, scope) =>
  new Promise((resolve, reject) => {
    const open = indexedDB.open(dbName)
    open.onerror = () => reject(open.error)
    open.onsuccess = () => {
      const db = open.result
      const tx = db.transaction(["rows", "pending"], "readonly")
      const rows = tx.objectStore("rows").getAll(IDBKeyRange.bound(`${scope}\u0000`, `${scope}\u0001`, false, true))
      const pending = tx.objectStore("pending").getAll()
      tx.oncomplete = () => {
        db.close()
        resolve({ rows: rows.result, pending: pending.result })
      }
      tx.onerror = () => reject(tx.error)
    }
  })

const isTodo = (t) =>
  typeof t === "object" && t !== null && typeof t.id === "string" && typeof t.title === "string" &&
  typeof t.completed === "boolean" && (t.createdAt === undefined || typeof t.createdAt === "number")

/** `[id, todo]` of the scope's todos with the pending creates on top, and the pending ids. */
export const todos = (scope, { pending, rows }) => {
  const byId = new Map()
  for (const r of rows) if (r.entity === "todo" && isTodo(r.data)) byId.set(r.id, r.data)
  const pendingIds = new Set()
  for (const m of pending) {
    if (m.scope !== scope || m.name !== "todo/create") continue
    const { createdAt, id, title } = m.args
    byId.set(id, { id, title, completed: false, ...(createdAt === undefined ? {} : { createdAt }) })
    pendingIds.add(id)
  }
  return { entries: [...byId], pendingIds }
}

const byCreation = (a, b) => (a.createdAt ?? 0) - (b.createdAt ?? 0) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)

/** The same markup as the todo app's list. */
export const render = (ul, { entries, pendingIds }) => {
  const rows = [...entries].sort(([, a], [, b]) => byCreation(a, b))
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
    li.append(label)
    if (pendingIds.has(id)) {
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
}
