/**
 * The app shell offline: a service worker that keeps the files a page loads
 * (its HTML, scripts, styles, `/_live/runtime.js`, the compiled mutations) in
 * the Cache API, so after one online visit the page opens with no network at
 * all and shows what the client has in its local store (IndexedDB), pending
 * mutations included; they are pushed when the network comes back.
 *
 * Two halves: `script(options)` is the worker's source, which the app's
 * server serves (at `/sw.js`, so its scope is the whole origin), and
 * `register(options)` is what the page calls to install it.
 *
 * The worker's contract:
 * - Only same-origin `GET`s of the shell's paths are answered by it: each
 *   one network-first (so online the page gets the files of the server's
 *   deploy together, as without a worker), its cached copy when the network
 *   fails, answers an error status or takes longer than `networkTimeout` while a
 *   copy exists. A navigation matches its path without the query string
 *   (`/?list=a` is `/`). Everything else — `/_sync/*`, `/_live/websocket`,
 *   any other path, any other method — goes to the network untouched and is
 *   never cached.
 * - The cache is named `cachePrefix + version`. `install` fills it with the
 *   whole shell (bypassing the HTTP cache) before the worker can take over;
 *   `activate` deletes every other cache of the prefix. With `version` a
 *   hash of the shell's files, a deploy that changes any of them changes the
 *   worker's bytes: the browser installs the new worker on the next
 *   navigation, its cache replaces the old one, and it takes over the open
 *   pages at once (`skipWaiting` + `clients.claim`).
 *
 * Service workers need a secure context: https, or http on localhost /
 * 127.0.0.1.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"

/**
 * Options of `script`.
 *
 * @since 0.1.0
 * @category options
 */
export interface ScriptOptions {
  /**
   * This deploy's shell, e.g. a hash of its files. Part of the cache name: a
   * new version installs a new worker whose cache replaces the old one.
   */
  readonly version: string
  /** The same-origin paths the page loads (`/`, `/app.js`, `/_live/runtime.js`, …): precached, network-first, from the cache offline. */
  readonly shell: ReadonlyArray<`/${string}`>
  /** How long a shell request waits for the network before it takes the cached copy, in ms; 3,000 by default. */
  readonly networkTimeout?: number
  /** The caches' name prefix; `mizu-shell-` by default. Caches with other names are left alone. */
  readonly cachePrefix?: string
}

/** Paths a shell may not contain: the sync endpoints and the live socket are never cached. */
const NEVER_CACHED: ReadonlyArray<string> = ["/_sync/", "/_live/websocket"]

/**
 * The service worker's source for `options` (a classic script): serve it
 * with `content-type: text/javascript` and `cache-control: no-cache` at the
 * root of the origin (`/sw.js`). Throws on a shell path under `/_sync/` or
 * the live socket's path, which must never be cached.
 *
 * @since 0.1.0
 * @category utils
 */
export const script = (options: ScriptOptions): string => {
  for (const path of options.shell) {
    if (!path.startsWith("/") || NEVER_CACHED.some((never) => path.startsWith(never))) {
      throw new Error(`AppShell.script: ${JSON.stringify(path)} cannot be in the shell (an absolute path, not /_sync/* or /_live/websocket)`)
    }
  }
  const config = {
    cache: `${options.cachePrefix ?? "mizu-shell-"}${options.version}`,
    prefix: options.cachePrefix ?? "mizu-shell-",
    shell: [...new Set(options.shell)],
    timeout: Math.max(0, options.networkTimeout ?? 3000)
  }
  return `// The app shell's service worker (mizu-sync-live AppShell.script), version ${JSON.stringify(options.version)}.
"use strict";
const CONFIG = ${JSON.stringify(config)};
const SHELL = new Set(CONFIG.shell);

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches.open(CONFIG.cache)
      .then((cache) => cache.addAll(CONFIG.shell.map((path) => new Request(path, { cache: "reload" }))))
      .then(() => self.skipWaiting())
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((names) => Promise.all(names.filter((name) => name.startsWith(CONFIG.prefix) && name !== CONFIG.cache).map((name) => caches.delete(name))))
      .then(() => self.clients.claim())
  );
});

// Network first; the cached copy when the network fails, answers an error or is slower than the timeout.
const networkFirst = async (event, path) => {
  const cache = await caches.open(CONFIG.cache);
  const network = fetch(event.request).then((response) => {
    if (response.ok) event.waitUntil(cache.put(path, response.clone()).catch(() => {}));
    return response;
  });
  const cached = await cache.match(path);
  if (cached === undefined) return network;
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(cached), CONFIG.timeout);
    network.then(
      (response) => { clearTimeout(timer); resolve(response.ok ? response : cached); },
      () => { clearTimeout(timer); resolve(cached); }
    );
  });
};

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  // only the shell's own paths; /_sync/*, /_live/websocket and everything else go to the network untouched
  if (url.origin !== self.location.origin || !SHELL.has(url.pathname)) return;
  if (request.mode !== "navigate" && url.search !== "") return;
  event.respondWith(networkFirst(event, url.pathname));
});
`
}

/**
 * Options of `register`.
 *
 * @since 0.1.0
 * @category options
 */
export interface RegisterOptions {
  /** The worker's URL, served with `script`'s source; `/sw.js` by default. */
  readonly url?: string
  /** Its scope; the directory of `url` by default (`/` for `/sw.js`). */
  readonly scope?: string
  /** The container; `navigator.serviceWorker` by default. */
  readonly serviceWorker?: Pick<ServiceWorkerContainer, "register">
}

/**
 * Register the app shell's worker. Resolves with the registration, or with
 * `undefined` where the page cannot have one (no service workers, not a
 * secure context) or the registration failed (then it is logged as a
 * warning through Effect's logger): the page works online either way, so this never rejects.
 * The worker checks for a new version on every navigation (`updateViaCache:
 * "none"`); `navigator.serviceWorker.ready` resolves once the shell is cached.
 *
 * @since 0.1.0
 * @category utils
 */
export const register = async (options: RegisterOptions = {}): Promise<ServiceWorkerRegistration | undefined> => {
  const container = options.serviceWorker ??
    (globalThis as { readonly navigator?: { readonly serviceWorker?: ServiceWorkerContainer } }).navigator?.serviceWorker
  if (container === undefined || (globalThis as { readonly isSecureContext?: boolean }).isSecureContext === false) return undefined
  try {
    return await container.register(options.url ?? "/sw.js", {
      updateViaCache: "none",
      ...(options.scope === undefined ? {} : { scope: options.scope })
    })
  } catch (error) {
    // through Effect's logger, as the clients' own warnings, so an app can route it
    Effect.runFork(Effect.logWarning("AppShell.register: the service worker could not be registered; the page will not open offline", error))
    return undefined
  }
}
