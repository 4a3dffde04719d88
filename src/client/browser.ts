/**
 * The browser build, served at `GET /_live/runtime.js`: the clients, the live
 * page runtime, and the Effect modules a mutations module imports (`Effect`,
 * `Option`, `Schema`), so a page can use the same mutation definitions as the
 * server with an import map and no bundler. It exports the client entry,
 * `connectPage`, and those three modules, nothing else.
 *
 * @since 0.1.0
 */
export * from "./index.js"
export { connectPage } from "./PageRuntime.js"
export { Effect, Option, Schema } from "effect"
