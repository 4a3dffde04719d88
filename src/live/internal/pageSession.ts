/**
 * The live-page half of a session (`PageSession`): a mounted `Page`, its
 * state, the regions last rendered, and its own hub sink. Its events and
 * `info` messages are steps of the session's input stream, so a page handles
 * them one at a time, in order.
 *
 * Invariants:
 * - After each `handle` / `info` that succeeds, the page is rendered and
 *   only the regions whose HTML changed are sent, in one PATCH, then the
 *   queued COMMANDs, then a REDIRECT. A failed handler changes nothing: the
 *   EVENT is answered `REPLY error` (an `info`, `ERROR handler_error`) and
 *   the session stays.
 * - `ctx.pushMutation` pushes one at a time under the page's own client id
 *   (random, in no frame); its mutation id moves on only when the server has
 *   recorded the mutation.
 * - The page's pokes and broadcasts reach `info` through the session's
 *   stream (`PageInfo`), never in the hub's dispatch.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Live from "../../protocol/Live.js"
import type { MutationResult, ProtocolError } from "../../protocol/Sync.js"
import * as Authorizer from "../../sync/Authorizer.js"
import * as StorageErrors from "../../sync/StorageError.js"
import type { Sink } from "../LiveHub.js"
import * as Page from "../Page.js"
import * as PageRender from "./pageRender.js"
import { castGrant } from "./sessionCast.js"
import type { SessionProtocol } from "./sessionProtocol.js"

const { FrameType } = Live

/** The topic a page broadcasts on by default (not authorized: the page's own). */
const pageTopic = (def: Page.Any): string => def.topic ?? `page:${def.path}`

type EventFrame = Extract<Live.ClientFrame, { type: typeof FrameType.EVENT }>
type PageStep = Effect.Effect<unknown, Page.PageError, any>

/** A page that failed with a defect: logged, and answered as a `PageError`. */
const internalError = (what: string) => (cause: unknown) =>
  Effect.as(Effect.logError(what, cause), Either.left(new Page.PageError({ message: "internal error" })))

/** A mounted live page; it is also the hub sink of the scopes and topics it subscribed. */
export class PageSession implements Sink {
  state: unknown = undefined
  readonly rendered = new Map<string, string>()
  ctx: Page.PageContext
  commands: Array<Page.Command> = []
  redirect: { readonly to: string; readonly replace: boolean } | undefined = undefined
  title: string | undefined = undefined
  readonly topics = new Set<string>()
  /** The page's own client id for `pushMutation`: random, in no frame, so nobody else can push under it. */
  readonly clientId = `page.${crypto.randomUUID()}`
  /** The last mutation id the server has recorded for `clientId`. */
  mutationId = 0
  /** One `pushMutation` at a time (made with the first). */
  pushLock: Effect.Semaphore | undefined = undefined

  constructor(readonly session: SessionProtocol, readonly def: Page.Any, params: Readonly<Record<string, unknown>>) {
    this.ctx = this.context(params)
  }

  /**
   * Mount `def` for `url`: subscribe its own topic, run `mount`, render every
   * region. A failed mount leaves nothing registered.
   */
  static mount(
    session: SessionProtocol,
    def: Page.Any,
    url: string,
    params: Readonly<Record<string, unknown>>
  ): Effect.Effect<Either.Either<{ readonly page: PageSession; readonly regions: ReadonlyArray<{ id: string; html: string }> }, string>> {
    const query = Object.fromEntries(new URL(url, "http://x").searchParams)
    const page = new PageSession(session, def, { ...query, ...params })
    // the session holds the page while it mounts, so the session's finalizer releases what it registers
    session.page = page
    return Effect.gen(function*() {
      yield* page.subscribe(pageTopic(def))
      const state = yield* session.env.pages.provide(def.mount(page.ctx)).pipe(
        Effect.flatMap((s) => PageRender.checkState(def, s)),
        Effect.either,
        Effect.catchAllCause(internalError("live page mount failed"))
      )
      if (Either.isLeft(state)) {
        session.page = undefined
        yield* page.release()
        return Either.left(state.left.message)
      }
      page.state = state.right
      page.title = def.title?.(page.state)
      const regions = Object.entries(def.render(page.state)).map(([rid, region]) => {
        const markup = PageRender.regionHtml(region).value
        page.rendered.set(rid, markup)
        return { id: rid, html: markup }
      })
      return Either.right({ page, regions })
    })
  }

  // -- Sink: the page's pokes and broadcasts are inputs of the session's stream ----------------
  get id(): string {
    return this.session.id
  }
  poke(scope: string, cursor: number): void {
    this.offer({ _tag: "Poke", scope, cursor })
  }
  send(_frame: string): void {}
  broadcast(topic: string, event: string, payload: unknown, from: string): void {
    this.offer({ _tag: "Broadcast", topic, event, payload, from })
  }
  offer(info: Page.Info): void {
    if (!this.session.closed) this.session.feed.offer({ _tag: "PageInfo", info })
  }

  /** The scopes to authorize again on re-authorization (its own topic is not authorized). */
  authorizedTopics(): ReadonlyArray<string> {
    const own = pageTopic(this.def)
    return [...this.topics].filter((topic) => topic !== own)
  }

  subscribe(scope: string): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (this.topics.has(scope)) return Effect.void
      this.topics.add(scope)
      return this.session.env.hub.add(scope, this)
    })
  }

  release(): Effect.Effect<void> {
    return Effect.forEach(this.topics, (topic) => this.session.env.hub.remove(topic, this), { discard: true })
  }

  // -- steps --------------------------------------------------------------------------------
  /** EVENT -> REPLY ok -> PATCH; a failed handler answers REPLY error and keeps the session. */
  event(frame: EventFrame): Effect.Effect<void> {
    const session = this.session
    const event: Page.PageEvent = { name: frame.payload.name, values: frame.payload.values ?? {} }
    return Effect.map(
      this.run(this.def.handle(event, this.state, this.ctx), () => session.reply(frame.ref, { status: "ok" })),
      (result) => Either.isLeft(result) ? session.replyError(frame.ref, "handler_error", result.left) : undefined
    )
  }

  /** A message for the page's `info`; a failure is an ERROR frame (recoverable). */
  info(info: Page.Info): Effect.Effect<void> {
    if (this.def.info === undefined) return Effect.void
    return Effect.map(this.run(this.def.info(info, this.state, this.ctx)), (result) => {
      if (Either.isLeft(result)) {
        this.session.emit({ type: FrameType.ERROR, payload: { code: "handler_error", message: result.left, recoverable: true } })
      }
    })
  }

  /** Run a page step; on success keep the new state and send what changed (PATCH, COMMAND, REDIRECT). */
  run(step: PageStep, before?: () => void): Effect.Effect<Either.Either<void, string>> {
    return this.session.env.pages.provide(step as Effect.Effect<unknown, Page.PageError>).pipe(
      Effect.flatMap((next) => PageRender.checkState(this.def, next)),
      Effect.either,
      Effect.catchAllCause(internalError("live page handler failed")),
      Effect.map((result): Either.Either<void, string> => {
        if (Either.isLeft(result)) return Either.left(result.left.message)
        this.state = result.right
        before?.()
        this.render()
        return Either.right(undefined)
      })
    )
  }

  render(): void {
    const session = this.session
    const regions = PageRender.diff(this.rendered, this.def.render(this.state))
    const title = this.def.title?.(this.state)
    const titleChanged = title !== undefined && title !== this.title
    this.title = title
    if (regions.length > 0 || titleChanged) {
      session.emit({ type: FrameType.PATCH, payload: { regions, ...(titleChanged && title !== undefined ? { title } : {}) } })
    }
    if (this.commands.length > 0) {
      const commands = this.commands
      this.commands = []
      session.emit({ type: FrameType.COMMAND, payload: { commands } })
    }
    if (this.redirect !== undefined) {
      const { replace, to } = this.redirect
      this.redirect = undefined
      session.emit({ type: FrameType.REDIRECT, payload: { to, replace } })
    }
  }

  // -- the page's context -------------------------------------------------------------------------
  /**
   * `ctx.pushMutation`: one at a time, under the page's own client id, and the
   * page's mutation id moves on only when the server has recorded the mutation
   * (a 503 or a refusal leaves it, so the next push is not `out_of_order`). An
   * `out_of_order` (the server lost the page's ids) renumbers from `expected`,
   * once.
   */
  push(mutation: Parameters<Page.PageContext["pushMutation"]>[0]): Effect.Effect<MutationResult, ProtocolError> {
    const { engine } = this.session.env
    const attempt = (renumber: boolean): Effect.Effect<MutationResult, ProtocolError> =>
      Effect.suspend(() => {
        const id = this.mutationId + 1
        return Effect.flatMap(
          engine.push({ client_id: this.clientId, mutations: [{ ...mutation, id }] }, { token: this.session.token, headers: {} }),
          (response) => {
            const result = response.results[0]
            if (result.ok || result.error?.code !== "out_of_order") {
              this.mutationId = id
              return Effect.succeed(result)
            }
            const expected = result.error.expected
            if (!renumber || expected === undefined) return Effect.succeed(result)
            this.mutationId = expected - 1
            return attempt(false)
          }
        )
      })
    const lock = this.pushLock ??= Effect.unsafeMakeSemaphore(1)
    return lock.withPermits(1)(attempt(true))
  }

  context(params: Readonly<Record<string, unknown>>): Page.PageContext {
    const session = this.session
    const { hub, log } = session.env
    return {
      sessionId: session.id,
      params,
      pushMutation: (mutation) => this.push(mutation),
      broadcast: (event, payload, topic = pageTopic(this.def)) =>
        Effect.flatMap(castGrant(session, topic), (key) =>
          key === false
            ? Effect.logWarning("live page broadcast refused: the token may not broadcast on this topic", { topic })
            : hub.broadcast(topic, event, payload, key, session.id)),
      subscribe: (scope) =>
        session.authorize("subscribe", scope).pipe(
          Effect.mapError(Authorizer.toProtocolError),
          Effect.zipRight(this.subscribe(scope)),
          Effect.zipRight(log.head(scope).pipe(Effect.mapError(StorageErrors.toProtocolError)))
        ),
      sendAfter: (message, delay) =>
        Effect.sleep(delay).pipe(
          Effect.zipRight(Effect.sync(() => this.offer({ _tag: "Message", message }))),
          Effect.forkIn(session.scope),
          Effect.asVoid
        ),
      command: (...commands) =>
        Effect.sync(() => {
          this.commands.push(...commands)
        }),
      redirect: (to, replace = false) =>
        Effect.sync(() => {
          this.redirect = { to, replace }
        })
    }
  }
}
