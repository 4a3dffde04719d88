/**
 * The file layer of `ClientStorage` (the invariants are in `FileStorage`):
 * `state.json` and `journal.jsonl` checked with Schemas on load, a torn last
 * line cut off, one appended (and fsynced) line per commit, compaction by
 * rename. Node only.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { applyBatch, ClientStorage, type ClientStorageError, corrupt, emptyState, type StoredState, unavailable } from "../../ClientStorage.js"
import type { Options } from "../FileStorage.js"

/**
 * Checked in place, never rebuilt: a decode builds new records, where a
 * scope, entity or id named `"__proto__"` would stop being an own property.
 */
const inPlace = <A, I>(schema: Schema.Schema<A, I>) => Schema.declare((u: unknown): u is A => Schema.is(schema)(u))

const Pending = Schema.Struct({
  id: Schema.Number,
  name: Schema.String,
  scope: Schema.String,
  // `undefined` args leave no key in JSON
  args: Schema.optionalWith(Schema.Unknown, { default: () => undefined })
})

const Scopes = inPlace(Schema.Record({
  key: Schema.String,
  value: Schema.Struct({
    cursor: Schema.Number,
    rows: Schema.Record({ key: Schema.String, value: Schema.Record({ key: Schema.String, value: Schema.Unknown }) })
  })
}))

/** `state.json`: the whole state as of journal line `seq`. */
const StateFile = Schema.parseJson(Schema.Struct({
  seq: Schema.Number,
  state: Schema.Struct({
    clientId: Schema.optionalWith(Schema.UndefinedOr(Schema.String), { default: () => undefined }),
    nextId: Schema.Number,
    scopes: Scopes,
    pending: Schema.Array(Pending)
  })
}))

/** One line of `journal.jsonl`: batch number `seq`. */
const JournalLine = Schema.parseJson(Schema.Struct({
  seq: Schema.Number,
  batch: Schema.Struct({
    meta: Schema.optional(Schema.Struct({ clientId: Schema.String, nextId: Schema.Number })),
    scopes: Schema.optional(Schema.Array(Schema.Struct({
      scope: Schema.String,
      cursor: Schema.Number,
      reset: Schema.optional(Schema.Boolean),
      put: Schema.optional(Schema.Array(Schema.Tuple(Schema.String, Schema.String, Schema.Unknown))),
      delete: Schema.optional(Schema.Array(Schema.Tuple(Schema.String, Schema.String)))
    }))),
    pendingReplace: Schema.optional(Schema.Array(Pending)),
    pendingDelete: Schema.optional(Schema.Array(Schema.Number)),
    pendingPut: Schema.optional(Schema.Array(Pending))
  })
}))

const decodeStateFile = Schema.decodeUnknownEither(StateFile)
/** A line that does not decode is torn (or garbage after one): where the journal ends. */
const decodeLine = (line: string) => Option.getRight(Schema.decodeUnknownEither(JournalLine)(line))

const io = <A>(message: string, f: () => A) => Effect.try({ try: f, catch: (cause) => unavailable(message, cause) })

/**
 * See `FileStorage.make`. A builder: it takes the directory's lock and reads
 * the state and journal, then one short method per `ClientStorage` operation.
 */
export const make = (options: Options): Effect.Effect<ClientStorage["Type"], ClientStorageError, Scope.Scope> =>
  Effect.gen(function*() {
    const fsync = options.fsync ?? true
    const compactAfter = Math.max(1, options.compactAfter ?? 500)
    const statePath = Path.join(options.directory, "state.json")
    const journalPath = Path.join(options.directory, "journal.jsonl")
    yield* io(`cannot create ${options.directory}`, () => Fs.mkdirSync(options.directory, { recursive: true }))

    // -- load: state file, then every journal line after it, up to the first torn one
    let seq = 0
    let state: StoredState = emptyState
    const stateText = yield* io(`cannot read ${statePath}`, () => Fs.existsSync(statePath) ? Fs.readFileSync(statePath, "utf8") : undefined)
    if (stateText !== undefined) {
      const parsed = decodeStateFile(stateText)
      if (Either.isLeft(parsed)) return yield* corrupt(`${statePath} is not a client state`, parsed.left)
      seq = parsed.right.seq
      state = parsed.right.state
    }
    const journalText = yield* io(`cannot read ${journalPath}`, () => Fs.existsSync(journalPath) ? Fs.readFileSync(journalPath, "utf8") : "")
    let validBytes = 0
    let lines = 0
    for (const line of journalText.split("\n")) {
      const end = validBytes + Buffer.byteLength(line, "utf8") + 1
      if (end > Buffer.byteLength(journalText, "utf8")) break // no newline: torn
      const entry = decodeLine(line)
      if (Option.isNone(entry)) break
      if (entry.value.seq > seq) {
        state = applyBatch(state, entry.value.batch)
        seq = entry.value.seq
      }
      validBytes = end
      lines++
    }
    const fd = yield* Effect.acquireRelease(
      io(`cannot open ${journalPath}`, () => {
        const fd = Fs.openSync(journalPath, "a+")
        if (Fs.fstatSync(fd).size !== validBytes) Fs.ftruncateSync(fd, validBytes)
        return fd
      }),
      (fd) => Effect.sync(() => Fs.closeSync(fd))
    )

    let size = validBytes
    const compact = io(`cannot compact ${statePath}`, () => {
      const tmp = `${statePath}.tmp`
      const file = { seq, state }
      const tfd = Fs.openSync(tmp, "w")
      try {
        Fs.writeSync(tfd, JSON.stringify(file))
        if (fsync) Fs.fsyncSync(tfd)
      } finally {
        Fs.closeSync(tfd)
      }
      Fs.renameSync(tmp, statePath)
      Fs.ftruncateSync(fd, 0)
      if (fsync) Fs.fsyncSync(fd)
      lines = 0
      size = 0
    })

    const lock = yield* Effect.makeSemaphore(1)
    return ClientStorage.of({
      load: Effect.sync(() => state),
      commit: (batch) =>
        lock.withPermits(1)(Effect.gen(function*() {
          const next = applyBatch(state, batch)
          const line = Buffer.from(JSON.stringify({ seq: seq + 1, batch }) + "\n", "utf8")
          yield* io(`cannot write ${journalPath}`, () => {
            try {
              Fs.writeSync(fd, line)
              if (fsync) Fs.fdatasyncSync(fd)
            } catch (error) {
              // never leave a torn line for later lines to follow
              try {
                Fs.ftruncateSync(fd, size)
              } catch {
                // the next load cuts the torn line off
              }
              throw error
            }
          })
          size += line.length
          seq++
          state = next
          lines++
          // the batch is committed by now: a failed compaction only leaves a longer journal
          if (lines >= compactAfter) yield* Effect.catchAll(compact, (e) => Effect.logWarning("client storage compaction failed", e.message))
        }))
    })
  })
