/**
 * The todo app's data model, defined once: the server applies these
 * mutations authoritatively, clients run the same code optimistically.
 *
 * App version 2: todos got an optional `due` date, and `todo/create` takes
 * it. The server accepts clients from version 1 (`minVersion`): a v1
 * client's queued `todo/create` is decoded in the v1 shape and upgraded
 * through the chain. `registryV1` is the code as it was at version 1, for
 * showing an old client (the page's `?v=1`).
 */
import { Effect, Option, Schema } from "effect"
import { Entity, Mutation } from "mizu-sync-live/shared"

/**
 * Creation time as Unix milliseconds, set by the creating client in the
 * create mutation's args (so the server and the optimistic run store the same
 * value). Optional: todos created without it sort first.
 */
const CreatedAt = Schema.NonNegativeInt

/** A due date, `YYYY-MM-DD` (app version 2). */
const Due = Schema.String.pipe(Schema.pattern(/^\d{4}-\d{2}-\d{2}$/))

export const Todo = Schema.Struct({
  id: Schema.String,
  title: Schema.String,
  completed: Schema.Boolean,
  createdAt: Schema.optional(CreatedAt),
  due: Schema.optional(Due)
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

const CreateV1 = Schema.Struct({ id: Id, title: Title, createdAt: Schema.optional(CreatedAt) })
const CreateV2 = Schema.Struct({ ...CreateV1.fields, due: Schema.optional(Due) })

const create = Effect.fnUntraced(function*({ createdAt, due, id, title }: typeof CreateV2.Type, tx: Mutation.Transaction) {
  if (Option.isSome(yield* tx.get(TodoEntity, id))) return yield* Mutation.reject(`todo ${id} already exists`)
  yield* tx.put(TodoEntity, id, {
    id,
    title,
    completed: false,
    ...(createdAt === undefined ? {} : { createdAt }),
    ...(due === undefined ? {} : { due })
  })
})

/**
 * Create a todo. Its args changed in version 2 (`due`); a v1 value is a
 * valid v2 value (a new optional field), so the upgrade keeps it as it is. An
 * incompatible change later adds its own `changedIn(3, …)` with the
 * function from the v2 shape.
 */
export const createTodo = Mutation.make("todo/create", {
  args: Mutation.versioned(CreateV1).changedIn(2, CreateV2, (v1) => v1),
  handler: create
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

/** Everything the todo app's server and clients are built from: app version 2, clients from version 1 accepted. */
export const registry = Mutation.registry({
  version: 2,
  minVersion: 1,
  entities: [TodoEntity],
  mutations: [createTodo, toggleTodo, renameTodo, deleteTodo]
})

/** The app as it was at version 1 (`todo/create` without `due`): what an old client still runs. */
export const registryV1 = Mutation.registry({
  entities: [TodoEntity],
  mutations: [Mutation.make("todo/create", { args: CreateV1, handler: create }), toggleTodo, renameTodo, deleteTodo]
})
