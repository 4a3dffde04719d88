/**
 * Observability: Prometheus metrics at GET /_sync/metrics (and off when asked).
 */
import { assert, describe, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { registry } from "../examples/todo/mutations.js"
import { freshScope } from "./suites/util.js"
import { BaseUrl, layerMemoryDeps, layerServer, post } from "./support/TestServer.js"
import { connect, join } from "./support/WsClient.js"

const valueOf = (text: string, series: string): number => {
  const line = text.split("\n").find((l) => l.startsWith(series + " "))
  return line === undefined ? Number.NaN : Number(line.slice(series.length + 1))
}

describe("metrics", () => {
  layer(layerServer({ registry }, layerMemoryDeps), { excludeTestServices: true })("on", (it) => {
    it.effect("counts pushes by result, pull pages, pokes and open sessions, in Prometheus text", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const scope = freshScope()
        const c = yield* connect(base)
        yield* join(c, { scopes: [scope] })
        const before = yield* Effect.promise(() => fetch(`${base}/_sync/metrics`).then((r) => r.text()))
        yield* post(`${base}/_sync/push`, JSON.stringify({
          mutations: [
            { name: "todo/create", scope, args: { id: "a", title: "a" } },
            { name: "todo/toggle", scope, args: { id: "missing" } }
          ]
        }))
        yield* post(`${base}/_sync/pull`, JSON.stringify({ scope, cursor: 0 }))
        yield* c.waitFor((f) => f.type === 0x0b)
        const res = yield* Effect.promise(() => fetch(`${base}/_sync/metrics`))
        assert.include(res.headers.get("content-type") ?? "", "text/plain")
        const after = yield* Effect.promise(() => res.text())
        assert.include(after, "# TYPE mizu_mutations_total counter")
        const delta = (series: string) => valueOf(after, series) - (valueOf(before, series) || 0)
        assert.strictEqual(delta(`mizu_mutations_total{result="ok"}`), 1)
        assert.strictEqual(delta(`mizu_mutations_total{result="rejected"}`), 1)
        assert.strictEqual(delta("mizu_push_requests_total"), 1)
        assert.strictEqual(delta("mizu_pull_pages_total"), 1)
        assert.isAtLeast(delta("mizu_pokes_sent_total"), 1)
        assert.isAtLeast(valueOf(after, "mizu_live_sessions"), 1)
      }).pipe(Effect.scoped))
  })

  layer(layerServer({ registry, metrics: false }, layerMemoryDeps), { excludeTestServices: true })("off", (it) => {
    it.effect("metrics: false removes the endpoint", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const res = yield* Effect.promise(() => fetch(`${base}/_sync/metrics`))
        assert.strictEqual(res.status, 404)
      }))
  })
})
