/**
 * The hand-written baseline for push and pull: `node:http` + `better-sqlite3`,
 * the storage work of bench/lib/baseline-sql.ts (the same transaction as the
 * engine's, on the schema our migrations create) behind the plain request
 * listener of bench/lib/baseline-handler.ts.
 *
 * Bodies are parsed with JSON.parse and checked by hand (no Schema): that is
 * part of what a hand-written server saves, and part of what we measure.
 *
 * Argument (JSON): { filename }.
 */
import * as Http from "node:http"
import * as BaselineHandler from "../lib/baseline-handler.js"
import * as BaselineSql from "../lib/baseline-sql.js"
import * as Control from "../lib/control.js"

const { filename } = Control.argument<{ filename: string }>()
const storage = BaselineSql.open(filename)

const server = Http.createServer(BaselineHandler.listener(storage))

Control.listenReady(server, {})
process.on("SIGTERM", () => {
  server.close()
  storage.close()
  process.exit(0)
})
