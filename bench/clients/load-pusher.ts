/**
 * The push side of bench/load.ts, in a process of its own. Driven over IPC.
 *
 * Open loop: push k is due at `start + k / rate` and goes to scope
 * `k % scopes`, whether or not the server kept up; its t0 is that due time,
 * so a server that falls behind shows it in the poke latency (no coordinated
 * omission). Each scope has `lanes` writers (client ids), each with one push
 * in flight, mutation ids in order; a due push waits for a free lane of its
 * scope, and the wait counts in its latency.
 *
 * Ours: `POST /_sync/push` with one `todo/create` mutation; the response's
 * cursor says which cursor that push made. Baseline: `POST /poke {scope,
 * cursor}` with the next cursor of the scope.
 *
 * The schedule ends after `durationMs`: due pushes still waiting for a lane
 * then are counted as `notSent`, and the pushes in flight are waited for.
 *
 * Command `run {port, scopes, prefix, rate, durationMs, lanes, baseline,
 * heads}` → counts, response times, and `t0[scope][k]` for cursor
 * heads[scope]+1+k (hrtime ms, the clock of load-clients.ts).
 */
import * as Control from "../lib/control.js"
import * as Load from "../lib/load.js"
import { summarize } from "../lib/stats.js"

const now = () => Number(process.hrtime.bigint()) / 1e6

/** Mutation ids per client id, kept across runs (one server, several phases). */
const nextIds = new Map<string, number>()

const run = async (args: Record<string, unknown>) => {
  const port = args["port"] as number
  const scopes = args["scopes"] as number
  const prefix = args["prefix"] as string
  const rate = args["rate"] as number
  const durationMs = args["durationMs"] as number
  const lanes = args["lanes"] as number
  const baseline = args["baseline"] as boolean
  const heads = { ...(args["heads"] as Record<string, number>) }
  const base = { ...heads }
  const http = Load.client(port, scopes * lanes)
  const post = http.post

  const t0s: Record<string, Array<number | null>> = {}
  const response: Array<number> = []
  let errors = 0
  let firstError: string | undefined
  let done = 0
  let maxWaiting = 0
  let retries = 0

  const fail = (why: string) => {
    errors++
    firstError ??= why
  }

  const send = async (scope: string, lane: number, due: number) => {
    try {
      let body: string
      let expected: number | undefined
      if (baseline) {
        expected = ++heads[scope]
        body = JSON.stringify({ scope, cursor: expected })
      } else {
        const clientId = `${prefix}${scope}-w${lane}`
        const id = (nextIds.get(clientId) ?? 0) + 1
        nextIds.set(clientId, id)
        body = JSON.stringify({
          client_id: clientId,
          mutations: [{ id, name: "todo/create", scope, args: { id: `${clientId}-${id}`, title: `load ${id}` } }]
        })
      }
      // A keep-alive socket the server closed just as it was reused fails with ECONNRESET before
      // anything was read: send the same request again (same mutation id: exactly once).
      let res: { status: number; body: string } | undefined
      let attempt = 1
      for (; res === undefined; attempt++) {
        try {
          res = await post(baseline ? "/poke" : "/_sync/push", body)
        } catch (e) {
          if (attempt >= 3) throw e
          retries++
        }
      }
      response.push(now() - due)
      if (res.status !== 200) return fail(`HTTP ${res.status}: ${res.body.slice(0, 200)}`)
      const result = (JSON.parse(res.body) as { results: Array<{ ok: boolean; cursor?: number; duplicate?: boolean }> }).results[0]
      // a retry whose first attempt did commit answers duplicate: fine, but its cursor is unknown
      if (attempt > 2 && result?.ok === true && result.duplicate === true) return
      if (result === undefined || !result.ok || result.duplicate === true || result.cursor === undefined) {
        return fail(`push not committed: ${res.body.slice(0, 200)}`)
      }
      const k = result.cursor - (base[scope] ?? 0) - 1
      const list = (t0s[scope] ??= [])
      while (list.length <= k) list.push(null)
      list[k] = due
    } catch (e) {
      fail(String(e))
    } finally {
      done++
    }
  }

  // per scope: free lanes and the due times waiting for one
  const free: Array<Array<number>> = Array.from({ length: scopes }, () => Array.from({ length: lanes }, (_, l) => l))
  const waiting: Array<Array<number>> = Array.from({ length: scopes }, () => [])
  let sent = 0
  let stopped = false
  const dispatch = (s: number, lane: number, due: number) => {
    sent++
    void send(`${prefix}${s}`, lane, due).then(() => {
      const next = stopped ? undefined : waiting[s].shift()
      if (next === undefined) free[s].push(lane)
      else dispatch(s, lane, next)
    })
  }

  const start = now()
  let k = 0
  const total = Math.floor((rate * durationMs) / 1000)
  await new Promise<void>((resolve) => {
    const tick = () => {
      const t = now()
      for (; k < total && start + (k * 1000) / rate <= t; k++) {
        const s = k % scopes
        const due = start + (k * 1000) / rate
        const lane = free[s].pop()
        if (lane === undefined) waiting[s].push(due)
        else dispatch(s, lane, due)
      }
      let w = 0
      for (const q of waiting) w += q.length
      if (w > maxWaiting) maxWaiting = w
      if (k >= total) {
        clearInterval(timer)
        resolve()
      }
    }
    const timer = setInterval(tick, 2)
  })
  // The schedule ends with the duration: pushes still waiting for a lane then are not sent
  // (a server that fell behind sends fewer), the ones in flight are waited for.
  const scheduledMs = now() - start
  stopped = true
  let notSent = 0
  for (const q of waiting) {
    notSent += q.length
    q.length = 0
  }
  while (done < sent) await new Promise((r) => setTimeout(r, 10))
  const elapsedMs = now() - start
  http.close()
  return {
    scheduled: total,
    notSent,
    pushes: sent,
    errors,
    retries,
    firstError: firstError ?? null,
    scheduledMs,
    elapsedMs,
    achievedPerSec: (sent / elapsedMs) * 1000,
    maxWaiting,
    responseMs: summarize(response),
    t0: t0s,
    start
  }
}

Control.serve({ run, now: () => now() })
Control.ready({ pid: process.pid })
