/**
 * The listener registry of the plain (non-Effect) client APIs: `on` / `off`
 * per event name, and `emit` that calls every listener of a name, so a
 * listener that throws never stops the others (its error goes to `onError`).
 *
 * @since 0.1.0
 */
export class Listeners<Events> {
  private readonly byName = new Map<keyof Events, Set<(event: never) => void>>()

  /** Add a listener; returns a function that removes it. */
  on<K extends keyof Events>(name: K, listener: (event: Events[K]) => void): () => void {
    let set = this.byName.get(name)
    if (set === undefined) {
      set = new Set()
      this.byName.set(name, set)
    }
    set.add(listener as (event: never) => void)
    return () => this.off(name, listener)
  }

  off<K extends keyof Events>(name: K, listener: (event: Events[K]) => void): void {
    this.byName.get(name)?.delete(listener as (event: never) => void)
  }

  emit<K extends keyof Events>(name: K, event: Events[K], onError: (error: unknown) => void): void {
    for (const listener of this.byName.get(name) ?? []) {
      try {
        ;(listener as (event: Events[K]) => void)(event)
      } catch (error) {
        onError(error)
      }
    }
  }
}
