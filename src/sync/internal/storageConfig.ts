/**
 * Choosing the storage family from configuration: `DATABASE_URL` parsed
 * without touching the file system or the network (an unknown scheme is an
 * error, never a file name), `RETENTION_CHANGES` applied to every family.
 *
 * @internal
 */
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as LogCompactionInternal from "./logCompaction.js"
import * as ChangeLog from "../ChangeLog.js"
import type { Operator } from "../Operator.js"
import * as SqlStorage from "../sql/SqlStorage.js"
import type { Target } from "../StorageConfig.js"
import type { StorageError } from "../StorageError.js"
import * as SyncStorage from "../SyncStorage.js"

/** Where the data goes when `DATABASE_URL` is unset. */
const defaultDatabaseUrl = "./data/mizu.db"

/**
 * Parse a `DATABASE_URL` (see the module header); `Left` carries why it is
 * not one. Pure: touches neither the file system nor the network.
 */
export const parseDatabaseUrl = (input: string): Either.Either<Target, string> => {
  const value = input.trim()
  if (value === "") return Either.left("DATABASE_URL is empty")
  if (value === "memory") return Either.right({ _tag: "Memory" })
  if (/^postgres(ql)?:\/\//i.test(value)) return Either.right({ _tag: "Postgres", url: Redacted.make(value) })
  if (/^sqlite:/i.test(value)) {
    // sqlite:./x.db, sqlite:/abs/x.db, sqlite::memory:, sqlite://./x.db, sqlite:///abs/x.db
    const rest = value.slice("sqlite:".length).replace(/^\/\//, "")
    if (rest === "") return Either.left("a sqlite: URL needs a file name (or :memory:)")
    return Either.right({ _tag: "Sqlite", filename: rest })
  }
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(value)
  if (scheme !== null) {
    return Either.left(`unsupported database scheme "${scheme[1]}" (use memory, sqlite:<path>, a file path or postgres://)`)
  }
  return Either.right({ _tag: "Sqlite", filename: value })
}

/**
 * The `DATABASE_URL` config, parsed (see the module header); defaults to
 * `./data/mizu.db`. An invalid value fails naming the variable.
 */
export const databaseTarget: Config.Config<Target> = Config.redacted("DATABASE_URL").pipe(
  Config.withDefault(Redacted.make(defaultDatabaseUrl)),
  Config.mapOrFail((url) =>
    Either.mapLeft(parseDatabaseUrl(Redacted.value(url)), (message) => ConfigError.InvalidData(["DATABASE_URL"], message))
  )
)

/** `RETENTION_CHANGES`: the most changes kept per scope, if set. */
const retention: Config.Config<Option.Option<number>> = Config.option(
  Config.integer("RETENTION_CHANGES").pipe(
    Config.validate({ message: "RETENTION_CHANGES must be a positive integer", validation: (n) => n >= 1 })
  )
)

/** `SQLITE_SYNCHRONOUS`: `NORMAL` (the default) or `FULL` (durable across power loss; see SECURITY.md). */
const sqliteSynchronous: Config.Config<"NORMAL" | "FULL"> = Config.literal("NORMAL", "FULL")("SQLITE_SYNCHRONOUS").pipe(
  Config.withDefault("NORMAL" as const)
)

/**
 * Wrap a storage family so that its `ChangeLog.append` applies the retention
 * rule of `RETENTION_CHANGES` (one extra `floor` read per append). The SQL
 * layers do this natively (`SqlStorage.Options.maxChangesPerScope`) without
 * the extra read; this is for the others, such as memory.
 */
export const withRetention = (maxChanges: number) =>
<A, E, R>(storage: Layer.Layer<SyncStorage.Services | A, E, R>): Layer.Layer<SyncStorage.Services | A, E, R> =>
  Layer.map(storage, (context) => {
    const log = Context.get(context, ChangeLog.ChangeLog)
    return Context.add(
      context,
      ChangeLog.ChangeLog,
      ChangeLog.ChangeLog.of({
        ...log,
        append: (scope, inputs) =>
          Effect.tap(log.append(scope, inputs), (changes) => {
            const last = changes[changes.length - 1]
            if (last === undefined) return Effect.void
            return Effect.flatMap(log.floor(scope), (floor) => {
              const upTo = ChangeLog.retentionTrimPoint(maxChanges, last.cursor, floor)
              return upTo === undefined ? Effect.void : log.trim(scope, upTo)
            })
          })
      })
    )
  })

/** A short description of a target for logs (never the Postgres credentials). */
const describe = (target: Target): string => {
  switch (target._tag) {
    case "Memory":
      return "memory"
    case "Sqlite":
      return `sqlite ${target.filename}`
    case "Postgres": {
      try {
        const url = new URL(Redacted.value(target.url))
        return `postgres ${url.hostname}${url.port === "" ? "" : `:${url.port}`}${url.pathname}`
      } catch {
        return "postgres"
      }
    }
  }
}

/** The storage layer of a target. */
const layerTarget = (
  target: Target,
  options: SqlStorage.Options & { readonly synchronous?: "NORMAL" | "FULL" } = {}
): Layer.Layer<SyncStorage.Services | Operator, StorageError> => {
  switch (target._tag) {
    case "Memory": {
      const memory = options.rememberedFailures === undefined ? SyncStorage.layerMemory : SyncStorage.layerMemoryWith(options)
      return options.maxChangesPerScope === undefined ? memory : withRetention(options.maxChangesPerScope)(memory)
    }
    case "Sqlite":
      return SqlStorage.layerSqlite({ ...options, filename: target.filename })
    case "Postgres": {
      const { synchronous: _, ...pg } = options
      return SqlStorage.layerPg({ ...pg, url: target.url })
    }
  }
}

/**
 * The storage family chosen by `DATABASE_URL`, with `RETENTION_CHANGES`
 * applied. Fails at start with a `ConfigError` naming the variable when a
 * value is invalid, or a `StorageError` when the database cannot be opened,
 * reached or migrated.
 */
export const layerConfig: Layer.Layer<SyncStorage.Services | Operator, ConfigError.ConfigError | StorageError> = Layer.unwrapEffect(
  Effect.gen(function*() {
    const target = yield* databaseTarget
    // RETENTION_MODE=compact: nothing is trimmed; LogCompaction folds the log instead
    const maxChanges = (yield* LogCompactionInternal.mode) === "compact" ? Option.none() : yield* retention
    const synchronous = yield* sqliteSynchronous
    yield* Effect.logInfo(
      `storage: ${describe(target)}${target._tag === "Sqlite" ? ` (synchronous = ${synchronous})` : ""}${
        Option.isSome(maxChanges) ? `, keeping at most ${maxChanges.value} changes per scope` : ""
      }`
    )
    return layerTarget(target, { maxChangesPerScope: Option.getOrUndefined(maxChanges), synchronous })
  })
)
