/**
 * The seed's TodoPage as a live page at `/live/todos`: the server renders the
 * list (in creation order, as the sync page shows it: `byCreation`); events become sync mutations (`ctx.pushMutation`), typing goes over
 * live (`ctx.broadcast`), and any change to the scope — from this page, from
 * the sync client page, from anyone — arrives as a poke and re-renders.
 */
import { Effect, Schema } from "effect"
import { Entity, Html, Page, Store } from "mizu-sync-live"
import { byCreation, nextCreatedAt, Todo, TodoEntity } from "./mutations.js"

const { html } = Html

const State = Schema.Struct({
  scope: Schema.String,
  todos: Schema.Array(Todo),
  typing: Schema.Array(Schema.String),
  error: Schema.optional(Schema.String)
})
type State = typeof State.Type

/** Timer message: forget a typist who went quiet. */
type Message = { readonly _tag: "StopTyping"; readonly who: string }

const loadTodos = (scope: string) =>
  Effect.gen(function*() {
    const store = yield* Store.Store
    const rows = yield* store.list(scope, TodoEntity.name)
    const todos = yield* Effect.forEach(rows, ([, json]) => Entity.decode(TodoEntity, json))
    return todos.sort(byCreation)
  }).pipe(Effect.mapError((e) => new Page.PageError({ message: e.message })))

const item = (todo: Todo) =>
  html`<li class="${todo.completed ? "done" : ""}" data-id="${todo.id}">
  <label><input type="checkbox" mizu-click="toggle" mizu-value-id="${todo.id}" ${todo.completed ? Html.raw("checked") : ""}>
  <span>${todo.title}</span></label>
  <button type="button" class="delete" mizu-click="delete" mizu-value-id="${todo.id}" aria-label="Delete ${todo.title}">×</button>
</li>`

export const TodoPage = Page.make<State, typeof State.Encoded, Message, Store.Store>({
  path: "/live/todos",
  state: State,
  title: (s) => `${s.todos.filter((t) => !t.completed).length} to do · Mizu live todos`,
  head: html`<link rel="stylesheet" href="/app.css">`,
  mount: (ctx) =>
    Effect.gen(function*() {
      const scope = typeof ctx.params["scope"] === "string" ? ctx.params["scope"] : "user:demo:todos"
      yield* ctx.subscribe(scope).pipe(Effect.mapError((e) => new Page.PageError({ message: e.message })))
      return { scope, todos: yield* loadTodos(scope), typing: [] }
    }),
  render: (s) => ({
    header: html`<header><h1>Todos <small>live page</small></h1><p class="scope">${s.scope}</p></header>`,
    form: html`<form mizu-submit="create" class="new">
  <input name="title" placeholder="What needs doing?" autocomplete="off" mizu-input="typing" mizu-debounce="300" aria-label="New todo">
  <button type="submit">Add</button>
</form>`,
    typing: html`<p class="typing" aria-live="polite">${s.typing.length > 0 ? `${s.typing.join(", ")} typing…` : ""}</p>`,
    todos: html`<ul class="todos">${s.todos.map(item)}</ul>`,
    error: html`<p class="error" role="alert">${s.error ?? ""}</p>`
  }),
  handle: (event, s, ctx) =>
    Effect.gen(function*() {
      const push = (name: string, args: unknown) =>
        ctx.pushMutation({ name, scope: s.scope, args }).pipe(Effect.mapError((e) => new Page.PageError({ message: e.message })))
      const id = typeof event.values["id"] === "string" ? event.values["id"] : ""
      switch (event.name) {
        case "create": {
          const title = String(event.values["title"] ?? "").trim()
          if (title === "") return s
          // createdAt after the newest todo: it lands at the end here and on every sync client
          const createdAt = nextCreatedAt(yield* loadTodos(s.scope))
          const result = yield* push("todo/create", { id: crypto.randomUUID(), title, createdAt })
          if (!result.ok) return { ...s, error: result.error?.message }
          break
        }
        case "toggle":
        case "delete": {
          const result = yield* push(`todo/${event.name}`, { id })
          if (!result.ok) return { ...s, error: result.error?.message }
          break
        }
        case "typing":
          yield* ctx.broadcast("typing", { who: `visitor-${ctx.sessionId.slice(0, 4)}` }, s.scope)
          return s
        default:
          return yield* new Page.PageError({ message: `unknown event ${event.name}` })
      }
      return { ...s, todos: yield* loadTodos(s.scope), error: undefined }
    }),
  info: (message, s, ctx) =>
    Effect.gen(function*() {
      switch (message._tag) {
        case "Poke":
          return { ...s, todos: yield* loadTodos(s.scope) }
        case "Broadcast": {
          const payload = message.payload as { readonly who?: unknown } | undefined
          const who = typeof payload?.who === "string" ? payload.who : "someone"
          if (message.event !== "typing") return s
          yield* ctx.sendAfter({ _tag: "StopTyping", who }, "3 seconds")
          return s.typing.includes(who) ? s : { ...s, typing: [...s.typing, who] }
        }
        case "Message":
          return { ...s, typing: s.typing.filter((w) => w !== message.message.who) }
      }
    }),
  layout: (r) => html`<main class="app">${r["header"]}${r["form"]}${r["typing"]}${r["todos"]}${r["error"]}</main>`
})
