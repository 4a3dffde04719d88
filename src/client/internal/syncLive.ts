/**
 * The live wiring of a sync client (when a `LiveClient` is in context): a
 * poke for a tracked scope whose cursor is ahead of the local one asks for a
 * pull; the heads a JOIN or SUBSCRIBE reply carries ask for a pull of every
 * scope whose head differs; the socket coming back (`Online`) cuts both
 * workers' backoff short and wakes the push; tracked scopes are subscribed.
 * Live is an optimisation: the failsafe pull covers anything it misses.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as FiberSet from "effect/FiberSet"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { LiveClient, LiveEvent } from "../LiveClient.js"
import { type SyncState, wake } from "./syncState.js"

/** The live side, as `syncClient` uses it. */
export interface Live {
  /** Subscribe scopes on the live socket (in the background; a failure is logged, the failsafe pull covers it). */
  readonly subscribe: (scopes: ReadonlyArray<string>) => Effect.Effect<void>
  /** Follow the live client's events and status, and subscribe the tracked scopes. */
  readonly start: Effect.Effect<void, never, Scope.Scope>
}

/** The live wiring of the client whose state is `s`; does nothing without a `LiveClient`. */
export const make = (s: SyncState): Live => {
  const { coordination } = s

  const onHeads = (cursors: Readonly<Record<string, number>>) =>
    Effect.forEach(Object.entries(cursors), ([scope, head]) =>
      coordination.tracked.has(scope) && head !== (s.current().scopes.get(scope)?.cursor ?? 0) ? s.requestPull(scope) : Effect.void, {
      discard: true
    })

  const onEvent = (event: LiveEvent): Effect.Effect<void> => {
    switch (event._tag) {
      case "Online":
        return Effect.all([
          onHeads(event.cursors),
          wake(s.onlinePush),
          wake(s.onlinePull),
          wake(s.pushWake),
          s.setStatus((st) => ({ ...st, online: true }))
        ], { discard: true })
      case "Subscribed":
        return onHeads(event.cursors)
      case "Poke":
        return coordination.tracked.has(event.scope) && event.cursor > (s.current().scopes.get(event.scope)?.cursor ?? 0)
          ? s.requestPull(event.scope)
          : Effect.void
      default:
        return Effect.void
    }
  }

  const subscribeWith = (client: LiveClient["Type"], scopes: ReadonlyArray<string>) =>
    FiberSet.run(s.fibers, client.subscribe(scopes).pipe(
      Effect.flatMap(onHeads),
      Effect.catchAll((e) => Effect.logWarning("live subscribe failed", e.message))
    )).pipe(Effect.asVoid)

  const startWith = (client: LiveClient["Type"]) =>
    Effect.gen(function*() {
      const events = yield* client.subscribeEvents
      yield* FiberSet.run(s.fibers, Effect.forever(Effect.flatMap(Queue.take(events), onEvent)))
      yield* FiberSet.run(s.fibers, client.statusChanges.pipe(Stream.runForEach((live) => s.setStatus((st) => ({ ...st, live })))))
      if (coordination.tracked.size > 0) yield* subscribeWith(client, [...coordination.tracked])
    })

  return {
    subscribe: (scopes) => Option.match(s.live, { onNone: () => Effect.void, onSome: (client) => subscribeWith(client, scopes) }),
    start: Option.match(s.live, { onNone: () => Effect.void, onSome: startWith })
  }
}
