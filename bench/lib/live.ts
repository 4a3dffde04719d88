/**
 * A benchmark's reader socket: a WebSocket to a server's `/_live/websocket`
 * that JOINs one scope and then hands every other frame on.
 */
import WebSocket from "ws"

/** A server frame as the readers look at it. */
export interface Frame {
  readonly type: number
  readonly ref?: number
  readonly payload: Record<string, unknown>
}

/**
 * Open a socket on `port`, JOIN `scope` (ref 1) and resolve with the socket
 * and the scope's cursor from the REPLY (a refused JOIN rejects); every
 * other frame goes to `onFrame` with the time it arrived and its text.
 */
export const joinScope = (
  port: number,
  scope: string,
  onFrame: (frame: Frame, at: number, text: string) => void
): Promise<{ readonly ws: WebSocket; readonly cursor: number }> => {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/_live/websocket`, "mizu-live-v1")
  return new Promise((resolve, reject) => {
    let joined = false
    ws.once("error", reject)
    ws.on("message", (data) => {
      const at = performance.now()
      const text = data.toString()
      const frame = JSON.parse(text) as Frame
      if (!joined && frame.type === 5 && frame.ref === 1) {
        if (frame.payload["status"] !== "ok") return reject(new Error(`JOIN refused: ${text}`))
        joined = true
        resolve({ ws, cursor: (frame.payload["cursors"] as Record<string, number> | undefined)?.[scope] ?? 0 })
      } else onFrame(frame, at, text)
    })
    ws.once("open", () => ws.send(JSON.stringify({ type: 1, ref: 1, payload: { scopes: [scope] } })))
  })
}
