/**
 * A sync server on a free port of 127.0.0.1, started for a test block and
 * stopped after it.
 */
import * as HttpServer from "@effect/platform/HttpServer"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as SchemaModule from "effect/Schema"
import { Authorizer, LivePubSub, Server, SyncStorage } from "mizu-sync-live"
import { createServer } from "node:http"

/** The base URL of the server under test. */
export class BaseUrl extends Context.Tag("test/BaseUrl")<BaseUrl, string>() {}

export const layerNodeServer: Layer.Layer<HttpServer.HttpServer | Server.NodeRequests | BaseUrl, unknown> = Layer.effectContext(
  Effect.map(HttpServer.HttpServer, (server) => {
    const address = server.address
    const url = address._tag === "TcpAddress" ? `http://127.0.0.1:${address.port}` : "http://unix"
    return Context.make(BaseUrl, url)
  })
).pipe(Layer.provideMerge(Server.layerNodeHttpServer(createServer, { port: 0, host: "127.0.0.1" })))

/** What a test server needs besides itself: storage, pub/sub and an authorizer. */
export type Deps = SyncStorage.Services | LivePubSub.LivePubSub | Authorizer.Authorizer

/** Memory storage, memory pub/sub, allow-all: the default deps of a test server. */
export const layerMemoryDeps: Layer.Layer<Deps> = Layer.mergeAll(
  SyncStorage.layerMemory,
  LivePubSub.layerMemory,
  Authorizer.layerAllowAll
)

/** A whole server (sync + live) on a free port, over the deps given; its services stay reachable. */
export const layerServer = <E>(options: Server.Options, deps: Layer.Layer<Deps, E>) =>
  Server.layer(options).pipe(
    Layer.provideMerge(deps),
    Layer.provideMerge(layerNodeServer)
  )

/** Any request: its status, body text, body JSON (when it is JSON) and headers. */
export const request = (url: string, init: RequestInit = {}) =>
  Effect.promise(async () => {
    const res = await fetch(url, init)
    const text = await res.text()
    let json: unknown = undefined
    try {
      json = JSON.parse(text)
    } catch {
      // not JSON: the test asserts on `text`
    }
    return { status: res.status, json, text, headers: res.headers }
  })

/** POST a raw body. */
export const post = (url: string, body: string, headers: Record<string, string> = { "content-type": "application/json" }) =>
  request(url, { method: "POST", headers, body })

/** Decode a response body with a protocol Schema (fails the test if it does not match). */
export const decodeAs = <A, I>(schema: import("effect/Schema").Schema<A, I>, json: unknown): A =>
  SchemaModule.decodeUnknownSync(schema)(json)

/** The server's `mizu_live_sessions` gauge: live sessions open on its process (0 before the first). */
export const liveSessions = async (base: string): Promise<number> => {
  const text = await (await fetch(`${base}/_sync/metrics`)).text()
  const line = text.split("\n").find((l) => l.startsWith("mizu_live_sessions "))
  return line === undefined ? 0 : Number(line.slice("mizu_live_sessions ".length))
}
