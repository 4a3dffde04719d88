/**
 * Observability: the spans an operator's tracer sees — one per push, one per
 * mutation in it, pull, snapshot, poke and live session — with their
 * attributes. The server runs with a recording tracer (wrapping Effect's own)
 * set through `Layer.setTracer`, as an OpenTelemetry layer would be. With
 * `tracing: false` a request makes no span at all, neither the platform's
 * nor the engine's under it (their cost is what turning tracing off saves).
 */
import { assert, describe, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Tracer from "effect/Tracer"
import { registry } from "../examples/todo/mutations.js"
import { freshScope } from "./suites/util.js"
import { BaseUrl, layerMemoryDeps, layerServer, post } from "./support/TestServer.js"
import { connect, join, T } from "./support/WsClient.js"

interface Recorded {
  readonly name: string
  readonly attributes: () => ReadonlyMap<string, unknown>
  readonly parent: string | undefined
}
const recorded: Array<Recorded> = []
const native = Effect.runSync(Effect.tracer)
const recording = Tracer.make({
  span: (name, parent, context, links, startTime, kind, options) => {
    const span = native.span(name, parent, context, links, startTime, kind, options)
    recorded.push({
      name,
      attributes: () => span.attributes,
      parent: parent._tag === "Some" && parent.value._tag === "Span" ? parent.value.name : undefined
    })
    return span
  },
  context: (f, fiber) => native.context(f, fiber)
})

const spansNamed = (name: string) => recorded.filter((s) => s.name === name)
const waitForSpan = (name: string, pred: (s: Recorded) => boolean = () => true) =>
  Effect.gen(function*() {
    for (let i = 0; i < 100; i++) {
      if (spansNamed(name).some(pred)) return
      yield* Effect.sleep("20 millis")
    }
    assert.fail(`no span ${name} matching; recorded: ${[...new Set(recorded.map((s) => s.name))].join(", ")}`)
  })

describe("spans", () => {
  layer(layerServer({ registry }, layerMemoryDeps).pipe(Layer.provide(Layer.setTracer(recording))), { excludeTestServices: true })(
    "recording tracer",
    (it) => {
      it.effect("push (with one span per mutation), pull, snapshot, poke and session are traced, with scope and client id", () =>
        Effect.gen(function*() {
          const base = yield* BaseUrl
          const scope = freshScope()
          const ws = yield* connect(base)
          yield* join(ws, { scopes: [scope] })
          yield* post(`${base}/_sync/push`, JSON.stringify({
            client_id: "span-client",
            mutations: [
              { id: 1, name: "todo/create", scope, args: { id: "a", title: "a" } },
              { id: 2, name: "todo/toggle", scope, args: { id: "a" } }
            ]
          }))
          yield* ws.waitFor((f) => f.type === T.POKE)
          yield* post(`${base}/_sync/pull`, JSON.stringify({ scope, cursor: 0 }))
          yield* post(`${base}/_sync/snapshot`, JSON.stringify({ scope }))

          yield* waitForSpan("SyncEngine.push", (s) => s.attributes().get("client_id") === "span-client")
          const mutations = spansNamed("SyncEngine.mutation").filter((s) => s.attributes().get("scope") === scope)
          assert.deepStrictEqual(mutations.map((s) => s.attributes().get("name")), ["todo/create", "todo/toggle"])
          assert.deepStrictEqual(mutations.map((s) => s.attributes().get("id")), [1, 2])
          assert.isTrue(mutations.every((s) => s.parent === "SyncEngine.push"), "mutation spans are children of the push span")
          yield* waitForSpan("SyncEngine.pull", (s) => s.attributes().get("scope") === scope)
          yield* waitForSpan("SyncEngine.snapshot", (s) => s.attributes().get("scope") === scope)
          yield* waitForSpan("PokeBroker.poke", (s) => s.attributes().get("scope") === scope)
          yield* waitForSpan("LiveSession")
        }).pipe(Effect.scoped))
    }
  )
})

/** The spans a request may make: the platform's, the engine's, the poke's and the live session's. */
const requestSpan = (name: string) => /^(http\.|SyncEngine\.|PokeBroker\.|LiveSession)/.test(name)

describe("spans with tracing: false", () => {
  layer(layerServer({ registry, tracing: false }, layerMemoryDeps).pipe(Layer.provide(Layer.setTracer(recording))), { excludeTestServices: true })(
    "recording tracer",
    (it) => {
      it.effect("a push, a pull, a snapshot and a live session make no span, though the tracer records others", () =>
        Effect.gen(function*() {
          const base = yield* BaseUrl
          const scope = freshScope()
          const from = recorded.length
          // the recording tracer is the one in place: a span outside a request is recorded
          yield* Effect.withSpan(Effect.void, "probe")
          assert.deepStrictEqual(recorded.slice(from).map((s) => s.name), ["probe"])
          const ws = yield* connect(base)
          yield* join(ws, { scopes: [scope] })
          const pushed = yield* post(`${base}/_sync/push`, JSON.stringify({
            client_id: "untraced-client",
            mutations: [
              { id: 1, name: "todo/create", scope, args: { id: "a", title: "a" } },
              { id: 2, name: "todo/toggle", scope, args: { id: "a" } }
            ]
          }))
          assert.strictEqual(pushed.status, 200)
          yield* ws.waitFor((f) => f.type === T.POKE)
          const pulled = yield* post(`${base}/_sync/pull`, JSON.stringify({ scope, cursor: 0 }))
          assert.strictEqual((pulled.json as { changes: ReadonlyArray<unknown> }).changes.length, 2)
          yield* post(`${base}/_sync/snapshot`, JSON.stringify({ scope }))
          yield* Effect.sync(() => ws.close())
          assert.deepStrictEqual(recorded.slice(from).map((s) => s.name).filter(requestSpan), [])
        }).pipe(Effect.scoped))
    }
  )
})
