/**
 * `ClientStorage` on the file system, for Node clients: a directory holding
 * `state.json` (a full copy of the stored state) and `journal.jsonl` (the
 * batches committed since, one JSON line each, numbered).
 *
 * Invariants:
 * - `commit` appends one line and (by default) fsyncs it before it returns,
 *   so a committed batch survives a crash; a line torn by a crash is the last
 *   one, and `load` ignores it and cuts it off, so the batch is all or nothing.
 * - Compaction writes the whole state to `state.json.tmp`, fsyncs it, renames
 *   it over `state.json` (atomic) and only then empties the journal. The state
 *   file records the last batch number it includes, and `load` skips journal
 *   lines at or below it, so a crash between the rename and the truncation
 *   does not apply a batch twice.
 * - One process per directory.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { applyBatch, type Batch, ClientStorage, ClientStorageError, emptyState, type StoredState } from "../ClientStorage.js"

/** Options of the file storage. */
export interface Options {
  /** The directory (created if missing). */
  readonly directory: string
  /** fsync every commit (true by default; false trades durability on power loss for speed). */
  readonly fsync?: boolean
  /** Compact once the journal has this many lines; 500 by default. */
  readonly compactAfter?: number
}

interface StateFile {
  readonly seq: number
  readonly state: StoredState
}

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)

const parseStateFile = (text: string): StateFile | undefined => {
  const json: unknown = JSON.parse(text)
  if (!isRecord(json) || typeof json.seq !== "number" || !isRecord(json.state)) return undefined
  const s = json.state
  if (typeof s.nextId !== "number" || !isRecord(s.scopes) || !Array.isArray(s.pending)) return undefined
  return json as unknown as StateFile
}

const parseLine = (line: string): { readonly seq: number; readonly batch: Batch } | undefined => {
  try {
    const json: unknown = JSON.parse(line)
    if (!isRecord(json) || typeof json.seq !== "number" || !isRecord(json.batch)) return undefined
    return json as unknown as { seq: number; batch: Batch }
  } catch {
    return undefined
  }
}

const io = <A>(message: string, f: () => A) =>
  Effect.try({ try: f, catch: (cause) => new ClientStorageError({ reason: "unavailable", message, cause }) })

/** Open the store in `options.directory`; the journal is closed with the scope. */
export const make = (options: Options) =>
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
      const parsed = yield* Effect.try({
        try: () => parseStateFile(stateText),
        catch: (cause) => new ClientStorageError({ reason: "corrupt", message: `${statePath} is not JSON`, cause })
      })
      if (parsed === undefined) return yield* new ClientStorageError({ reason: "corrupt", message: `${statePath} is not a client state` })
      seq = parsed.seq
      state = parsed.state
    }
    const journalText = yield* io(`cannot read ${journalPath}`, () => Fs.existsSync(journalPath) ? Fs.readFileSync(journalPath, "utf8") : "")
    let validBytes = 0
    let lines = 0
    for (const line of journalText.split("\n")) {
      const end = validBytes + Buffer.byteLength(line, "utf8") + 1
      if (end > Buffer.byteLength(journalText, "utf8")) break // no newline: torn
      const entry = parseLine(line)
      if (entry === undefined) break
      if (entry.seq > seq) {
        state = applyBatch(state, entry.batch)
        seq = entry.seq
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
      const file: StateFile = { seq, state }
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

/** The file storage as a layer (the directory is opened when the layer is built). */
export const layer = (options: Options): Layer.Layer<ClientStorage, ClientStorageError> =>
  Layer.scoped(ClientStorage, make(options))
