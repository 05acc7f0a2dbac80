import { once } from 'node:events'
import type { ServerResponse } from 'node:http'
import { HttpError } from './http-errors.js'

/** How long a response may wait for its client to take more bytes before it is cut: Nix reads as fast as it can unpack. */
export const STALL_TIMEOUT_MS = 30_000

/** Bytes that responses waiting for their clients may hold at once; beyond it the one waiting longest is cut… */
const STALLED_BYTES_BUDGET = 64 * 1024 * 1024
/** …once it has waited this long (a client reading at any speed drains far more often, so busy clients are not cut). */
const SHED_AFTER_MS = 2_000

/** Responses waiting for their clients now, longest-waiting first (a Map keeps insertion order): the bytes they hold, since when. */
const stalled = new Map<ServerResponse, { bytes: number, since: number }>()
let stalledBytes = 0
let cut = 0

/** Responses cut so far because their clients took nothing (for the metrics). */
export function stalledResponsesCut (): number { return cut }

/**
 * Writes `chunk` to `res` and, when the client's buffer is full, waits until
 * it drains. A client that takes nothing for STALL_TIMEOUT_MS, or that waits
 * longest (at least SHED_AFTER_MS) while waiting responses hold more than
 * their budget, has its response cut (destroyed), so clients that never read
 * hold neither memory nor a connection for long. Rejects once the response
 * is closed.
 */
export async function writeDrained (res: ServerResponse, chunk: Uint8Array): Promise<void> {
  if (res.write(chunk)) {
    // Every block is read, hashed and written synchronously: without a turn of the event loop here, a response
    // the client's kernel buffers still take (megabytes each) starves new clients and every other response.
    await new Promise(resolve => setImmediate(resolve))
    return
  }
  if (res.destroyed) throw gone(res)
  const abort = new AbortController()
  const closed = (): void => abort.abort()
  res.once('close', closed)
  const timer = setTimeout(() => { cut++; res.destroy(new HttpError('ERR_CLIENT_STALLED', `the client took nothing for ${STALL_TIMEOUT_MS / 1000} s; response cut`)) }, STALL_TIMEOUT_MS)
  const now = Date.now()
  stalled.set(res, { bytes: res.writableLength, since: now })
  stalledBytes += res.writableLength
  for (const [longest, { since }] of stalled) {
    if (stalledBytes <= STALLED_BYTES_BUDGET || now - since < SHED_AFTER_MS) break
    cut++
    longest.destroy(new HttpError('ERR_CLIENT_STALLED', `the client took nothing for ${Math.round((now - since) / 1000)} s while waiting responses held more than ${STALLED_BYTES_BUDGET / 2 ** 20} MiB; response cut`))
    forget(longest)
  }
  try {
    await once(res, 'drain', { signal: abort.signal })
  } catch {
    throw gone(res)
  } finally {
    clearTimeout(timer)
    res.off('close', closed)
    forget(res)
  }
}

/** Why a response was closed while it waited: cut here for stalling, or its client went away. */
function gone (res: ServerResponse): Error {
  return res.errored instanceof HttpError ? res.errored : new HttpError('ERR_BAD_REQUEST', 'the client went away')
}

function forget (res: ServerResponse): void {
  stalledBytes -= stalled.get(res)?.bytes ?? 0
  stalled.delete(res)
}
