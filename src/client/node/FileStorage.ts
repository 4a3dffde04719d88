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
import type * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import { ClientStorage, type ClientStorageError } from "../ClientStorage.js"
import * as internal from "./internal/fileStorage.js"

/**
 * Options of the file storage.
 *
 * @since 0.1.0
 * @category options
 */
export interface Options {
  /** The directory (created if missing). */
  readonly directory: string
  /** fsync every commit (true by default; false trades durability on power loss for speed). */
  readonly fsync?: boolean
  /** Compact once the journal has this many lines; 500 by default. */
  readonly compactAfter?: number
}

/**
 * Open the store in `options.directory`; the journal is closed with the scope.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: (options: Options) => Effect.Effect<ClientStorage["Type"], ClientStorageError, Scope.Scope> = internal.make

/**
 * The file storage as a layer (the directory is opened when the layer is built).
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<ClientStorage, ClientStorageError> =>
  Layer.scoped(ClientStorage, make(options))
