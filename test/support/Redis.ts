/**
 * Whether Redis answers at 127.0.0.1:6379 (probed once, at import). Without
 * it Redis suites skip with one line; under CI=true they fail.
 */
import { Redis } from "ioredis"

export const url = "redis://127.0.0.1:6379"

const probe = async (): Promise<string | undefined> => {
  const client = new Redis(url, { lazyConnect: true, connectTimeout: 2000, maxRetriesPerRequest: 0, retryStrategy: () => null })
  client.on("error", () => undefined)
  try {
    await client.connect()
    const pong = await client.ping()
    return pong === "PONG" ? undefined : `unexpected answer ${pong}`
  } catch (e) {
    return `no server at 127.0.0.1:6379 (${e instanceof Error ? e.message : String(e)})`
  } finally {
    client.disconnect()
  }
}

/** Why Redis cannot be used, or undefined when it can. */
export const unavailable: string | undefined = await probe()

if (unavailable !== undefined) {
  if (process.env["CI"] === "true") throw new Error(`Redis is required (CI=true): ${unavailable}`)
  console.log(`skipping Redis suites: ${unavailable} (set CI=true to make this a failure)`)
}
