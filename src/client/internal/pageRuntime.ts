/**
 * `connectPage`: the live page's session on `liveConnection` (the same
 * socket, JOIN, heartbeat and reconnect policy as `LiveClient`).
 *
 * Invariants:
 * - Every connection JOINs with the page's url and params; the regions of
 *   the JOIN's REPLY are applied, so a reconnect re-mounts the page.
 * - The regions of every REPLY, and every PATCH, COMMAND and REDIRECT, are
 *   applied in the order the frames came in.
 * - `<body data-mizu-status>` follows the connection's status; after
 *   `close()` or a CLOSE `page_not_found` it is `disconnected` and no
 *   reconnect follows.
 *
 * @since 0.1.0
 * @internal
 */
import * as Socket from "@effect/platform/Socket"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import * as Live from "../../protocol/Live.js"
import { LiveError, type LiveStatus } from "../LiveClient.js"
import type { PageConnection, PageOptions } from "../PageRuntime.js"
import * as PromiseErrors from "./promiseErrors.js"
import * as Connection from "./liveConnection.js"
import * as Dom from "./pageDom.js"

/** The regions of a REPLY, applied; the reply itself passed on. */
const applyReply = (reply: Live.ReplyPayload): Live.ReplyPayload => {
  reply.regions?.forEach(Dom.applyRegion)
  return reply
}

/** JOIN with the page's url on every connection; the connection is current while it is up. */
const session = (
  join: (ref: number) => typeof Live.ClientFrame.Encoded,
  current: Ref.Ref<Option.Option<Connection.Connection>>
): Connection.Session<void> => ({
  join: (conn) =>
    conn.request(join).pipe(
      Effect.map(applyReply),
      Effect.flatMap((reply) =>
        reply.status === "ok"
          ? Ref.set(current, Option.some(conn))
          : Effect.fail(new LiveError({ reason: "refused", message: reply.reason ?? "JOIN refused" }))
      )
    ),
  online: () => Effect.void,
  offline: Ref.set(current, Option.none()),
  onFrame: (frame) => Effect.sync(() => Dom.applyFrame(frame)),
  onInvalid: () => Effect.void,
  onDefect: (defect) => Effect.logWarning("mizu live page: cannot connect", defect)
})

/** See `PageRuntime.connectPage`. */
export const connectPage = (options: PageOptions = {}): PageConnection => {
  const url = options.url ?? document.body.dataset["mizuPage"] ?? location.pathname + location.search
  const endpoint = options.endpoint ?? `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/_live/websocket`
  const settings: Connection.Settings = {
    url: () => endpoint,
    heartbeat: Duration.millis(options.heartbeat ?? 30_000),
    idle: Duration.seconds(60),
    requestTimeout: Duration.seconds(10),
    backoff: { initial: Duration.millis(options.reconnectInitial ?? 500), max: Duration.millis(options.reconnectMax ?? 20_000) },
    stopOn: new Set(["page_not_found"])
  }
  const join = (ref: number): typeof Live.ClientFrame.Encoded => ({
    type: Live.FrameType.JOIN,
    ref,
    payload: { url, ...(options.params ? { params: options.params } : {}) }
  })
  const runtime = ManagedRuntime.make(Socket.layerWebSocketConstructorGlobal)
  const status = Effect.runSync(SubscriptionRef.make<LiveStatus>("connecting"))
  const current = Effect.runSync(Ref.make(Option.none<Connection.Connection>()))
  const show = (s: LiveStatus) => {
    document.body.dataset["mizuStatus"] = s
  }
  show("connecting")

  const stopped = Effect.zipRight(SubscriptionRef.set(status, "disconnected"), Effect.sync(() => show("disconnected")))
  const fiber = runtime.runFork(Effect.scoped(
    Effect.zipRight(
      Effect.forkScoped(Stream.runForEach(status.changes, (s) => Effect.sync(() => show(s)))),
      Connection.keepConnected(settings, session(join, current), status).pipe(Effect.ignore, Effect.ensuring(stopped))
    )
  ))

  const send = (name: string, values: Readonly<Record<string, unknown>> = {}) =>
    PromiseErrors.runPromise(
      runtime,
      Effect.flatMap(Ref.get(current), Option.match({
        onNone: () => Effect.fail(new LiveError({ reason: "disconnected", message: "not connected; page events are not queued" })),
        onSome: (conn) => Effect.map(conn.request((ref) => ({ type: Live.FrameType.EVENT, ref, payload: { name, values } })), applyReply)
      }))
    )
  // a DOM event the server did not take (offline, a failing handler) leaves the page as it is; it is logged
  Dom.bindEvents((name, values) =>
    void send(name, values).catch((error: unknown) => runtime.runFork(Effect.logWarning("mizu live page: event failed", error))))

  return {
    send,
    status: () => Effect.runSync(SubscriptionRef.get(status)),
    close: () => {
      void runtime.runPromise(Fiber.interrupt(fiber)).then(() => runtime.dispose())
    }
  }
}
