/**
 * Connection URLs (`DATABASE_URL`, `PUBSUB_URL`) as they may be shown: in
 * error messages and logs, a URL's password is `***`, and so is any query
 * parameter that looks like a secret (`password`, `sslkey`, `token`, …).
 * Works on text that is not a valid URL too, since that is exactly what a
 * configuration error shows.
 *
 * @since 0.1.0
 */

/** Query parameter names whose values are secrets (`?password=…`, `?sslpassword=…`, `?auth_token=…`). */
const secretParameter = /pass|secret|token|key|auth|credential/i

const MASK = "***"

const redactQuery = (text: string): string =>
  text.replace(/([?&;])([^=&#;]*)=([^&#;]*)/g, (whole, sep: string, name: string) =>
    secretParameter.test(name) ? `${sep}${name}=${MASK}` : whole)

/**
 * The URL with its password (and secret-looking query parameters) replaced
 * by `***`: `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
 * A user name before a `:` is kept; userinfo without a `:` is masked whole
 * (some schemes take a bare token there: `redis://secret@host`). Never
 * throws; text without credentials is returned as it is.
 *
 * @since 0.1.0
 * @category utils
 */
export const redact = (url: string): string => {
  const text = url.trim()
  const scheme = /^[a-z][a-z0-9+.-]*:\/*/i.exec(text)
  const start = scheme === null ? 0 : scheme[0].length
  // The credentials end at the last "@" of the authority; an unescaped "/" or "?" in a password
  // is not URL syntax, so without a parse, take the last "@" of the whole text to be safe.
  const at = text.lastIndexOf("@")
  let out = text
  if (at >= start) {
    const userinfo = text.slice(start, at)
    const colon = userinfo.indexOf(":")
    const shown = colon === -1 ? MASK : `${userinfo.slice(0, colon)}:${MASK}`
    out = `${text.slice(0, start)}${shown}@${text.slice(at + 1)}`
  }
  return redactQuery(out)
}
