/**
 * The HTTP load generator shared by every benchmark: `workers` concurrent
 * keep-alive connections (one `http.Agent`, loopback only), each sending its
 * requests one after the other, until each worker has sent `maxPerWorker`
 * requests or `durationMs` has passed. The same generator drives our server
 * and the baseline, so its own cost is the same on both sides.
 */
import * as Http from "node:http"

export interface Response {
  readonly status: number
  readonly body: string
}

/** One keep-alive HTTP client for a port on 127.0.0.1; with `timeoutMs`, a request unanswered that long fails. */
export const client = (port: number, maxSockets: number, timeoutMs?: number) => {
  const agent = new Http.Agent({ keepAlive: true, maxSockets, maxFreeSockets: maxSockets })
  const post = (path: string, body: string): Promise<Response> =>
    new Promise((resolve, reject) => {
      const req = Http.request(
        {
          agent,
          host: "127.0.0.1",
          port,
          method: "POST",
          path,
          ...(timeoutMs === undefined ? {} : { timeout: timeoutMs }),
          headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) }
        },
        (res) => {
          const chunks: Array<Buffer> = []
          res.on("data", (c: Buffer) => chunks.push(c))
          res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }))
          res.on("error", reject)
        }
      )
      if (timeoutMs !== undefined) req.on("timeout", () => req.destroy(new Error(`no answer in ${timeoutMs} ms`)))
      req.on("error", reject)
      req.end(body)
    })
  /** `post`, its body when the answer is 200, else a failure naming the status. */
  const postOk = (path: string, body: string): Promise<string> =>
    post(path, body).then((r) => r.status === 200 ? r.body : Promise.reject(new Error(`HTTP ${r.status}`)))
  return { post, postOk, close: () => agent.destroy() }
}

const shared = new Map<number, ReturnType<typeof client>>()

/** A POST on one keep-alive connection per port (made on first use): its body when it answers 200, else a failure naming the status. */
export const postOk = (port: number, path: string, body: string): Promise<string> => {
  let c = shared.get(port)
  if (c === undefined) {
    c = client(port, 1)
    shared.set(port, c)
  }
  return c.postOk(path, body)
}

export interface LoadOptions {
  readonly port: number
  readonly path: string
  readonly workers: number
  readonly maxPerWorker: number
  readonly durationMs: number
  /** The body of request `seq` (0, 1, 2, …) of `worker`. */
  readonly body: (worker: number, seq: number) => string
  /** Check a response; return a problem to count it as an error. */
  readonly check?: (response: Response, worker: number, seq: number) => string | undefined
  /**
   * One request per worker sent before the clock starts (not measured), so
   * every keep-alive connection is open when the measurement begins: the
   * figures are then the steady state, not connection setup under load
   * (`push-tail` measures that: the first request of a connection opened
   * while the others are busy waits up to ~1 s on either server).
   */
  readonly warmup?: { readonly path: string; readonly body: string }
}

export interface LoadResult {
  readonly requests: number
  readonly errors: number
  readonly firstError: string | undefined
  readonly elapsedMs: number
  readonly reqPerSec: number
  /** Per-request latencies in ms. */
  readonly latencies: Float64Array
}

/** Run the load; resolves when every worker has stopped. */
export const run = async (options: LoadOptions): Promise<LoadResult> => {
  const http = client(options.port, options.workers)
  const latencies: Array<number> = []
  const warmup = options.warmup
  if (warmup !== undefined) await Promise.all(Array.from({ length: options.workers }, () => http.post(warmup.path, warmup.body)))
  let errors = 0
  let firstError: string | undefined
  const start = performance.now()
  const deadline = start + options.durationMs
  const worker = async (w: number) => {
    for (let seq = 0; seq < options.maxPerWorker && performance.now() < deadline; seq++) {
      const t0 = performance.now()
      try {
        const response = await http.post(options.path, options.body(w, seq))
        latencies.push(performance.now() - t0)
        const problem = response.status !== 200 ? `HTTP ${response.status}: ${response.body.slice(0, 200)}` : options.check?.(response, w, seq)
        if (problem !== undefined) {
          errors++
          firstError ??= problem
        }
      } catch (e) {
        errors++
        firstError ??= String(e)
        return
      }
    }
  }
  await Promise.all(Array.from({ length: options.workers }, (_, w) => worker(w)))
  const elapsedMs = performance.now() - start
  http.close()
  return {
    requests: latencies.length,
    errors,
    firstError,
    elapsedMs,
    reqPerSec: (latencies.length / elapsedMs) * 1000,
    latencies: Float64Array.from(latencies)
  }
}
