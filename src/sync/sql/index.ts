/**
 * The SQL storage family (SQLite and PostgreSQL over `@effect/sql`).
 *
 * @since 0.1.0
 */
export * as Migrations from "./Migrations.js"
export * as SqliteDriver from "./SqliteDriver.js"
export * as SqlStorage from "./SqlStorage.js"
