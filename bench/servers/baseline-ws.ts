/**
 * The hand-written baseline for live: a plain `ws` server (same limits as
 * ours: `maxPayload` 64 KiB, subprotocol `mizu-live-v1`) on `node:http`,
 * speaking the part of PROTOCOL.md section 2 the benchmarks use: JOIN with
 * scopes answered by REPLY (session id, cursors), HEARTBEAT answered, and
 * `POST /poke {scope, cursor}` which sends every subscriber of the scope the
 * POKE frame `{"type":11,"payload":{"scope":…,"cursor":…}}`, encoded once;
 * and EVENT with a `topic` the session joined, relayed as BROADCAST to the
 * other subscribers of that topic (bench/load.ts uses it).
 *
 * Argument (JSON): {}. Commands: `heap` (needs --expose-gc), `sessions`.
 */
import * as Http from "node:http"
import type { WebSocket } from "ws"
import * as Control from "../lib/control.js"

const subscribers = new Map<string, Set<WebSocket>>()
const heads = new Map<string, number>()
let sessions = 0

const wss = Control.liveSocketServer()

wss.on("connection", (ws) => {
  sessions++
  const mine = new Set<string>()
  ws.on("message", (data, isBinary) => {
    if (isBinary) return
    let frame: { type?: unknown; ref?: unknown; payload?: { scopes?: unknown; ping?: unknown } }
    try {
      frame = JSON.parse(data.toString())
    } catch {
      ws.send(JSON.stringify({ type: 8, payload: { code: "invalid_message", recoverable: true } }))
      return
    }
    if (frame.type === 1) {
      const scopes = Array.isArray(frame.payload?.scopes) ? (frame.payload.scopes as Array<string>) : []
      const cursors = Control.subscribe(subscribers, ws, mine, scopes, (scope) => heads.get(scope) ?? 0)
      ws.send(JSON.stringify({ type: 5, ref: frame.ref, payload: { status: "ok", session_id: crypto.randomUUID(), cursors } }))
    } else if (frame.type === 3) {
      const topic = (frame as { topic?: unknown }).topic
      if (typeof topic !== "string" || !mine.has(topic)) return
      const payload = frame.payload as { name?: unknown; values?: unknown }
      const out = JSON.stringify({ type: 14, payload: { topic, event: payload.name, payload: payload.values } })
      for (const other of subscribers.get(topic) ?? []) if (other !== ws) other.send(out)
    } else if (frame.type === 4) {
      ws.send(JSON.stringify({ type: 4, ref: frame.ref, payload: { pong: frame.payload?.ping } }))
    }
  })
  ws.on("close", () => {
    sessions--
    for (const scope of mine) subscribers.get(scope)?.delete(ws)
  })
})

const server = Http.createServer((req, res) => {
  const chunks: Array<Buffer> = []
  req.on("data", (c: Buffer) => chunks.push(c))
  req.on("end", () => {
    if (req.method !== "POST" || req.url !== "/poke") {
      res.writeHead(404).end()
      return
    }
    const { cursor, scope } = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { scope: string; cursor: number }
    heads.set(scope, cursor)
    const frame = JSON.stringify({ type: 11, payload: { scope, cursor } })
    for (const ws of subscribers.get(scope) ?? []) ws.send(frame)
    const body = JSON.stringify({ results: [{ ok: true, cursor }] })
    res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) }).end(body)
  })
})
Control.upgradeAt(server, "/_live/websocket", wss)
Control.listenReady(server, { heap: () => Control.heap(), sessions: () => sessions })
process.on("SIGTERM", () => process.exit(0))
