/**
 * Presence replicated between processes: every process keeps the presence
 * of every topic it has sinks for.
 *
 * Invariants:
 * - A process re-announces its own entries (`renewal`) every renew
 *   interval; entries of other processes not renewed within the TTL expire
 *   (their process died), producing `leaves`. A process that starts
 *   listening to a topic asks the others to re-announce (`sync`).
 * - A process applies its own joins and leaves at once (and ignores their
 *   echo), so its count of a topic's entries includes those in flight.
 * - At most `maxEntries` entries per topic: when a topic is full a new entry
 *   is refused (`track` gives undefined; a join from another process is not
 *   applied until there is room, its renewals retry) and the existing
 *   entries keep their place.
 * - A `joins` frame goes out only for a new key or changed meta.
 *
 * @internal
 */
import type { Envelope } from "./hubEnvelope.js"
import * as Envelopes from "./hubEnvelope.js"
import * as Topic from "./hubTopic.js"

type Meta = Readonly<Record<string, unknown>>

/** @internal */
export class Presence {
  /** This process's own presence: topic -> key -> meta (also for topics not open here). */
  private readonly local = new Map<string, Map<string, Meta>>()

  constructor(readonly node: string, private readonly ttlMillis: number, private readonly maxEntries: number) {}

  /** The topics this process has entries on. */
  topics(): ReadonlyArray<string> {
    return [...this.local.keys()]
  }

  /** This process's entries on `topic` as a `renew` envelope; undefined when it has none. */
  renewal(topic: string): Envelope | undefined {
    const mine = this.local.get(topic)
    return mine === undefined || mine.size === 0
      ? undefined
      : { _tag: "renew", topic, node: this.node, entries: Object.fromEntries(mine) }
  }

  /**
   * Track `key` on `topic` (open here or not): the envelope to publish, or
   * undefined when the topic is full and `key` is not one of its entries.
   */
  track(topic: string, open: Topic.Topic | undefined, key: string, meta: Meta): Envelope | undefined {
    if (open !== undefined && !open.presence.has(key) && open.presence.size >= this.maxEntries) return undefined
    let mine = this.local.get(topic)
    if (mine === undefined) {
      mine = new Map()
      this.local.set(topic, mine)
    }
    mine.set(key, meta)
    if (open !== undefined) this.join(open, key, meta, this.node)
    return { _tag: "join", topic, key, meta, node: this.node }
  }

  /** End this process's entry: the envelope to publish, or undefined when there is none. */
  untrack(topic: string, open: Topic.Topic | undefined, key: string): Envelope | undefined {
    const mine = this.local.get(topic)
    if (mine === undefined || !mine.delete(key)) return undefined
    if (mine.size === 0) this.local.delete(topic)
    if (open !== undefined && open.presence.get(key)?.node === this.node) this.leave(open, key)
    return { _tag: "leave", topic, key, node: this.node }
  }

  /** A presence envelope from the transport (this process's own echo included). */
  receive(topic: Topic.Topic, e: Extract<Envelope, { readonly _tag: "join" | "leave" | "renew" }>): void {
    switch (e._tag) {
      // this process's own joins and leaves were applied when made
      case "join":
        if (e.node !== this.node) this.join(topic, e.key, e.meta, e.node)
        return
      case "leave":
        if (e.node !== this.node) this.leave(topic, e.key)
        return
      case "renew":
        if (e.node !== this.node) {
          for (const [key, meta] of Object.entries(e.entries)) this.join(topic, key, meta, e.node)
          return
        }
        this.rejoin(topic, Object.keys(e.entries))
    }
  }

  /** Leaves for the entries of other processes whose TTL ran out by `now`. */
  expire(topic: Topic.Topic, now: number): void {
    for (const [key, entry] of topic.presence) {
      if (entry.node !== this.node && entry.expiresAt < now) this.leave(topic, key)
    }
  }

  /** Its own renewal: entries still tracked here that found no room yet (or came before the topic opened). */
  private rejoin(topic: Topic.Topic, keys: ReadonlyArray<string>): void {
    const mine = this.local.get(topic.name)
    if (mine === undefined) return
    for (const key of keys) {
      const meta = mine.get(key)
      if (meta !== undefined && !topic.presence.has(key)) this.join(topic, key, meta, this.node)
    }
  }

  private join(topic: Topic.Topic, key: string, meta: Meta, from: string): void {
    const existing = topic.presence.get(key)
    // full: a new entry waits for room (its process renews it), the existing ones keep their place
    if (existing === undefined && topic.presence.size >= this.maxEntries) return
    topic.presence.set(key, { meta, node: from, expiresAt: Date.now() + this.ttlMillis })
    if (existing === undefined || JSON.stringify(existing.meta) !== JSON.stringify(meta)) {
      Topic.send(topic, Envelopes.presenceFrame(topic.name, "joins", { [key]: meta }))
    }
  }

  private leave(topic: Topic.Topic, key: string): void {
    const existing = topic.presence.get(key)
    if (existing === undefined) return
    topic.presence.delete(key)
    Topic.send(topic, Envelopes.presenceFrame(topic.name, "leaves", { [key]: existing.meta }))
  }
}
