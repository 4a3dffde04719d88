/**
 * The todo app's data model, defined once: the server applies these
 * mutations authoritatively, clients run the same code optimistically.
 */
import { Effect, Option, Schema } from "effect"
import { Entity, Mutation } from "mizu-sync-live/shared"

/**
 * Creation time as Unix milliseconds, set by the creating client in the
 * create mutation's args (so the server and the optimistic run store the same
 * value). Optional: todos created without it sort first.
 */
const CreatedAt = Schema.NonNegativeInt

export const Todo = Schema.Struct({
  id: Schema.String,
  title: Schema.String,
  completed: Schema.Boolean,
  createdAt: Schema.optional(CreatedAt)
})
export type Todo = typeof Todo.Type

/**
 * The list order, the same on every client and the server's live page: by
 * `createdAt` (missing counts as 0), then by id. A total order, so two
 * clients holding the same rows show them in the same order.
 */
export const byCreation = (a: Todo, b: Todo): number =>
  (a.createdAt ?? 0) - (b.createdAt ?? 0) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)

/**
 * The `createdAt` for a new todo: now, or just after the newest of `todos`
 * when a clock is behind, so a new todo always lands at the end of the list
 * it was added to.
 */
export const nextCreatedAt = (todos: Iterable<Todo>, now: number = Date.now()): number => {
  let newest = -1
  for (const todo of todos) newest = Math.max(newest, todo.createdAt ?? 0)
  return Math.max(Math.floor(now), newest + 1)
}

export const TodoEntity = Entity.make("todo", Todo)

const Id = Schema.String.pipe(Schema.minLength(1), Schema.maxLength(64))
const Title = Schema.String.pipe(Schema.minLength(1), Schema.maxLength(500))

const existing = (tx: Mutation.Transaction, id: string) =>
  Effect.flatMap(
    tx.get(TodoEntity, id),
    Option.match({
      onNone: () => Mutation.reject(`todo ${id} not found`),
      onSome: Effect.succeed
    })
  )

export const createTodo = Mutation.make("todo/create", {
  args: Schema.Struct({ id: Id, title: Title, createdAt: Schema.optional(CreatedAt) }),
  handler: ({ createdAt, id, title }, tx) =>
    Effect.gen(function*() {
      if (Option.isSome(yield* tx.get(TodoEntity, id))) return yield* Mutation.reject(`todo ${id} already exists`)
      yield* tx.put(TodoEntity, id, { id, title, completed: false, ...(createdAt === undefined ? {} : { createdAt }) })
    })
})

export const toggleTodo = Mutation.make("todo/toggle", {
  args: Schema.Struct({ id: Id }),
  handler: ({ id }, tx) =>
    Effect.flatMap(existing(tx, id), (todo) => tx.put(TodoEntity, id, { ...todo, completed: !todo.completed }))
})

export const renameTodo = Mutation.make("todo/rename", {
  args: Schema.Struct({ id: Id, title: Title }),
  handler: ({ id, title }, tx) => Effect.flatMap(existing(tx, id), (todo) => tx.put(TodoEntity, id, { ...todo, title }))
})

export const deleteTodo = Mutation.make("todo/delete", {
  args: Schema.Struct({ id: Id }),
  handler: ({ id }, tx) => Effect.zipRight(existing(tx, id), tx.delete(TodoEntity, id))
})

/** Everything the todo app's server and clients are built from. */
export const registry = Mutation.registry({
  entities: [TodoEntity],
  mutations: [createTodo, toggleTodo, renameTodo, deleteTodo]
})
