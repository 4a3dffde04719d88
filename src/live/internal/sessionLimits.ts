/**
 * A live server's session limits as plain numbers, computed once per
 * `Session.Options` object and shared by all of its sessions (a session holds
 * a reference, not a copy).
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import type { Options } from "../Session.js"

/** The limits of `Session.Options`, in milliseconds, bytes and per-second rates. */
export interface Limits {
  readonly idleMillis: number
  readonly joinMillis: number
  readonly maxScopes: number
  readonly maxPending: number
  readonly highWater: number
  readonly frameRate: number
  readonly frameBurst: number
  readonly maxQueued: number
  readonly maxPresence: number
  readonly maxBroadcast: number
  readonly castRate: number
  readonly castBurst: number
  readonly reauthMillis: number
}

const cache = new WeakMap<Options, Limits>()

/** A rate as the token buckets use it: `Infinity` (no limit) as the largest finite number, so no bucket computes `0 × ∞`. */
const rate = (perSecond: number): number => Math.min(perSecond, Number.MAX_VALUE)

/** The limits of `options`, with the defaults `Session.Options` documents; one object per options object. */
export const limitsOf = (options: Options): Limits => {
  let l = cache.get(options)
  if (l === undefined) {
    l = {
      idleMillis: Duration.toMillis(options.idleTimeout ?? "60 seconds"),
      joinMillis: Duration.toMillis(options.joinTimeout ?? "10 seconds"),
      maxScopes: options.maxScopes ?? 100,
      maxPending: options.maxPendingBytes ?? 1024 * 1024,
      highWater: options.highWaterBytes ?? 64 * 1024,
      frameRate: rate(options.maxFramesPerSecond ?? 100),
      frameBurst: options.frameBurst ?? 200,
      maxQueued: options.maxQueuedFrames ?? 32,
      maxPresence: options.maxPresenceBytes ?? 1024,
      maxBroadcast: options.maxBroadcastBytes ?? 16 * 1024,
      castRate: rate(options.maxBroadcastsPerSecond ?? 20),
      castBurst: options.broadcastBurst ?? 40,
      reauthMillis: Duration.toMillis(options.reauthorizeInterval ?? "5 minutes")
    }
    cache.set(options, l)
  }
  return l
}

/** A tick that enforces a server's deadlines closely enough: a quarter of the shortest, between 10 ms and 1 s. */
export const tickMillis = (options: Options): number => {
  const l = limitsOf(options)
  return Math.max(10, Math.min(1000, Math.floor(Math.min(l.idleMillis, l.joinMillis, l.reauthMillis) / 4)))
}

/**
 * A token bucket's next level: `tokens` refilled at `perSecond` since `at`,
 * capped at `burst`. The bucket is two numbers on the session (no object).
 */
export const refill = (tokens: number, at: number, now: number, perSecond: number, burst: number): number =>
  Math.min(burst, tokens + ((now - at) * perSecond) / 1000)
