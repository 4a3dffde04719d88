/**
 * The hand-written baseline for end to end (bench/e2e.ts): push, pull and
 * poke in one process, the honest naive version of our server.
 *
 * - `POST /_sync/push` and `POST /_sync/pull` on `node:http`: the body read
 *   whole, `JSON.parse`, the same hand checks as bench/servers/baseline-http.ts
 *   (no Schema), then the storage work of bench/lib/baseline-sql.ts
 *   (better-sqlite3, WAL, synchronous=NORMAL, one transaction per push with a
 *   savepoint per mutation, on the schema our migrations create);
 * - a plain `ws` server on the same port at `/_live/websocket` (subprotocol
 *   `mizu-live-v1`, `maxPayload` 64 KiB) speaking the part of PROTOCOL.md
 *   section 2 a sync client needs: JOIN (first frame; with `scopes`) →
 *   REPLY `{status, session_id, cursors}`, SUBSCRIBE / UNSUBSCRIBE → REPLY,
 *   HEARTBEAT → pong, LEAVE → CLOSE, ERROR `not_joined` / `invalid_message`;
 * - after a push's transaction has committed, one POKE `{scope, cursor}` per
 *   scope the push advanced (the scope's head after the commit), encoded
 *   once and sent to every socket subscribed to the scope, then the HTTP
 *   response.
 *
 * Same wire shapes as ours, so the same client code drives both. No auth,
 * no cross-process pub/sub, no slow-consumer bound: that is what a
 * hand-written server saves, and part of what we measure.
 *
 * Argument (JSON): { filename } (a database file our migrations created).
 * Commands: `sessions`.
 */
import Database from "better-sqlite3"
import * as Http from "node:http"
import { type WebSocket, WebSocketServer } from "ws"
import * as BaselineSql from "../lib/baseline-sql.js"
import * as Control from "../lib/control.js"

const { filename } = Control.argument<{ filename: string }>()
const { isStr } = BaselineSql
const storage = BaselineSql.open(filename)
type Mutation = BaselineSql.Mutation

// The scope heads for REPLY's cursors, read from the database (a second connection; WAL readers do not block the writer).
const reader = new Database(filename, { readonly: true })
const headStatement = reader.prepare<[string], { head: number }>("SELECT head FROM mizu_heads WHERE scope = ?")
const headOf = (scope: string): number => headStatement.get(scope)?.head ?? 0

// --- live ------------------------------------------------------------------------

const subscribers = new Map<string, Set<WebSocket>>()
let sessions = 0

const poke = (scope: string, cursor: number): void => {
  const set = subscribers.get(scope)
  if (set === undefined || set.size === 0) return
  const frame = JSON.stringify({ type: 11, payload: { scope, cursor } })
  for (const ws of set) ws.send(frame)
}

const isScopes = (x: unknown): x is Array<string> =>
  Array.isArray(x) && x.length <= 100 && x.every((s) => isStr(s, 256))

const wss = new WebSocketServer({
  noServer: true,
  maxPayload: 64 * 1024,
  handleProtocols: (protocols) => (protocols.has("mizu-live-v1") ? "mizu-live-v1" : false)
})

wss.on("connection", (ws) => {
  sessions++
  const mine = new Set<string>()
  let joined = false
  const send = (frame: unknown) => ws.send(JSON.stringify(frame))
  const invalid = () => send({ type: 8, payload: { code: "invalid_message", recoverable: true } })
  const subscribe = (ref: unknown, scopes: ReadonlyArray<string>, extra: Record<string, unknown>) => {
    if (mine.size + scopes.filter((s) => !mine.has(s)).length > 100) {
      send({ type: 5, ref, payload: { status: "error", reason: "too_many_scopes" } })
      return
    }
    const cursors: Record<string, number> = {}
    for (const scope of scopes) {
      let set = subscribers.get(scope)
      if (set === undefined) subscribers.set(scope, (set = new Set()))
      set.add(ws)
      mine.add(scope)
      cursors[scope] = headOf(scope)
    }
    send({ type: 5, ref, payload: { status: "ok", ...extra, cursors } })
  }
  ws.on("message", (data, isBinary) => {
    let frame: { type?: unknown; ref?: unknown; payload?: { scopes?: unknown; ping?: unknown } }
    try {
      if (isBinary) throw new Error("binary")
      frame = JSON.parse(data.toString()) as typeof frame
      if (typeof frame !== "object" || frame === null) throw new Error("not an object")
    } catch {
      invalid()
      return
    }
    const scopes = frame.payload?.scopes
    if (!joined) {
      if (frame.type !== 1) {
        send({ type: 8, payload: { code: "not_joined", recoverable: true } })
        return
      }
      if (scopes !== undefined && !isScopes(scopes)) return invalid()
      joined = true
      subscribe(frame.ref, scopes ?? [], { session_id: crypto.randomUUID() })
      return
    }
    switch (frame.type) {
      case 12:
        if (!isScopes(scopes)) return invalid()
        return subscribe(frame.ref, scopes, {})
      case 13:
        if (!isScopes(scopes)) return invalid()
        for (const scope of scopes) {
          subscribers.get(scope)?.delete(ws)
          mine.delete(scope)
        }
        return send({ type: 5, ref: frame.ref, payload: { status: "ok" } })
      case 4:
        return send({ type: 4, ref: frame.ref, payload: { pong: frame.payload?.ping } })
      case 2:
        send({ type: 10, payload: { reason: "normal" } })
        return ws.close(1000)
      default:
        return invalid()
    }
  })
  ws.on("close", () => {
    sessions--
    for (const scope of mine) subscribers.get(scope)?.delete(ws)
  })
})

// --- sync over HTTP ----------------------------------------------------------------
// The checks of bench/servers/baseline-http.ts (which is a script and exports nothing to import).

class BadRequest extends Error {}

/** After the commit: one POKE per scope the push advanced, with the scope's head after it. */
const pokeAfterPush = (mutations: ReadonlyArray<Mutation>, results: ReadonlyArray<Record<string, unknown>>): void => {
  const heads = new Map<string, number>()
  for (let i = 0; i < results.length; i++) {
    const r = results[i]
    if (r["ok"] !== true || r["duplicate"] === true) continue
    const scope = mutations[i]?.scope ?? "_default"
    const cursor = r["cursor"] as number
    if (cursor > (heads.get(scope) ?? 0)) heads.set(scope, cursor)
  }
  for (const [scope, cursor] of heads) poke(scope, cursor)
}

const handle = (url: string, json: unknown): { status: number; body: unknown } => {
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
    pokeAfterPush(mutations as Array<Mutation>, results)
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

const server = Http.createServer((req, res) => {
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
      else out = handle(req.url ?? "", JSON.parse(Buffer.concat(chunks, size).toString("utf8")))
    } catch (e) {
      out = e instanceof BadRequest || e instanceof SyntaxError
        ? { status: 400, body: { error: { code: "invalid_request", message: e.message } } }
        : { status: 503, body: { error: { code: "unavailable", message: "storage unavailable" } } }
    }
    const text = JSON.stringify(out.body)
    res.writeHead(out.status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) })
    res.end(text)
  })
})
server.on("upgrade", (req, socket, head) => {
  if (req.url !== "/_live/websocket") {
    socket.destroy()
    return
  }
  wss.handleUpgrade(req, socket, head, (ws) => wss.emit("connection", ws, req))
})

server.listen(0, "127.0.0.1", () => {
  const address = server.address()
  Control.serve({ sessions: () => sessions })
  Control.ready({ port: typeof address === "object" && address !== null ? address.port : 0, pid: process.pid })
})
process.on("SIGTERM", () => {
  server.close()
  storage.close()
  reader.close()
  process.exit(0)
})
