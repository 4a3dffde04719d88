/**
 * Who may do what: every scope of a request is authorized, all must yield
 * one principal, and a client id belongs to the principal that first used
 * it (never revealed to another).
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Authorizer from "../Authorizer.js"
import type * as Clients from "../Clients.js"
import type { StorageError } from "../StorageError.js"
import type { Caller } from "../SyncEngine.js"

/** The engine's access checks. */
export interface Access {
  /**
   * Authorize every scope of a request; all must yield the same principal.
   * Returns the principal as an owner of client ids: `undefined` for the
   * anonymous principal, which owns none.
   */
  readonly authorize: (
    action: Authorizer.Action,
    scopes: Iterable<string>,
    caller: Caller,
    clientId: string | undefined
  ) => Effect.Effect<string | undefined, Authorizer.Denied>
  /** `forbidden`: the client id belongs to another principal (whose ids are never revealed). */
  readonly notOwner: (clientId: string) => Effect.Effect<never, Authorizer.Denied>
  /** Fail with `forbidden` when another principal owns the client id (pull, snapshot: reads only). */
  readonly checkOwner: (clientId: string | undefined, owner: string | undefined) => Effect.Effect<void, Authorizer.Denied | StorageError>
}

/** A principal as an owner of client ids: `undefined` for the anonymous one (and none). */
const ownerOf = (id: string | undefined): string | undefined => id === undefined || id === Authorizer.anonymous.id ? undefined : id

export const make = (authorizer: Authorizer.Authorizer["Type"], clients: Clients.Clients["Type"]): Access => {
  const authorize = (
    action: Authorizer.Action,
    scopes: Iterable<string>,
    caller: Caller,
    clientId: string | undefined
  ): Effect.Effect<string | undefined, Authorizer.Denied> => {
    const unique = [...new Set(scopes)]
    const one = (scope: string) => authorizer.authorize({ action, scope, token: caller.token, headers: caller.headers, clientId })
    // one scope (most requests): its principal, without a loop over one
    if (unique.length === 1) return Effect.map(one(unique[0]), (p) => ownerOf(p.id))
    return Effect.flatMap(Effect.forEach(unique, one), (principals) => {
      const id = principals[0]?.id
      if (principals.some((p) => p.id !== id)) {
        return Authorizer.forbidden("the scopes of this request were authorized as different principals")
      }
      return Effect.succeed(ownerOf(id))
    })
  }

  const notOwner = (clientId: string) =>
    Authorizer.forbidden(`client_id ${clientId} belongs to another principal`)

  const checkOwner = (clientId: string | undefined, owner: string | undefined) =>
    clientId === undefined
      ? Effect.void
      : Effect.flatMap(clients.ownerOf(clientId), (found) => found === undefined || found === owner ? Effect.void : notOwner(clientId))

  return { authorize, notOwner, checkOwner }
}
