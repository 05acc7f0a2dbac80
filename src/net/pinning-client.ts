import { readFile, stat } from 'node:fs/promises'
import { PinServiceError, UsageError } from '../errors.js'

// A client of the IPFS Pinning Service API v1.0.0 (ipfs/pinning-services-api-spec):
// any service that speaks it (a nixipfs mirror at http://HOST:PORT/psa, IPFS Cluster, commercial services).

/** The spec's Status. */
export type RemotePinState = 'queued' | 'pinning' | 'pinned' | 'failed'

/** The spec's Pin object. */
export interface RemotePin {
  cid: string
  name?: string
  origins?: string[]
  meta?: Record<string, string>
}

/** The spec's PinStatus object. */
export interface RemotePinStatus {
  requestid: string
  status: RemotePinState
  created: string
  pin: RemotePin
  delegates: string[]
  info?: Record<string, string>
}

/** How long one request to the service may take. */
const REQUEST_TIMEOUT_MS = 30_000

/** The access tokens in FILE: one per line, blank lines and `#` comments skipped; `warn` is told when others may read the file. */
export async function readTokenFile (path: string, flag: string, warn: (m: string) => void = () => {}): Promise<string[]> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    throw new UsageError(`${flag} ${path} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); give a file with one access token per line`)
  }
  const mode = (await stat(path)).mode & 0o777
  // A token is a password: readable by others, anyone on the machine can pin (or unpin) in its name.
  if ((mode & 0o077) !== 0) warn(`${flag} ${path} can be read by others (mode ${mode.toString(8).padStart(4, '0')}); chmod 600 ${path}`)
  const tokens = text.split('\n').map(l => l.replace(/#.*/, '').trim()).filter(l => l !== '')
  if (tokens.length === 0) throw new UsageError(`${flag} ${path} holds no token; put one access token per line`)
  const spaced = tokens.find(t => /\s/.test(t))
  if (spaced !== undefined) throw new UsageError(`${flag} ${path}: a token has no spaces (one token per line)`)
  return tokens
}

/** One pinning service, at its endpoint URL (what `ipfs pin remote service add` takes), with one access token. */
export class PinningClient {
  readonly endpoint: string

  constructor (endpoint: string, private readonly token: string, private readonly timeoutMs = REQUEST_TIMEOUT_MS) {
    this.endpoint = endpoint.replace(/\/+$/, '')
  }

  /** Pin requests matching `query` (the spec's query parameters, e.g. `{ name, match: 'partial', status: 'queued,pinning,pinned,failed', limit: '1000' }`). */
  async list (query: Record<string, string>): Promise<{ count: number, results: RemotePinStatus[] }> {
    return await this.call('GET', `/pins?${new URLSearchParams(query).toString()}`, 200) as { count: number, results: RemotePinStatus[] }
  }

  /** Asks the service to pin `pin`. */
  async add (pin: RemotePin): Promise<RemotePinStatus> {
    return await this.call('POST', '/pins', 202, pin) as RemotePinStatus
  }

  /** The pin request `requestid`. */
  async get (requestid: string): Promise<RemotePinStatus> {
    return await this.call('GET', `/pins/${encodeURIComponent(requestid)}`, 200) as RemotePinStatus
  }

  /** Replaces the pin request `requestid` by one for `pin` (blocks both share stay pinned); the new request. */
  async replace (requestid: string, pin: RemotePin): Promise<RemotePinStatus> {
    return await this.call('POST', `/pins/${encodeURIComponent(requestid)}`, 202, pin) as RemotePinStatus
  }

  /** Removes the pin request `requestid`. */
  async remove (requestid: string): Promise<void> {
    await this.call('DELETE', `/pins/${encodeURIComponent(requestid)}`, 202)
  }

  private async call (method: string, path: string, expected: number, body?: unknown): Promise<unknown> {
    const url = this.endpoint + path
    let res: Response
    try {
      res = await fetch(url, {
        method,
        headers: { authorization: `Bearer ${this.token}`, accept: 'application/json', ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.timeoutMs)
      })
    } catch (err) {
      const cause = (err as Error & { cause?: { code?: string, message?: string } }).cause
      throw new PinServiceError('ERR_PIN_SERVICE_UNREACHABLE', `the pinning service ${this.endpoint} cannot be reached (${cause?.code ?? cause?.message ?? (err as Error).message}); check --service (e.g. http://mirror.example:8080/psa) and that it runs`)
    }
    const text = await res.text()
    if (res.status === expected) {
      if (text === '') return undefined
      try { return JSON.parse(text) } catch { throw new PinServiceError('ERR_PIN_SERVICE', `${method} ${url} answered ${res.status} with something other than JSON; is ${this.endpoint} a Pinning Service API endpoint?`) }
    }
    const reason = failureOf(text)
    if (res.status === 401 || res.status === 403) {
      throw new PinServiceError('ERR_PIN_SERVICE_AUTH', `the pinning service ${this.endpoint} refused the access token (${res.status}${reason}); check --token-file`)
    }
    throw new PinServiceError('ERR_PIN_SERVICE', `${method} ${url} failed: ${res.status} ${res.statusText}${reason}`)
  }
}

/** The spec's Failure object as `: REASON: details`, or the first line of any other answer. */
function failureOf (text: string): string {
  try {
    const { error } = JSON.parse(text) as { error?: { reason?: string, details?: string } }
    if (error?.reason !== undefined) return `: ${error.reason}${error.details === undefined ? '' : `: ${error.details}`}`
  } catch {}
  const line = text.split('\n')[0]!.trim().slice(0, 200)
  return line === '' ? '' : `: ${line}`
}
