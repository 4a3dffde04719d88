/**
 * Authorization, end to end, with `TokenAuthorizer`: every endpoint and frame
 * that names a scope × a scope the caller may / may not use, over a real
 * server on a free port, and the leak test: a session that may read only A
 * receives nothing about B while others make pokes, broadcasts and presence
 * on B — over sync, live and live pages (the socket and the HTTP render).
 */
import { assert, describe, it, layer } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as fc from "fast-check"
import { Authorizer, LivePubSub, Protocol, SyncStorage, TokenAuthorizer } from "mizu-sync-live"
import { registry } from "../examples/todo/mutations.js"
import { TodoPage } from "../examples/todo/page.js"
import { realSleep } from "./suites/util.js"
import { BaseUrl, decodeAs, layerServer, post } from "./support/TestServer.js"
import { connect, type Frame, is, join, keyOf, request, T, type WsClient } from "./support/WsClient.js"

const tokens = {
  "token-a": ["user:a:*", "room:a"],
  "token-b": ["user:b:*", "room:b"],
  "token-admin": ["*"]
}

/** A's data scope and topic; B's. */
const A = "user:a:todos"
const RA = "room:a"
const B = "user:b:todos"
const RB = "room:b"
const ALLOWED_TO_A = new Set([A, RA])

const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

const req = (path: "push" | "pull" | "snapshot", body: unknown, headers: Record<string, string> = {}) =>
  Effect.flatMap(BaseUrl, (base) => post(`${base}/_sync/${path}`, JSON.stringify(body), { "content-type": "application/json", ...headers }))

const create = (scope: string, id: string) => ({ name: "todo/create", scope, args: { id, title: `title of ${id}` } })

/** A scope's snapshot as an admin sees it. */
const snapshot = (scope: string) =>
  Effect.map(req("snapshot", { scope }, bearer("token-admin")), (r) => decodeAs(Protocol.SnapshotResponse, r.json))

const errorCode = (r: { readonly status: number; readonly json: unknown }) =>
  r.status === 200 ? "ok" : decodeAs(Protocol.ErrorBody, r.json).error.code

/** Every scope a frame names: POKE's scope, BROADCAST's and PRESENCE's topic. */
const scopesIn = (f: Frame): ReadonlyArray<string> =>
  f.type === T.POKE ? [f.payload.scope] : f.type === T.BROADCAST || f.type === T.PRESENCE ? [f.payload.topic] : []

/** Everything the socket was sent until now: a HEARTBEAT round trip. */
const settle = (c: WsClient, ping: string) =>
  Effect.zipRight(Effect.sync(() => c.send({ type: T.HEARTBEAT, payload: { ping } })), c.waitFor(is(T.HEARTBEAT, (f) => f.payload.pong === ping)))

const deps = Layer.mergeAll(SyncStorage.layerMemory, LivePubSub.layerMemory, TokenAuthorizer.layer({ tokens }))
const real = { excludeTestServices: true } as const

describe("TokenAuthorizer", () => {
  const ask = (token: string | undefined, scope: string, action: Authorizer.Action = "pull") =>
    Effect.flatMap(Authorizer.Authorizer, (a) => a.authorize({ action, scope, token, clientId: undefined, headers: {} })).pipe(
      Effect.map(() => "ok"),
      Effect.catchTag("Denied", (d) => Effect.succeed(d.reason))
    )

  it.effect("glob patterns match the whole scope; * is any run of characters", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<readonly [string, string, string]> = [
        ["ann", "user:ann:todos", "ok"],
        ["ann", "user:ann:a/b@c", "ok"],
        ["ann", "user:ann:", "ok"],
        ["ann", "user:anne:todos", "forbidden"],
        ["ann", "user:ann", "forbidden"],
        ["ann", "xuser:ann:todos", "forbidden"],
        ["ann", "team:1", "ok"],
        ["ann", "team:10", "forbidden"],
        ["ann", "team:1:x", "forbidden"],
        ["ann", "a.b", "ok"],
        ["ann", "aXb", "forbidden"], // "." is a dot, not "any character"
        ["ann", "doc:42:edit", "ok"],
        ["ann", "doc:42:", "forbidden"],
        ["root", "anything:at/all", "ok"],
        ["none", "user:ann:todos", "forbidden"]
      ]
      for (const [token, scope, expected] of cases) {
        for (const action of ["push", "pull", "snapshot", "subscribe"] as const) {
          assert.strictEqual(yield* ask(token, scope, action), expected, `${token} ${action} ${scope}`)
        }
      }
    }).pipe(Effect.provide(TokenAuthorizer.layer({
      tokens: { ann: ["user:ann:*", "team:1", "a.b", "doc:*:edit"], root: ["*"], none: [] }
    }))))

  /** The reference glob matcher: dynamic programming over (pattern prefix, scope prefix), obviously right and never used in src. */
  const reference = (pattern: string, scope: string): boolean => {
    // row[j]: does the pattern's prefix read so far match scope.slice(0, j)?
    let row = Array.from({ length: scope.length + 1 }, (_, j) => j === 0)
    for (const p of pattern) {
      const next = Array.from({ length: scope.length + 1 }, () => false)
      for (let j = 0; j <= scope.length; j++) {
        next[j] = p === "*" ? row[j] || (j > 0 && next[j - 1]) : j > 0 && row[j - 1] && scope[j - 1] === p
      }
      row = next
    }
    return row[scope.length]
  }

  it("matches agrees with a reference matcher on random patterns and scopes (fast-check)", () => {
    // a small alphabet, so that patterns and scopes overlap often enough to match
    const text = (max: number, chars: ReadonlyArray<string>) => fc.array(fc.constantFrom(...chars), { maxLength: max }).map((cs) => cs.join(""))
    fc.assert(
      fc.property(text(12, ["*", "a", "b", "/", ":"]), text(24, ["a", "b", "/", ":"]), (pattern, scope) =>
        TokenAuthorizer.matches(pattern)(scope) === reference(pattern, scope)),
      { seed: 20_261_214, numRuns: 20_000 }
    )
    // scopes built to match, so true answers are checked as often as false ones
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.boolean(), text(4, ["a", "b", "/"])), { maxLength: 6 }), text(4, ["a", "b", "/"]), (parts, filler) => {
        const pattern = parts.map(([star, lit]) => (star ? `*${lit}` : lit)).join("")
        const scope = parts.map(([star, lit]) => (star ? `${filler}${lit}` : lit)).join("")
        return TokenAuthorizer.matches(pattern)(scope) && reference(pattern, scope)
      }),
      { seed: 20_261_215, numRuns: 5_000 }
    )
  })

  it("a pattern with many stars against a long scope that almost matches takes no backtracking", () => {
    // The RegExp this matcher replaced took ~1.5 s for ONE such check (catastrophic backtracking);
    // 1,000 of them would take ~25 minutes and fail on the test timeout (60 s). No timing assertion:
    // the timeout is the bound.
    const slashes = "/".repeat(255)
    for (const pattern of ["*/*/*/*/x", "*/*/*/*/*/*/*/*/*/*/x", "*a*a*a*a*a*a*a*b"]) {
      const test = TokenAuthorizer.matches(pattern)
      const scope = pattern.includes("a") ? "a".repeat(255) : slashes
      for (let i = 0; i < 1000; i++) assert.isFalse(test(scope))
      assert.isTrue(test(`${scope.slice(1)}${pattern.includes("a") ? "b" : "x"}`))
    }
  })

  it.effect("no token, an empty one, an unknown one (also Object.prototype's names) are unauthorized", () =>
    Effect.gen(function*() {
      for (const token of [undefined, "", "nope", "constructor", "__proto__", "toString", "hasOwnProperty", "token-a "]) {
        assert.strictEqual(yield* ask(token, "user:a:todos"), "unauthorized", String(token))
      }
      assert.strictEqual(yield* ask("token-a", "user:a:todos"), "ok")
    }).pipe(Effect.provide(TokenAuthorizer.layer({ tokens: { ...tokens, "": ["*"] } }))))

  it.effect("layerResolve: a function from a token to its grant, per action", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* ask("viewer", "doc:1", "pull"), "ok")
      assert.strictEqual(yield* ask("viewer", "doc:1", "push"), "forbidden")
      assert.strictEqual(yield* ask("other", "doc:1", "pull"), "unauthorized")
    }).pipe(Effect.provide(TokenAuthorizer.layerResolve((token) =>
      Effect.succeed(token === "viewer" ? Option.some((_scope: string, action: Authorizer.Action) => action !== "push") : Option.none())
    ))))

  it.effect("layerConfig reads the table from AUTH_TOKENS; a bad value fails at start without echoing the secret", () =>
    Effect.gen(function*() {
      const withEnv = (value: string) => Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["AUTH_TOKENS", value]])))
      const good = yield* ask("t1", "user:x:1").pipe(Effect.provide(TokenAuthorizer.layerConfig()), withEnv(`{"t1": ["user:x:*"]}`))
      assert.strictEqual(good, "ok")
      const bad = yield* ask("t1", "user:x:1").pipe(Effect.provide(TokenAuthorizer.layerConfig()), withEnv(`{"s3cret-token": "user:x:*"}`), Effect.exit)
      assert.isTrue(Exit.isFailure(bad))
      assert.notInclude(String(Exit.isFailure(bad) ? bad.cause : ""), "s3cret-token")
      assert.include(String(Exit.isFailure(bad) ? bad.cause : ""), "AUTH_TOKENS")
    }))
})

describe("authorization through the server (TokenAuthorizer)", () => {
  layer(layerServer({ registry, pages: [TodoPage] }, deps), real)("matrix", (it) => {
    it.effect("push / pull / snapshot × caller × scope: 401 without credentials, 403 on another's scope, nothing applied", () =>
      Effect.gen(function*() {
        const callers: ReadonlyArray<readonly [string, Record<string, string>]> = [
          ["none", {}],
          ["basic", { authorization: "Basic dG9rZW4tYTo=" }],
          ["bearer without token", { authorization: "Bearer" }],
          ["unknown token", bearer("token-z")],
          ["token-a", bearer("token-a")],
          ["token-a, lower-case scheme", { authorization: "bearer token-a" }]
        ]
        const expected = (caller: string, scope: string) =>
          caller.startsWith("token-a") ? (scope === A ? "ok" : "forbidden") : "unauthorized"
        let n = 0
        const applied: Array<string> = []
        for (const [caller, headers] of callers) {
          for (const scope of [A, B]) {
            const want = expected(caller, scope)
            const what = `${caller} on ${scope}`
            const id = `m${++n}`
            const push = yield* req("push", { mutations: [create(scope, id)] }, headers)
            assert.strictEqual(errorCode(push), want, `push, ${what}`)
            if (want === "ok") applied.push(id)
            assert.strictEqual(push.status, want === "ok" ? 200 : Protocol.ErrorStatus[want], `push, ${what}`)
            const pull = yield* req("pull", { scope, cursor: 0 }, headers)
            assert.strictEqual(errorCode(pull), want, `pull, ${what}`)
            const snap = yield* req("snapshot", { scope }, headers)
            assert.strictEqual(errorCode(snap), want, `snapshot, ${what}`)
            if (want !== "ok") assert.notInclude(pull.text + snap.text, "title of", what)
          }
        }
        // a push naming an allowed and a forbidden scope is refused whole
        const mixed = yield* req("push", { mutations: [create(A, "mixed-a"), create(B, "mixed-b")] }, bearer("token-a"))
        assert.strictEqual(errorCode(mixed), "forbidden")
        // so is a mutation without a scope (it goes to `_default`)
        const noScope = yield* req("push", { mutations: [{ name: "todo/create", args: { id: "d", title: "d" } }] }, bearer("token-a"))
        assert.strictEqual(errorCode(noScope), "forbidden")
        // only token-a's pushes to A were applied; B is untouched
        assert.strictEqual(applied.length, 2)
        assert.deepStrictEqual(Object.keys((yield* snapshot(A)).data["todo"] ?? {}).sort(), applied.sort())
        assert.deepStrictEqual(yield* snapshot(B), { data: {}, cursor: 0, checksum: 0 })
        assert.strictEqual((yield* snapshot(Protocol.DEFAULT_SCOPE)).cursor, 0)
      }))

    it.effect("JOIN with scopes and SUBSCRIBE × token × scopes: REPLY forbidden unless every scope is allowed; a refused request subscribes nothing", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const witness = yield* connect(base)
        yield* join(witness, { token: "token-admin", scopes: [A, B] })
        const refused: Array<WsClient> = []
        for (const token of [undefined, "token-z", "token-a"]) {
          for (const scopes of [[A], [B], [A, B]]) {
            const allowed = token === "token-a" && !scopes.includes(B)
            const what = `${token ?? "no token"} on ${scopes.join(",")}`
            const viaJoin = yield* connect(base)
            const joined = yield* join(viaJoin, { ...(token === undefined ? {} : { token }), scopes })
            assert.strictEqual(joined.status, allowed ? "ok" : "error", `JOIN, ${what}`)
            if (!allowed) {
              assert.strictEqual(joined.reason, "forbidden", `JOIN, ${what}`)
              assert.isUndefined(joined.cursors, `JOIN, ${what}`)
              refused.push(viaJoin)
            }
            const viaSubscribe = yield* connect(base)
            assert.strictEqual((yield* join(viaSubscribe, token === undefined ? {} : { token })).status, "ok")
            const sub = yield* request(viaSubscribe, { type: T.SUBSCRIBE, payload: { scopes } })
            assert.strictEqual(sub.status, allowed ? "ok" : "error", `SUBSCRIBE, ${what}`)
            if (!allowed) {
              assert.strictEqual(sub.reason, "forbidden", `SUBSCRIBE, ${what}`)
              assert.isUndefined(sub.cursors, `SUBSCRIBE, ${what}`)
              refused.push(viaSubscribe)
            }
          }
        }
        // commits in both scopes poke the witness, and none of the refused sessions
        yield* req("push", { mutations: [create(A, "after-a"), create(B, "after-b")] }, bearer("token-admin"))
        yield* witness.waitFor(is(T.POKE, (f) => f.payload.scope === A))
        yield* witness.waitFor(is(T.POKE, (f) => f.payload.scope === B))
        for (const [i, c] of refused.entries()) {
          if (c.frames.some(is(T.REPLY, (f) => f.payload.session_id !== undefined))) yield* settle(c, `r${i}`)
        }
        yield* realSleep(50)
        for (const c of refused) assert.deepStrictEqual(c.frames.filter((f) => f.type === T.POKE), [])
      }).pipe(Effect.scoped))

    it.effect("EVENT (broadcast) and presence need a subscription: on another's topic they are refused and reach no one", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const a = yield* connect(base)
        const a2 = yield* connect(base)
        const b = yield* connect(base)
        const ja = yield* join(a, { token: "token-a", scopes: [RA] })
        yield* join(a2, { token: "token-a", scopes: [RA] })
        yield* join(b, { token: "token-b", scopes: [RB] })
        let handle = "" // a's opaque handle on RA (its BROADCAST `from` and PRESENCE key there)
        for (const topic of [RA, RB]) {
          const allowed = topic === RA
          const cast = yield* request(a, { type: T.EVENT, topic, payload: { name: "typing", values: { on: true } } })
          if (allowed) handle = keyOf(cast)
          const here = yield* request(a, { type: T.EVENT, topic, payload: { name: "presence", values: { user: "a" } } })
          // the topic may also be named in the payload
          const inPayload = yield* request(a, { type: T.EVENT, payload: { name: "typing", topic } })
          for (const [what, reply] of [["broadcast", cast], ["presence", here], ["topic in payload", inPayload]] as const) {
            assert.strictEqual(reply.status, allowed ? "ok" : "error", `${what} on ${topic}`)
            // not subscribed (and, for B, not subscribable: SUBSCRIBE answers forbidden)
            if (!allowed) assert.strictEqual(reply.reason, "not_subscribed", `${what} on ${topic}`)
          }
        }
        assert.strictEqual((yield* request(a, { type: T.SUBSCRIBE, payload: { scopes: [RB] } })).reason, "forbidden")
        // a2 (on A's topic) got A's broadcast and presence; b (on B's) nothing from a
        assert.notStrictEqual(handle, ja.session_id)
        yield* a2.waitFor(is(T.BROADCAST, (f) => f.payload.topic === RA && f.payload.from === handle))
        yield* a2.waitFor(is(T.PRESENCE, (f) => f.payload.topic === RA && f.payload.joins?.[handle] !== undefined))
        yield* settle(b, "b")
        yield* realSleep(50)
        assert.deepStrictEqual(b.frames.filter((f) => f.type === T.BROADCAST || f.type === T.PRESENCE), [])
      }).pipe(Effect.scoped))

    it.effect("no poke, broadcast or presence of B reaches a session that may read only A", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const onlyA = yield* connect(base)
        const ja = yield* join(onlyA, { token: "token-a", scopes: [A, RA] })
        assert.strictEqual(ja.status, "ok")
        // it tries for B every way there is, and is refused
        assert.strictEqual((yield* request(onlyA, { type: T.SUBSCRIBE, payload: { scopes: [B] } })).reason, "forbidden")
        assert.strictEqual((yield* request(onlyA, { type: T.SUBSCRIBE, payload: { scopes: [RB, RA] } })).reason, "forbidden")
        assert.strictEqual((yield* request(onlyA, { type: T.EVENT, topic: RB, payload: { name: "presence" } })).reason, "not_subscribed")
        const pageOnB = yield* connect(base)
        const mountB = yield* join(pageOnB, { token: "token-a", url: `/live/todos?scope=${B}` })
        assert.strictEqual(mountB.status, "error")

        // B's side: two sessions and an HTTP client make pokes, broadcasts and presence on B
        const b1 = yield* connect(base)
        const b2 = yield* connect(base)
        const jb1 = yield* join(b1, { token: "token-b", scopes: [B, RB] })
        yield* join(b2, { token: "token-b", scopes: [B, RB] })
        const b1Handle = keyOf(yield* request(b1, { type: T.EVENT, topic: RB, payload: { name: "presence", values: { user: "b1" } } }))
        yield* request(b2, { type: T.EVENT, topic: RB, payload: { name: "presence", values: { user: "b2" } } })
        yield* request(b1, { type: T.EVENT, topic: RB, payload: { name: "typing", values: { secret: "b-typing" } } })
        const pushB = yield* req("push", { mutations: [create(B, "b-secret")] }, bearer("token-b"))
        assert.strictEqual(pushB.status, 200)
        // B's sessions got all of it (so the silence on A's side means something)
        yield* b2.waitFor(is(T.BROADCAST, (f) => f.payload.topic === RB && f.payload.from === b1Handle))
        yield* b1.waitFor(is(T.POKE, (f) => f.payload.scope === B))
        b2.ws.terminate() // presence leaves
        yield* b1.waitFor(is(T.PRESENCE, (f) => f.payload.topic === RB && f.payload.leaves !== undefined))

        // A's side, after: A's own pokes, broadcasts and presence do arrive
        const a2 = yield* connect(base)
        yield* join(a2, { token: "token-a", scopes: [RA] })
        yield* request(a2, { type: T.EVENT, topic: RA, payload: { name: "presence", values: { user: "a2" } } })
        yield* request(a2, { type: T.EVENT, topic: RA, payload: { name: "typing" } })
        yield* req("push", { mutations: [create(A, "a-after")] }, bearer("token-a"))
        yield* onlyA.waitFor(is(T.POKE, (f) => f.payload.scope === A))
        yield* onlyA.waitFor(is(T.BROADCAST, (f) => f.payload.topic === RA))
        yield* onlyA.waitFor(is(T.PRESENCE, (f) => f.payload.topic === RA))
        yield* settle(onlyA, "a")
        yield* realSleep(100)

        for (const f of onlyA.frames) {
          for (const scope of scopesIn(f)) assert.isTrue(ALLOWED_TO_A.has(scope), `A-only session got ${JSON.stringify(f)}`)
        }
        // nothing but the REPLYs to its own requests (which name what it asked for) mentions B
        const seen = JSON.stringify([...onlyA.frames, ...pageOnB.frames].filter((f) => f.type !== T.REPLY))
        for (const word of [B, RB, "b-secret", "b-typing", jb1.session_id ?? "?", b1Handle]) assert.notInclude(seen, word)
        assert.isFalse(pageOnB.frames.some((f) => f.type === T.PATCH || f.type === T.POKE))
      }).pipe(Effect.scoped))

    it.effect("a live page subscribes through the same Authorizer: a page on B with A's token neither mounts nor re-renders", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        yield* req("push", { mutations: [create(B, "b-page-secret")] }, bearer("token-b"))
        for (const token of [undefined, "token-z", "token-a"]) {
          const c = yield* connect(base)
          const reply = yield* join(c, { ...(token === undefined ? {} : { token }), url: `/live/todos?scope=${B}` })
          assert.strictEqual(reply.status, "error", String(token))
          assert.isUndefined(reply.regions)
          assert.notInclude(JSON.stringify(c.frames), "b-page-secret")
        }
        // allowed: it mounts with the data, and re-renders on a push from elsewhere
        const ok = yield* connect(base)
        const mounted = yield* join(ok, { token: "token-a", url: `/live/todos?scope=${A}` })
        assert.strictEqual(mounted.status, "ok")
        yield* req("push", { mutations: [create(A, "a-page")] }, bearer("token-a"))
        yield* ok.waitFor(is(T.PATCH, (f) => f.payload.regions.some((r) => r.html.includes("title of a-page"))))
      }).pipe(Effect.scoped))

    it.effect("a live page's HTTP render (GET) goes through the Authorizer too: 401 / 403 / 200", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        yield* req("push", { mutations: [create(B, "b-get-secret")] }, bearer("token-b"))
        const get = (headers: Record<string, string>) =>
          Effect.promise(() =>
            fetch(`${base}/live/todos?scope=${B}`, { headers }).then(async (r) => ({ status: r.status, text: await r.text() }))
          )
        for (const [headers, status, code] of [[{}, 401, "unauthorized"], [bearer("token-z"), 401, "unauthorized"], [bearer("token-a"), 403, "forbidden"]] as const) {
          const res = yield* get(headers)
          assert.strictEqual(res.status, status, JSON.stringify(headers))
          assert.notInclude(res.text, "b-get-secret")
          assert.strictEqual(decodeAs(Protocol.ErrorBody, JSON.parse(res.text)).error.code, code)
        }
        const allowed = yield* get(bearer("token-b"))
        assert.strictEqual(allowed.status, 200)
        assert.include(allowed.text, "title of b-get-secret")
      }))
  })
})
