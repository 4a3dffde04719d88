/**
 * The hand-written baseline for end to end (bench/e2e.ts): push, pull and
 * poke in one process, the honest naive version of our server.
 *
 * - `POST /_sync/push` and `POST /_sync/pull` on `node:http`: the request
 *   listener of bench/servers/baseline-http.ts (bench/lib/baseline-handler.ts:
 *   body read whole, `JSON.parse`, hand checks, no Schema) over the storage
 *   work of bench/lib/baseline-sql.ts
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
import type { WebSocket } from "ws"
import * as BaselineHandler from "../lib/baseline-handler.js"
import * as BaselineSql from "../lib/baseline-sql.js"
import * as Control from "../lib/control.js"

const { filename } = Control.argument<{ filename: string }>()
const { isStr } = BaselineSql
const storage = BaselineSql.open(filename)

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

const wss = Control.liveSocketServer()

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
    const cursors = Control.subscribe(subscribers, ws, mine, scopes, headOf)
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

/** After the commit: one POKE per scope the push advanced, with the scope's head after it. */
const pokeAfterPush: BaselineHandler.OnPushed = (mutations, results) => {
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

const server = Http.createServer(BaselineHandler.listener(storage, pokeAfterPush))
Control.upgradeAt(server, "/_live/websocket", wss)
Control.listenReady(server, { sessions: () => sessions })
process.on("SIGTERM", () => {
  server.close()
  storage.close()
  reader.close()
  process.exit(0)
})
