/**
 * A raw WebSocket test client: sends frames as given (good or bad), records
 * every frame received, decoded with the protocol's server Schemas, and lets
 * a test wait for the frame it expects.
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import { LiveProtocol } from "mizu-sync-live"
import WebSocket from "ws"

export type Frame = typeof LiveProtocol.ServerFrame.Type
export const T = LiveProtocol.FrameType

export interface WsClient {
  readonly ws: WebSocket
  readonly frames: Array<Frame>
  readonly send: (frame: unknown) => void
  readonly sendRaw: (data: string | Buffer) => void
  readonly waitFor: {
    <F extends Frame>(pred: (f: Frame) => f is F, ms?: number): Effect.Effect<F, Error>
    (pred: (f: Frame) => boolean, ms?: number): Effect.Effect<Frame, Error>
  }
  readonly closed: Effect.Effect<{ code: number; reason: string }, Error>
  readonly close: () => void
}

export const wsUrl = (base: string) => base.replace(/^http/, "ws") + "/_live/websocket"

/** Connect (scoped: the socket is terminated when the scope closes). */
export const connect = (base: string, options: { protocols?: Array<string>; autoRead?: boolean } = {}) =>
  Effect.acquireRelease(
    Effect.async<WsClient, Error>((resume) => {
      const ws = new WebSocket(wsUrl(base), options.protocols ?? ["mizu-live-v1"])
      const frames: Array<Frame> = []
      const waiters = new Set<() => void>()
      let closeInfo: { code: number; reason: string } | undefined
      ws.on("message", (data, isBinary) => {
        if (isBinary) return
        const decoded = LiveProtocol.decodeServerFrame(String(data))
        if (Either.isLeft(decoded)) throw new Error(`server sent a frame outside the protocol: ${decoded.left}`)
        frames.push(decoded.right)
        for (const w of waiters) w()
      })
      ws.on("close", (code, reason) => {
        closeInfo = { code, reason: String(reason) }
        for (const w of waiters) w()
      })
      ws.on("error", () => undefined)
      const waitFor = (pred: (f: Frame) => boolean, ms = 5000) =>
        Effect.async<Frame, Error>((resume) => {
          let index = 0
          const check = () => {
            for (; index < frames.length; index++) {
              if (pred(frames[index])) {
                const f = frames[index]
                cleanup()
                resume(Effect.succeed(f))
                return
              }
            }
            if (closeInfo !== undefined) {
              cleanup()
              resume(Effect.fail(new Error(`socket closed (${closeInfo.code}) before the frame came; got ${JSON.stringify(frames)}`)))
            }
          }
          const timer = setTimeout(() => {
            cleanup()
            resume(Effect.fail(new Error(`no matching frame in ${ms} ms; got ${JSON.stringify(frames)}`)))
          }, ms)
          const cleanup = () => {
            clearTimeout(timer)
            waiters.delete(check)
          }
          waiters.add(check)
          check()
          return Effect.sync(cleanup)
        })
      const client: WsClient = {
        ws,
        frames,
        send: (frame) => ws.send(JSON.stringify(frame)),
        sendRaw: (data) => ws.send(data),
        waitFor: waitFor as WsClient["waitFor"],
        closed: Effect.async<{ code: number; reason: string }, Error>((resume) => {
          const check = () => {
            if (closeInfo !== undefined) {
              waiters.delete(check)
              resume(Effect.succeed(closeInfo))
            }
          }
          waiters.add(check)
          check()
          const timer = setTimeout(() => resume(Effect.fail(new Error("socket did not close"))), 10_000)
          return Effect.sync(() => {
            clearTimeout(timer)
            waiters.delete(check)
          })
        }),
        close: () => ws.close()
      }
      ws.once("open", () => resume(Effect.succeed(client)))
      ws.once("unexpected-response", (_req, res) => resume(Effect.fail(new Error(`upgrade refused: ${res.statusCode}`))))
    }),
    (client) => Effect.sync(() => client.ws.terminate())
  )

let refs = 0
export const nextRef = () => ++refs

/** Send a request frame and wait for the REPLY with its ref. */
export const request = (client: WsClient, frame: { type: number; topic?: string; payload?: unknown }) => {
  const ref = nextRef()
  client.send({ ...frame, ref })
  return Effect.map(client.waitFor((f) => f.type === T.REPLY && f.ref === ref), (f) => f.payload as typeof LiveProtocol.ReplyPayload.Type)
}

export const join = (client: WsClient, payload: Record<string, unknown> = {}) => request(client, { type: T.JOIN, payload })

/** The sender's opaque per-topic handle from an EVENT's REPLY (`result.key`): its BROADCAST `from` and PRESENCE key there. */
export const keyOf = (reply: { readonly result?: unknown }): string => {
  const result = reply.result
  if (typeof result !== "object" || result === null || !("key" in result) || typeof result.key !== "string") {
    throw new Error(`the EVENT's REPLY carries no key: ${JSON.stringify(reply)}`)
  }
  return result.key
}

/** A type guard for frames of one type (and an optional extra condition). */
export const is = <K extends Frame["type"]>(type: K, extra?: (f: Extract<Frame, { type: K }>) => boolean) =>
(f: Frame): f is Extract<Frame, { type: K }> =>
  f.type === type && (extra === undefined || extra(f as Extract<Frame, { type: K }>))
