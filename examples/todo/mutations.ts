/**
 * The todo app's data model, defined once: the server applies these
 * mutations authoritatively, clients run the same code optimistically.
 */
import { Effect, Option, Schema } from "effect"
import { Entity, Mutation } from "mizu-sync-live/shared"

export const Todo = Schema.Struct({
  id: Schema.String,
  title: Schema.String,
  completed: Schema.Boolean
})
export type Todo = typeof Todo.Type

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
  args: Schema.Struct({ id: Id, title: Title }),
  handler: ({ id, title }, tx) =>
    Effect.gen(function*() {
      if (Option.isSome(yield* tx.get(TodoEntity, id))) return yield* Mutation.reject(`todo ${id} already exists`)
      yield* tx.put(TodoEntity, id, { id, title, completed: false })
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
