/**
 * The listener side of the plain (non-Effect) client APIs (`MizuSync`,
 * `MizuLive`): `on` / `off` per event name, and one dispatcher fiber per
 * client that hands every event of the Effect API to the listeners.
 *
 * Invariants:
 * - Listeners of a name are called in the order they were added, with the
 *   events in the order the client published them.
 * - A listener that throws never stops the others, nor the dispatcher: its
 *   error goes to `onError` (the clients route it to Effect's logger).
 *
 * @since 0.1.0
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"

/** The base of the Promise/event clients: a registry of listeners by event name. */
export class Emitter<Events> {
  private readonly byName = new Map<keyof Events, Set<(event: never) => void>>()

  /** Listen for an event; returns a function that stops listening. */
  on<K extends keyof Events>(name: K, listener: (event: Events[K]) => void): () => void {
    let set = this.byName.get(name)
    if (set === undefined) {
      set = new Set()
      this.byName.set(name, set)
    }
    set.add(listener as (event: never) => void)
    return () => this.off(name, listener)
  }

  /** Stop a listener added with `on` (nothing happens for one that was not). */
  off<K extends keyof Events>(name: K, listener: (event: Events[K]) => void): void {
    this.byName.get(name)?.delete(listener as (event: never) => void)
  }

  /** Call every listener of `name` with `event`; one that throws goes to `onError` and the others still run. */
  protected notify<K extends keyof Events>(name: K, event: Events[K], onError: (error: unknown) => void): void {
    for (const listener of this.byName.get(name) ?? []) {
      try {
        ;(listener as (event: Events[K]) => void)(event)
      } catch (error) {
        onError(error)
      }
    }
  }
}

/**
 * The dispatcher of a client: subscribes to its events first, then follows
 * its status; calls `onEvent` / `onStatus` for each until interrupted.
 */
export const dispatch = <E, S>(options: {
  readonly events: Effect.Effect<Queue.Dequeue<E>, never, Scope.Scope>
  readonly statusChanges: Stream.Stream<S>
  readonly onEvent: (event: E) => void
  readonly onStatus: (status: S) => void
}): Effect.Effect<never> =>
  Effect.scoped(Effect.gen(function*() {
    const events = yield* options.events
    yield* Effect.forkScoped(Stream.runForEach(options.statusChanges, (status) => Effect.sync(() => options.onStatus(status))))
    return yield* Effect.forever(Effect.map(Queue.take(events), options.onEvent))
  }))
