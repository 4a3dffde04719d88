/**
 * Postgres, 4 server processes, one hot scope: acknowledged mutations/s and
 * push latency with 32 pushes in flight, then a check that the scope's log is
 * gap-free and holds every acknowledged mutation exactly once — against this
 * code at an earlier revision, measured in the same run.
 *
 * A round: a fresh database on the local Postgres server (127.0.0.1:5432 or
 * MIZU_TEST_PG_HOST / MIZU_TEST_PG_PORT, trust auth, user `postgres` or
 * `root`, created from the `test` database as `mizu_bench_<pid>_<ms>_<round>`
 * and dropped after the round); 4 processes of `servers/mizu.ts` on it
 * (`Server.layer`, SQL storage on Postgres, memory `LivePubSub` — pokes are
 * not measured — `tracing: false`), started together (their migrations are
 * advisory-locked). 32 pushers in this process, 8 per server process, each
 * its own client_id numbering 1, 2, 3 …, each push one `todo/create` with a
 * todo id of our own (`<client>-<id>`), all in the scope `hot`, one push at a
 * time per pusher. A warm-up, then a fixed window (15 s; `--quick` 5 s).
 *
 * A push answered with anything but 200, or lost on the network (or over
 * 30 s), is sent again as it was (same client_id and id: exactly once makes
 * that safe) after a short backoff, up to 20 attempts; counted as a retry.
 * A push is acknowledged when a 200 answers it with `ok: true` (a
 * `duplicate: true` answer to a resend counts: the first attempt was applied).
 * A pusher stops after a push it could not get acknowledged.
 *
 * Figures, over the window: acknowledged mutations/s in total (acks received
 * in the window / its length), push latency from the first send to the
 * acknowledgement (retries included) of the pushes sent in the window: mean,
 * p50, p99; retries and errors by kind; CPU of the server processes per
 * acknowledged mutation (the Postgres server's own CPU is not counted).
 *
 * Then, with every pusher stopped, the check (a round that fails it makes the
 * benchmark exit 1): the whole scope pulled from process 0 (pages of 1,000)
 * has cursors exactly 1..N; every acknowledged mutation's todo appears exactly
 * once, at the cursor its acknowledgement gave (a non-duplicate result's
 * `cursor` is the scope's head after that mutation, PROTOCOL.md); no todo
 * appears that was not sent, none more than once, none rejected; every process
 * sees the same head N; each client's `last_mutation_id` (pulled from its
 * own process) is at least its last acknowledged id and at most its last sent.
 *
 * Baseline: the same rounds with the code at `--rev=<commit>` (default
 * cd4aa4f, the tree before group commit), a copy made with `lib/patched.ts`
 * into which the current `servers/mizu.ts` is copied (the revision's own has
 * no `databaseUrl`). Rounds go old, new, new, old, … (`--rounds=N` per side,
 * default 2) so drift on the shared machine hits both alike; each side's
 * figure is the median of its rounds, and new / old is printed. `--no-rev`
 * runs the new code only. `--duration=<s>` sets the window.
 *
 * Usage: npm run bench -- pg-hot-scope [--quick] [--rev=<commit>] [--rounds=N] [--duration=<s>] [--no-rev]
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqlClient from "@effect/sql/SqlClient"
import type * as SqlError from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { execFileSync } from "node:child_process"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import * as Child from "./lib/child.js"
import * as Load from "./lib/load.js"
import * as Patched from "./lib/patched.js"
import { benchDir, printTable, repoDir, writeResult } from "./lib/results.js"
import { fmt, median, ratio, round, summarize, type Summary } from "./lib/stats.js"

const quick = process.argv.includes("--quick")
const argValue = (name: string): string | undefined =>
  process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3)
const positive = (name: string, fallback: number): number => {
  const raw = argValue(name)
  const n = raw === undefined ? fallback : Number(raw)
  if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number, got ${raw}`)
  return n
}

const config = {
  processes: 4,
  pushersPerProcess: 8,
  warmupMs: quick ? 1_000 : 2_000,
  windowMs: positive("duration", quick ? 5 : 15) * 1000,
  roundsPerSide: Math.floor(positive("rounds", 2)),
  scope: "hot",
  pageLimit: 1_000,
  maxAttempts: 20,
  retryBackoffMs: [5, 50] as const,
  requestTimeoutMs: 30_000,
  tracing: false
}
const pushers = config.processes * config.pushersPerProcess
const noRev = process.argv.includes("--no-rev")
const rev = noRev ? undefined : argValue("rev") ?? "cd4aa4f"

const globalTimeoutMs = 5.5 * 60_000

// --- Postgres: the admin connection, fresh databases -------------------------------------

const pgHost = process.env.MIZU_TEST_PG_HOST ?? "127.0.0.1"
const pgPort = Number(process.env.MIZU_TEST_PG_PORT ?? 5432)
const adminDatabase = "test"
const urlFor = (user: string, database: string) =>
  `postgres://${encodeURIComponent(user)}@${pgHost}:${pgPort}/${encodeURIComponent(database)}`

/** Run statements on the admin database as `user` (a pool for the call, closed after it). */
const admin = <A>(user: string, f: (sql: SqlClient.SqlClient) => Effect.Effect<A, SqlError.SqlError>): Promise<A> =>
  Effect.runPromise(
    Effect.flatMap(SqlClient.SqlClient, f).pipe(
      Effect.provide(PgClient.layer({ url: Redacted.make(urlFor(user, adminDatabase)), connectTimeout: "10 seconds", applicationName: "mizu-bench-admin" }))
    )
  )

const findUser = async (): Promise<string> => {
  const reasons: Array<string> = []
  for (const user of ["postgres", "root"]) {
    try {
      await admin(user, (sql) => sql`SELECT 1`)
      return user
    } catch (e) {
      reasons.push(`${user}: ${e instanceof Error ? e.message : String(e)}`)
    }
  }
  throw new Error(`no Postgres server at ${pgHost}:${pgPort} (database "${adminDatabase}"): ${reasons.join("; ")}`)
}

/** Databases of killed runs: `mizu_bench_<pid>_<base36 ms>_<n>`, over an hour old, nobody connected. */
const dropStale = (user: string) =>
  admin(user, (sql) =>
    Effect.gen(function*() {
      const rows = yield* sql<{ readonly datname: string }>`SELECT datname FROM pg_database d
        WHERE datname LIKE 'mizu_bench_%'
        AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)`
      const stale = rows.map((r) => r.datname).filter((name) => {
        const created = parseInt(name.split("_")[3] ?? "", 36)
        return Number.isFinite(created) && Date.now() - created > 60 * 60_000
      })
      for (const name of stale) yield* Effect.ignore(sql`DROP DATABASE IF EXISTS ${sql(name)} WITH (FORCE)`)
      return stale.length
    })).catch(() => 0)

const live = new Set<string>()
const createDatabase = async (user: string, n: number): Promise<string> => {
  const name = `mizu_bench_${process.pid}_${Date.now().toString(36)}_${n}`
  await admin(user, (sql) => sql`CREATE DATABASE ${sql(name)}`)
  live.add(name)
  return name
}
const dropDatabase = async (user: string, name: string): Promise<void> => {
  await admin(user, (sql) => sql`DROP DATABASE IF EXISTS ${sql(name)} WITH (FORCE)`)
  live.delete(name)
}

// --- HTTP -------------------------------------------------------------------------------

/** Keep-alive client for one server process; a request over `requestTimeoutMs` fails. */
const httpClient = (port: number, maxSockets: number) => Load.client(port, maxSockets, config.requestTimeoutMs)
type HttpClient = ReturnType<typeof httpClient>

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

// --- the load ---------------------------------------------------------------------------

interface MutationResult {
  readonly ok: boolean
  readonly cursor: number
  readonly duplicate?: boolean
  readonly error?: { readonly code: string; readonly message: string }
}

type Outcome = "acked" | "rejected" | "unacked"

interface Push {
  readonly client: string
  readonly seq: number
  readonly todoId: string
  readonly outcome: Outcome
  /** The cursor of a non-duplicate acknowledgement (the scope's head after this mutation). */
  readonly cursor: number | undefined
  readonly duplicate: boolean
  readonly attempts: number
  readonly sentAt: number
  readonly doneAt: number
  readonly error: string | undefined
}

interface Load {
  readonly pushes: ReadonlyArray<Push>
  readonly windowStart: number
  readonly windowEnd: number
  /** failed attempts by kind (HTTP status or network), each followed by a resend unless it was the last */
  readonly failedAttempts: Record<string, number>
  readonly firstFailure: string | undefined
  readonly retries: number
  readonly stoppedPushers: number
  readonly cpuMs: number | undefined
}

const runLoad = async (servers: ReadonlyArray<Child.Child>, clients: ReadonlyArray<HttpClient>): Promise<Load> => {
  const pushes: Array<Push> = []
  const failedAttempts: Record<string, number> = {}
  let firstFailure: string | undefined
  let retries = 0
  let stoppedPushers = 0
  const fail = (kind: string, detail: string) => {
    failedAttempts[kind] = (failedAttempts[kind] ?? 0) + 1
    firstFailure ??= `${kind}: ${detail}`
  }
  const start = performance.now()
  const windowStart = start + config.warmupMs
  const windowEnd = windowStart + config.windowMs
  const cpuTotal = () => Promise.all(servers.map((s) => s.call<{ totalMs: number }>("cpu"))).then((xs) => xs.reduce((a, x) => a + x.totalMs, 0))
  const cpuAtStart = sleep(config.warmupMs).then(cpuTotal).catch(() => undefined)
  const cpuAtEnd = sleep(config.warmupMs + config.windowMs).then(cpuTotal).catch(() => undefined)

  const pusher = async (w: number) => {
    const client = clients[w % config.processes]
    const clientId = `c${w}`
    for (let seq = 1; performance.now() < windowEnd; seq++) {
      const todoId = `${clientId}-${seq}`
      const body = JSON.stringify({
        client_id: clientId,
        mutations: [{ id: seq, name: "todo/create", scope: config.scope, args: { id: todoId, title: `buy milk ${seq}` } }]
      })
      const sentAt = performance.now()
      let attempts = 0
      let result: MutationResult | undefined
      let error: string | undefined
      while (result === undefined) {
        attempts++
        try {
          const response = await client.post("/_sync/push", body)
          if (response.status === 200) {
            const results = (JSON.parse(response.body) as { results: ReadonlyArray<MutationResult> }).results
            const first = results[0]
            if (results.length !== 1 || first === undefined) {
              fail("bad 200", response.body.slice(0, 200))
              error = `bad 200: ${response.body.slice(0, 200)}`
              break
            }
            result = first
            break
          }
          fail(`HTTP ${response.status}`, response.body.slice(0, 200))
          if (response.status < 500) {
            error = `HTTP ${response.status}: ${response.body.slice(0, 200)}`
            break
          }
        } catch (e) {
          fail("network", e instanceof Error ? e.message : String(e))
        }
        if (attempts >= config.maxAttempts) {
          error = `no acknowledgement after ${attempts} attempts`
          break
        }
        retries++
        const [lo, hi] = config.retryBackoffMs
        await sleep(lo + Math.random() * (hi - lo))
      }
      const doneAt = performance.now()
      const outcome: Outcome = result === undefined ? "unacked" : result.ok ? "acked" : "rejected"
      if (result !== undefined && !result.ok) error = `${result.error?.code ?? "?"}: ${result.error?.message ?? ""}`
      pushes.push({
        client: clientId,
        seq,
        todoId,
        outcome,
        cursor: result?.ok === true && result.duplicate !== true ? result.cursor : undefined,
        duplicate: result?.duplicate === true,
        attempts,
        sentAt,
        doneAt,
        error
      })
      if (outcome !== "acked") {
        // A rejected create is a failure here (ids are unique); an unacknowledged push leaves the
        // client's numbering unknown. Either way this pusher stops; the check reports it.
        stoppedPushers++
        return
      }
    }
  }
  await Promise.all(Array.from({ length: pushers }, (_, w) => pusher(w)))
  const [c0, c1] = await Promise.all([cpuAtStart, cpuAtEnd])
  return {
    pushes,
    windowStart,
    windowEnd,
    failedAttempts,
    firstFailure,
    retries,
    stoppedPushers,
    cpuMs: c0 === undefined || c1 === undefined ? undefined : c1 - c0
  }
}

// --- the check --------------------------------------------------------------------------

interface Change {
  readonly cursor: number
  readonly scope: string
  readonly entity: string
  readonly id: string
  readonly op: string
}

interface Page {
  readonly changes: ReadonlyArray<Change>
  readonly cursor: number
  readonly has_more: boolean
  readonly last_mutation_id?: number
}

const pull = async (client: HttpClient, cursor: number, limit: number, clientId?: string): Promise<Page> => {
  const response = await client.post(
    "/_sync/pull",
    JSON.stringify({ scope: config.scope, cursor, limit, ...(clientId === undefined ? {} : { client_id: clientId }) })
  )
  if (response.status !== 200) throw new Error(`pull at ${cursor}: HTTP ${response.status}: ${response.body.slice(0, 200)}`)
  return JSON.parse(response.body) as Page
}

/** What the servers answer once every pusher has stopped. */
interface Observed {
  /** the whole scope pulled from process 0, page after page */
  readonly changes: ReadonlyArray<Change>
  /** problems with the pages themselves (a page's cursor, has_more on an empty page) */
  readonly pageProblems: ReadonlyArray<string>
  /** per process: what a pull at the head (the number of changes) answered */
  readonly atHead: ReadonlyArray<Page | string>
  /** per client: its `last_mutation_id`, pulled from its own process at the head */
  readonly lastIds: ReadonlyMap<string, number | undefined>
}

const observe = async (clients: ReadonlyArray<HttpClient>, pushes: ReadonlyArray<Push>): Promise<Observed> => {
  const changes: Array<Change> = []
  const pageProblems: Array<string> = []
  let cursor = 0
  for (;;) {
    const page = await pull(clients[0], cursor, config.pageLimit)
    changes.push(...page.changes)
    const last = page.changes.at(-1)
    if (page.cursor !== (last?.cursor ?? cursor)) pageProblems.push(`page after ${cursor}: cursor ${page.cursor}, last change at ${last?.cursor}`)
    if (!page.has_more) break
    if (last === undefined) {
      pageProblems.push(`page after ${cursor}: has_more with no changes`)
      break
    }
    cursor = last.cursor
  }
  const head = changes.length
  const atHead = await Promise.all(clients.map((client) => pull(client, head, 1).catch((e: unknown) => String(e))))
  const lastIds = new Map<string, number | undefined>()
  for (const clientId of new Set(pushes.map((p) => p.client))) {
    const page = await pull(clients[processOf(clientId)], head, 1, clientId).catch(() => undefined)
    lastIds.set(clientId, page?.last_mutation_id)
  }
  return { changes, pageProblems, atHead, lastIds }
}

const processOf = (clientId: string) => Number(clientId.slice(1)) % config.processes

interface Check {
  readonly ok: boolean
  readonly changes: number
  readonly acked: number
  readonly duplicateAcks: number
  readonly rejected: number
  readonly unacked: number
  readonly unackedApplied: number
  readonly problems: number
  /** the first problems found, at most 20 */
  readonly firstProblems: ReadonlyArray<string>
}

/**
 * The log against what the pushers saw: cursors exactly 1..N; each
 * acknowledged todo exactly once, at the cursor its acknowledgement gave;
 * nothing that was not sent, nothing twice, nothing rejected; every process at
 * the same head; each client's last id between its last answered and its last
 * sent push.
 */
const verify = (observed: Observed, pushes: ReadonlyArray<Push>): Check => {
  const problems: Array<string> = []
  let problemCount = 0
  const problem = (p: string) => {
    problemCount++
    if (problems.length < 20) problems.push(p)
  }
  for (const p of observed.pageProblems) problem(p)
  const { changes } = observed
  let gaps = 0
  for (const [i, c] of changes.entries()) {
    if (c.cursor !== i + 1 && gaps++ < 1000) problem(`change ${i + 1} of the pull has cursor ${c.cursor} (gap or repeat)`)
    if (c.scope !== config.scope || c.entity !== "todo" || c.op !== "create") problem(`unexpected change ${JSON.stringify(c)}`)
  }
  const at = new Map<string, Array<number>>()
  for (const c of changes) {
    const list = at.get(c.id)
    if (list === undefined) at.set(c.id, [c.cursor])
    else list.push(c.cursor)
  }
  const sent = new Map(pushes.map((p) => [p.todoId, p]))
  for (const [id, cursors] of at) {
    const p = sent.get(id)
    if (p === undefined) problem(`todo ${id} in the log was never sent (cursors ${cursors.join(", ")})`)
    else if (cursors.length > 1) problem(`todo ${id} (${p.outcome}) appears ${cursors.length} times, cursors ${cursors.join(", ")}`)
  }
  let unackedApplied = 0
  for (const p of pushes) {
    const cursors = at.get(p.todoId) ?? []
    if (p.outcome === "acked") {
      if (cursors.length === 0) problem(`acknowledged ${p.todoId} is not in the log`)
      else if (p.cursor !== undefined && cursors[0] !== p.cursor) {
        problem(`acknowledged ${p.todoId} with cursor ${p.cursor}, in the log at ${cursors[0]}`)
      }
    } else if (p.outcome === "rejected") {
      problem(`${p.todoId} rejected (${p.error}); in the log ${cursors.length} times`)
    } else if (cursors.length === 1) unackedApplied++
  }
  const head = changes.length
  for (const [k, page] of observed.atHead.entries()) {
    if (typeof page === "string") problem(`process ${k} at cursor ${head}: ${page}`)
    else if (page.changes.length > 0 || page.has_more) problem(`process ${k} has changes after cursor ${head}`)
  }
  const byClient = new Map<string, { lastAnswered: number; lastSent: number }>()
  for (const p of pushes) {
    const entry = byClient.get(p.client) ?? { lastAnswered: 0, lastSent: 0 }
    entry.lastSent = Math.max(entry.lastSent, p.seq)
    // a rejected id is consumed too
    if (p.outcome !== "unacked") entry.lastAnswered = Math.max(entry.lastAnswered, p.seq)
    byClient.set(p.client, entry)
  }
  for (const [clientId, e] of byClient) {
    const lmi = observed.lastIds.get(clientId)
    if (lmi === undefined || lmi < e.lastAnswered || lmi > e.lastSent) {
      problem(`${clientId}: last_mutation_id ${lmi}, last answered ${e.lastAnswered}, last sent ${e.lastSent}`)
    }
  }
  return {
    ok: problemCount === 0,
    changes: changes.length,
    acked: pushes.filter((p) => p.outcome === "acked").length,
    duplicateAcks: pushes.filter((p) => p.duplicate).length,
    rejected: pushes.filter((p) => p.outcome === "rejected").length,
    unacked: pushes.filter((p) => p.outcome === "unacked").length,
    unackedApplied,
    problems: problemCount,
    firstProblems: problems
  }
}

// --- rounds -----------------------------------------------------------------------------

type Side = "old" | "new"

interface Round {
  readonly side: Side
  readonly round: number
  readonly mutPerSec: number
  readonly latencyMs: Summary
  readonly attemptsPerPush: number
  readonly retries: number
  readonly failedAttempts: Record<string, number>
  readonly firstFailure: string | undefined
  readonly stoppedPushers: number
  readonly serverCpuMsPerMutation: number | undefined
  readonly startMs: number
  readonly check: Check
}

const runRound = async (user: string, side: Side, n: number, root: string | undefined): Promise<Round> => {
  const database = await createDatabase(user, n)
  const startAt = performance.now()
  const servers: Array<Child.Child> = []
  const clients: Array<HttpClient> = []
  try {
    const started = await Promise.allSettled(
      Array.from({ length: config.processes }, () =>
        // the current side from source when an older copy (which runs from source) is the baseline: the same loader on both
        Child.start("servers/mizu.ts", { databaseUrl: urlFor(user, database), tracing: config.tracing }, root !== undefined ? { root } : { source: rev !== undefined }))
    )
    for (const s of started) if (s.status === "fulfilled") servers.push(s.value)
    const failed = started.find((s): s is PromiseRejectedResult => s.status === "rejected")
    if (failed !== undefined) throw failed.reason
    const startMs = performance.now() - startAt
    for (const s of servers) clients.push(httpClient(s.ready["port"] as number, config.pushersPerProcess))
    const load = await runLoad(servers, clients)
    const result = verify(await observe(clients, load.pushes), load.pushes)
    const inWindow = load.pushes.filter((p) => p.outcome === "acked" && p.sentAt >= load.windowStart && p.sentAt < load.windowEnd)
    const ackedInWindow = load.pushes.filter((p) => p.outcome === "acked" && p.doneAt >= load.windowStart && p.doneAt < load.windowEnd).length
    return {
      side,
      round: n,
      mutPerSec: round((ackedInWindow / config.windowMs) * 1000, 1),
      latencyMs: summarize(inWindow.map((p) => p.doneAt - p.sentAt)),
      attemptsPerPush: round(load.pushes.reduce((a, p) => a + p.attempts, 0) / Math.max(1, load.pushes.length), 3),
      retries: load.retries,
      failedAttempts: load.failedAttempts,
      firstFailure: load.firstFailure,
      stoppedPushers: load.stoppedPushers,
      serverCpuMsPerMutation: load.cpuMs === undefined || ackedInWindow === 0 ? undefined : round(load.cpuMs / ackedInWindow, 3),
      startMs: round(startMs, 0),
      check: result
    }
  } finally {
    for (const c of clients) c.close()
    await Promise.all(servers.map((s) => s.stop()))
    await dropDatabase(user, database).catch((e: unknown) => console.error(`  could not drop ${database}: ${String(e)}`))
  }
}

// --- main -------------------------------------------------------------------------------

let currentUser: string | undefined
setTimeout(() => {
  console.error(`pg-hot-scope: global timeout (${globalTimeoutMs / 60_000} min), giving up`)
  const user = currentUser
  const drops = user === undefined ? [] : [...live].map((name) => dropDatabase(user, name).catch(() => undefined))
  void Promise.race([Promise.all(drops), sleep(5_000)]).then(() => process.exit(2))
}, globalTimeoutMs).unref()

const user = await findUser()
currentUser = user
const serverVersion = await admin(user, (sql) => sql<{ readonly server_version: string }>`SHOW server_version`)
  .then((rows) => rows[0]?.server_version ?? "unknown")
const stale = await dropStale(user)
if (stale > 0) console.log(`pg-hot-scope: dropped ${stale} leftover database(s) of killed runs`)

let oldTree: ReturnType<typeof Patched.prepare> | undefined
let revHash: string | undefined
if (rev !== undefined) {
  revHash = execFileSync("git", ["-C", repoDir, "rev-parse", "--short", `${rev}^{commit}`], { encoding: "utf8" }).trim()
  const tree = Patched.prepare([], rev)
  oldTree = tree
  process.on("exit", () => tree.remove())
  // The revision's servers/mizu.ts may predate `databaseUrl`: run the current one over its src/.
  NodeFs.copyFileSync(NodePath.join(benchDir, "servers", "mizu.ts"), NodePath.join(tree.benchDir, "servers", "mizu.ts"))
}

const label: Record<Side, string> = {
  old: `old (${revHash ?? "-"})`,
  new: "new (working tree)"
}
const order: Array<Side> = []
for (let i = 0; i < config.roundsPerSide; i++) {
  if (oldTree === undefined) order.push("new")
  else order.push(...(i % 2 === 0 ? (["old", "new"] as const) : (["new", "old"] as const)))
}

console.log(
  `pg-hot-scope: Postgres ${serverVersion} at ${pgHost}:${pgPort} as ${user}; ${config.processes} processes, ${pushers} pushers (${config.pushersPerProcess} per process), ` +
    `1 todo/create per push, scope "${config.scope}", ${fmt(config.warmupMs)} ms warm-up + ${fmt(config.windowMs)} ms per round; rounds: ${order.join(", ")}`
)

const rounds: Array<Round> = []
for (const [i, side] of order.entries()) {
  const r = await runRound(user, side, i + 1, side === "old" ? oldTree?.benchDir : undefined)
  rounds.push(r)
  const failures = Object.entries(r.failedAttempts).map(([k, v]) => `${k} ×${v}`).join(", ")
  console.log(
    `  round ${i + 1} ${label[side].padEnd(20)} ${fmt(r.mutPerSec, 1).padStart(8)} mut/s; latency mean ${r.latencyMs.mean} p50 ${r.latencyMs.p50} p99 ${r.latencyMs.p99} ms; ` +
      `retries ${r.retries}${failures === "" ? "" : ` (${failures}; first ${r.firstFailure})`}; server CPU ${r.serverCpuMsPerMutation ?? "?"} ms/mut; ` +
      `log ${fmt(r.check.changes)} changes: ${r.check.ok ? "gap-free, every ack exactly once" : `${r.check.problems} PROBLEMS`}`
  )
  for (const p of r.check.firstProblems) console.log(`    ${p}`)
}

// --- report -----------------------------------------------------------------------------

const sides = (["old", "new"] as const).filter((s) => rounds.some((r) => r.side === s))
const summary = Object.fromEntries(sides.map((side) => {
  const rs = rounds.filter((r) => r.side === side)
  return [side, {
    rounds: rs.length,
    mut_per_sec: round(median(rs.map((r) => r.mutPerSec)), 1),
    mut_per_sec_rounds: rs.map((r) => r.mutPerSec),
    latency_mean_ms: round(median(rs.map((r) => r.latencyMs.mean)), 2),
    latency_p50_ms: round(median(rs.map((r) => r.latencyMs.p50)), 2),
    latency_p99_ms: round(median(rs.map((r) => r.latencyMs.p99)), 2),
    retries: rs.reduce((a, r) => a + r.retries, 0),
    failed_attempts: rs.reduce((a, r) => a + Object.values(r.failedAttempts).reduce((x, y) => x + y, 0), 0),
    rejected: rs.reduce((a, r) => a + r.check.rejected, 0),
    unacked: rs.reduce((a, r) => a + r.check.unacked, 0),
    server_cpu_ms_per_mutation: rs.every((r) => r.serverCpuMsPerMutation !== undefined)
      ? round(median(rs.map((r) => r.serverCpuMsPerMutation ?? 0)), 3)
      : undefined,
    gap_free: rs.every((r) => r.check.ok)
  }]
})) as Partial<Record<Side, {
  mut_per_sec: number
  mut_per_sec_rounds: ReadonlyArray<number>
  latency_mean_ms: number
  latency_p50_ms: number
  latency_p99_ms: number
  retries: number
  failed_attempts: number
  rejected: number
  unacked: number
  server_cpu_ms_per_mutation: number | undefined
  gap_free: boolean
}>>

const table: Array<Array<string>> = [["code", "mut/s (median)", "rounds", "mean ms", "p50 ms", "p99 ms", "retries", "failed attempts", "server CPU ms/mut", "log checked"]]
for (const side of sides) {
  const s = summary[side]
  if (s === undefined) continue
  table.push([
    label[side],
    fmt(s.mut_per_sec, 1),
    s.mut_per_sec_rounds.map((x) => fmt(x, 0)).join(", "),
    String(s.latency_mean_ms),
    String(s.latency_p50_ms),
    String(s.latency_p99_ms),
    String(s.retries),
    String(s.failed_attempts),
    String(s.server_cpu_ms_per_mutation ?? "?"),
    s.gap_free ? "gap-free, exact" : "PROBLEMS"
  ])
}
console.log(`\nPostgres, ${config.processes} processes, one hot scope, ${pushers} in flight (acknowledged mutations; latency = first send → acknowledgement):`)
printTable(table)
const oldS = summary.old
const newS = summary.new
const ratios = oldS !== undefined && newS !== undefined
  ? {
    mut_per_sec: ratio(newS.mut_per_sec, oldS.mut_per_sec),
    latency_mean: ratio(newS.latency_mean_ms, oldS.latency_mean_ms),
    latency_p99: ratio(newS.latency_p99_ms, oldS.latency_p99_ms)
  }
  : undefined
if (ratios !== undefined && newS !== undefined) {
  console.log(
    `  new / old: mut/s ${ratios.mut_per_sec.toFixed(2)}x (goal >= 2x: ${ratios.mut_per_sec >= 2 ? "met" : "not met"}), ` +
      `mean latency ${ratios.latency_mean.toFixed(2)}x, p99 ${ratios.latency_p99.toFixed(2)}x; new gap-free: ${newS.gap_free ? "yes" : "NO"}`
  )
}

const allOk = rounds.every((r) => r.check.ok)
const file = writeResult("pg-hot-scope", {
  config: { ...config, pushers, rev: rev ?? null, rev_commit: revHash ?? null, order },
  postgres: { host: pgHost, port: pgPort, user, server_version: serverVersion },
  summary,
  ratio_new_over_old: ratios ?? null,
  all_rounds_checked_ok: allOk,
  rounds
})
console.log(`\nwrote ${NodePath.relative(process.cwd(), file)}`)
if (!allOk) console.error("pg-hot-scope: the log check FAILED in some round (see above)")
process.exit(allOk ? 0 : 1)
