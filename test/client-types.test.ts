/**
 * The clients are typed by their registry: a mutation name or definition
 * outside it, or args of the wrong shape, fail `tsc` (the `@ts-expect-error`
 * lines, checked by `npm test`'s typecheck) on the Effect API (`SyncClient`)
 * and the Promise API (`MizuSync`); a client without a registry takes any
 * name and args. Each refused line also runs, and is refused at run time for
 * the same reason, so the types and the checks agree.
 */
import { assert, describe, expectTypeOf, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import {
  ClientStorage,
  Entity,
  MizuSync,
  type MizuSyncOptions,
  MutateError,
  Mutation,
  type MutationInput,
  SyncClient,
  SyncTransport
} from "mizu-sync-live/client"
import { unplugged } from "./support/clientHarness.js"

/** The registry the clients are typed by, defined here so the expected types below are this file's. */
const Note = Entity.make("note", Schema.Struct({ id: Schema.String, text: Schema.String }))
const addNote = Mutation.make("note/add", {
  args: Schema.Struct({ id: Schema.NonEmptyString, text: Schema.String }),
  handler: ({ id, text }, tx) => tx.put(Note, id, { id, text })
})
const removeNote = Mutation.make("note/remove", {
  args: Schema.Struct({ id: Schema.NonEmptyString }),
  handler: ({ id }, tx) => tx.delete(Note, id)
})
const registry = Mutation.registry({ entities: [Note], mutations: [addNote, removeNote] })

type NoteMutation = typeof registry extends Mutation.Registry<infer M> ? M : never

/** Every request fails as if offline: the failures under test are local. */
const offline = unplugged(SyncTransport.makeFetch({ baseUrl: "http://127.0.0.1:1" }), { value: true })
const offlineLayer = Layer.succeed(SyncTransport.SyncTransport, offline)

/** A mutation of no registry here. */
const elsewhere = Mutation.make("elsewhere/do", {
  args: Schema.Struct({ n: Schema.Number }),
  handler: () => Effect.void
})

const scope = "types"

/** The rejection of a Promise (fails the test if it resolves). */
const rejection = (promise: () => Promise<unknown>) =>
  Effect.flatMap(
    Effect.promise(() => promise().then(() => undefined, (e: unknown) => ({ e }))),
    (r) => r === undefined ? Effect.dieMessage("expected a rejection") : Effect.succeed(r.e)
  )

const reasonOf = (e: unknown) => {
  assert.instanceOf(e, MutateError)
  return e.reason
}

const openPlain = <M extends Mutation.Mutation = Mutation.Mutation>(options: MizuSyncOptions<M>) =>
  Effect.acquireRelease(
    Effect.promise(() => MizuSync.open<M>({ storage: "memory", transport: offlineLayer, ...options })),
    (client) => Effect.promise(() => client.close())
  )

describe("typed clients", () => {
  it("MutationArgs: the args of a registry's mutation by name; anything without a registry", () => {
    expectTypeOf<SyncClient.MutationArgs<NoteMutation, "note/remove">>().toEqualTypeOf<{ readonly id: string }>()
    expectTypeOf<SyncClient.MutationArgs<NoteMutation, "note/add">>().toEqualTypeOf<{ readonly id: string; readonly text: string }>()
    expectTypeOf<SyncClient.MutationArgs<Mutation.Mutation, "anything">>().toBeUnknown()
    expectTypeOf<MutationInput<NoteMutation>>().toMatchTypeOf<{ readonly name: NoteMutation["name"] }>()
    assert.deepStrictEqual([...registry.mutations.keys()], ["note/add", "note/remove"])
  })

  it.scoped("the Effect API: SyncClient.make and SyncClient.typed are typed by the registry", () =>
    Effect.gen(function*() {
      const context = yield* Layer.build(
        SyncClient.layer({ registry }).pipe(Layer.provide(Layer.merge(offlineLayer, ClientStorage.layerMemory)))
      )
      const client = yield* Effect.provide(SyncClient.typed(registry), context)
      expectTypeOf(client).toEqualTypeOf<SyncClient.Client<NoteMutation>>()

      const added = yield* client.mutate("note/add", { id: "a", text: "a" }, { scope })
      yield* client.mutate(addNote, { id: "b", text: "b" }, { scope })
      yield* client.mutateUnknown("note/remove", { id: "b" }, { scope })
      assert.strictEqual(added.id, 1)
      assert.deepStrictEqual(yield* client.query(scope, Note), [["a", { id: "a", text: "a" }]])

      // @ts-expect-error: not a mutation of the registry
      assert.strictEqual((yield* Effect.flip(client.mutate("note/nope", {}, { scope }))).reason, "unknown_mutation")
      // @ts-expect-error: `text` is missing
      assert.strictEqual((yield* Effect.flip(client.mutate("note/add", { id: "c" }, { scope }))).reason, "invalid_args")
      // @ts-expect-error: `id` is a string
      assert.strictEqual((yield* Effect.flip(client.mutate(removeNote, { id: 1 }, { scope }))).reason, "invalid_args")
      // @ts-expect-error: a definition outside the registry
      assert.strictEqual((yield* Effect.flip(client.mutate(elsewhere, { n: 1 }, { scope }))).reason, "unknown_mutation")
      // the escape for names known at run time only: the same checks, at run time
      assert.strictEqual((yield* Effect.flip(client.mutateUnknown("note/nope", {}, { scope }))).reason, "unknown_mutation")
      assert.deepStrictEqual((yield* client.pending).map((m) => m.name), ["note/add", "note/add", "note/remove"])

      // the Tag itself is the client of any registry
      const untyped = Context.get(context, SyncClient.SyncClient)
      expectTypeOf(untyped.mutate).toBeCallableWith("anything", { at: "all" })
      // typed by another registry: a lie, refused
      const other = Mutation.registry({ entities: [], mutations: [elsewhere] })
      const lie = yield* Effect.exit(Effect.provide(SyncClient.typed(other), context))
      assert.isTrue(Exit.isFailure(lie) && !Exit.isInterrupted(lie))
    }))

  it.scoped("the Promise API: MizuSync is typed by the registry; without one it takes any name and args", () =>
    Effect.gen(function*() {
      const sync = yield* openPlain({ registry })
      expectTypeOf(sync).toEqualTypeOf<MizuSync<NoteMutation>>()
      yield* Effect.promise(() => sync.mutate("note/add", { id: "a", text: "a" }, { scope }))
      yield* Effect.promise(() => sync.mutate(removeNote, { id: "a" }, { scope }))

      // @ts-expect-error: not a mutation of the registry
      assert.strictEqual(reasonOf(yield* rejection(() => sync.mutate("note/nope", {}, { scope }))), "unknown_mutation")
      // @ts-expect-error: `text` is a string
      assert.strictEqual(reasonOf(yield* rejection(() => sync.mutate("note/add", { id: "a", text: 2 }, { scope }))), "invalid_args")
      // @ts-expect-error: `id` is missing
      assert.strictEqual(reasonOf(yield* rejection(() => sync.mutate(removeNote, {}, { scope }))), "invalid_args")
      // @ts-expect-error: a definition outside the registry
      assert.strictEqual(reasonOf(yield* rejection(() => sync.mutate(elsewhere, { n: 1 }, { scope }))), "unknown_mutation")
      // @ts-expect-error: push takes the registry's mutations too
      assert.strictEqual(reasonOf(yield* rejection(() => sync.push([{ name: "note/nope", scope, args: {} }]))), "unknown_mutation")
      assert.strictEqual(reasonOf(yield* rejection(() => sync.mutateUnknown("note/nope", {}, { scope }))), "unknown_mutation")
      assert.deepStrictEqual(sync.pending.map((m) => m.name), ["note/add", "note/remove"])

      // no registry: any name, any args, queued as given
      const plain = yield* openPlain({})
      expectTypeOf(plain).toEqualTypeOf<MizuSync<Mutation.Mutation>>()
      const queued = yield* Effect.promise(() => plain.mutate("anything/at-all", { free: ["form"] }, { scope }))
      yield* Effect.promise(() => plain.mutate(elsewhere, { n: 1 }, { scope }))
      assert.deepStrictEqual(queued, { id: 1, name: "anything/at-all", scope, args: { free: ["form"] } })
      assert.deepStrictEqual(plain.pending.map((m) => m.name), ["anything/at-all", "elsewhere/do"])
    }))
})
