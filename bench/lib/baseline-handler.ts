/**
 * The hand-written baseline's HTTP side, shared by bench/servers/baseline-http.ts
 * and bench/servers/baseline-sync.ts: a plain `node:http` request listener for
 * `POST /_sync/push` and `POST /_sync/pull`. The body is read whole, parsed
 * with JSON.parse and checked by hand (no Schema: part of what a hand-written
 * server saves, and part of what we measure), then handed to the storage of
 * bench/lib/baseline-sql.ts.
 */
import type * as Http from "node:http"
import * as BaselineSql from "./baseline-sql.js"

type Mutation = BaselineSql.Mutation
const { isStr } = BaselineSql

/** Called after a push's transaction committed, before its response is written (baseline-sync pokes there). */
export type OnPushed = (mutations: ReadonlyArray<Mutation>, results: ReadonlyArray<Record<string, unknown>>) => void

class BadRequest extends Error {}

const handle = (storage: BaselineSql.Baseline, onPushed: OnPushed | undefined, url: string, json: unknown): { status: number; body: unknown } => {
  if (typeof json !== "object" || json === null) throw new BadRequest("body must be an object")
  const b = json as Record<string, unknown>
  if (url === "/_sync/push") {
    const clientId = b["client_id"]
    const mutations = b["mutations"]
    if (!isStr(clientId, 128) || !Array.isArray(mutations) || mutations.length < 1 || mutations.length > 1000) {
      throw new BadRequest("bad push")
    }
    for (const m of mutations as Array<Mutation>) {
      if (typeof m !== "object" || m === null || !Number.isSafeInteger(m.id) || m.id < 1 || !isStr(m.name, 128)) {
        throw new BadRequest("bad mutation")
      }
      if (m.scope !== undefined && !isStr(m.scope, 256)) throw new BadRequest("bad scope")
    }
    const results = storage.push(clientId, mutations as Array<Mutation>)
    onPushed?.(mutations as Array<Mutation>, results)
    return { status: 200, body: { results } }
  }
  if (url === "/_sync/pull") {
    const scope = b["scope"]
    const cursor = b["cursor"]
    const limit = b["limit"] ?? 100
    const clientId = b["client_id"]
    if (!isStr(scope, 256) || !Number.isSafeInteger(cursor) || (cursor as number) < 0) throw new BadRequest("bad pull")
    if (!Number.isSafeInteger(limit) || (limit as number) < 1 || (limit as number) > 1000) throw new BadRequest("bad limit")
    if (clientId !== undefined && !isStr(clientId, 128)) throw new BadRequest("bad client_id")
    return storage.pull(scope, cursor as number, limit as number, clientId as string | undefined)
  }
  return { status: 404, body: { error: { code: "not_found", message: "no such route" } } }
}

/** The request listener: the protocol's bodies and error bodies; 503 `unavailable` when storage throws. */
export const listener = (storage: BaselineSql.Baseline, onPushed?: OnPushed): Http.RequestListener => (req, res) => {
  const chunks: Array<Buffer> = []
  let size = 0
  req.on("data", (c: Buffer) => {
    size += c.length
    chunks.push(c)
  })
  req.on("end", () => {
    let out: { status: number; body: unknown }
    try {
      if (req.method !== "POST") out = { status: 405, body: { error: { code: "method_not_allowed", message: "use POST" } } }
      else if (size > 1024 * 1024) out = { status: 413, body: { error: { code: "payload_too_large", message: "too large" } } }
      else out = handle(storage, onPushed, req.url ?? "", JSON.parse(Buffer.concat(chunks, size).toString("utf8")))
    } catch (e) {
      out = e instanceof BadRequest || e instanceof SyntaxError
        ? { status: 400, body: { error: { code: "invalid_request", message: e.message } } }
        : { status: 503, body: { error: { code: "unavailable", message: "storage unavailable" } } }
    }
    const text = JSON.stringify(out.body)
    res.writeHead(out.status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) })
    res.end(text)
  })
}
