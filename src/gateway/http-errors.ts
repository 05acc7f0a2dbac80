import { NixipfsError } from '../errors.js'

/** Every error code the gateway can meet, mapped to exactly one HTTP status. */
const STATUS_BY_CODE: Record<string, number> = {
  ERR_NOT_FOUND: 404,
  ERR_BAD_REQUEST: 400,
  ERR_NOT_ACCEPTABLE: 406,
  ERR_RANGE: 416,
  ERR_NOT_IMPLEMENTED: 501,
  // A client that took nothing of its response for too long (cut: src/gateway/drain.ts).
  ERR_CLIENT_STALLED: 408,
  // Cannot be served right now (UnavailableError), not a miss: Nix caches a 404 narinfo for an hour (narinfo-cache-negative-ttl), a 503 not at all.
  ERR_UNAVAILABLE: 503,
  // The cache contradicts itself here (what the union and quorum rules refuse too): nothing can be served for it now.
  ERR_INCONSISTENT_CACHE: 503,
  ERR_INTEGRITY: 502,
  ERR_NAR_FORMAT: 502,
  ERR_BLOCK_NOT_FOUND: 502,
  ERR_BLOCK_UNAVAILABLE: 502,
  ERR_NARINFO_PARSE: 502
}

/** An HTTP-level failure raised by a route handler. */
export class HttpError extends NixipfsError {
  override name = 'HttpError'
}

/** The HTTP status for an error (500 for anything unexpected). */
export function statusOf (err: unknown): number {
  return err instanceof NixipfsError ? (STATUS_BY_CODE[err.code] ?? 500) : 500
}
