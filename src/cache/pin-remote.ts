import { CID } from 'multiformats/cid'
import { NotInCacheError, PinServiceError } from '../errors.js'
import type { BlockGetter } from '../ipfs/block.js'
import type { PinningClient, RemotePinStatus } from '../net/pinning-client.js'
import { cacheClosure, storeHashOf } from './closure.js'
import { openIndex } from './index.js'
import { loadRecord } from './records.js'

/** One CID to keep pinned on a service, under a name that says what it is. */
export interface PinTarget { cid: CID, name: string }

export interface PushOptions {
  client: PinningClient
  /** what must be pinned */
  wanted: PinTarget[]
  /** pins on the service whose name starts with this are this cache's: those not wanted are replaced or removed */
  prefix: string
  /** where the service can fetch the blocks (the node's own multiaddrs, ending in /p2p/<id>) */
  origins: string[]
  /** how long to wait for `pinned` */
  timeoutMs: number
  /** how often the pending requests are asked for (default 1 s) */
  pollMs?: number
  onProgress: (line: string) => void
}

export interface PushResult {
  /** the requests, all pinned */
  pinned: RemotePinStatus[]
  added: number
  replaced: number
  /** already pinned: left as they were */
  kept: number
  removed: number
}

/** The name prefix of the pins of the cache `name` on a service. */
export const pinNamePrefix = (name: string): string => `nixipfs ${name}`

/**
 * What to pin for the cache `name` the repo holds a record for: its root, or
 * with `closures` the narinfo and NAR of every path in their closures (as
 * the cache's narinfos describe them).
 */
export async function pinTargets (repo: string, blocks: BlockGetter, name: string, closures: string[]): Promise<PinTarget[]> {
  const record = await loadRecord(repo, name)
  if (record === undefined) throw new NotInCacheError(`the repo ${repo} holds no record of /ipns/${name}; publish something first (nixipfs publish PATH)`)
  const prefix = pinNamePrefix(name)
  if (closures.length === 0) return [{ cid: record.root, name: prefix }]
  const index = await openIndex(blocks, record.root)
  return (await cacheClosure(index, closures)).flatMap(e => [
    { cid: e.narInfo, name: `${prefix} ${storeHashOf(e.storePath)}.narinfo` },
    { cid: e.nar, name: `${prefix} nar/${e.nar.toString()}.nar` }
  ])
}

/** This node's addresses as its gateway at `gatewayUrl` names them for `root` (/routing/v1/providers), each ending in /p2p/<id>; empty when the gateway does not answer. */
export async function ownOrigins (gatewayUrl: string, root: CID, warn: (m: string) => void): Promise<string[]> {
  try {
    const res = await fetch(`${gatewayUrl.replace(/\/+$/, '')}/routing/v1/providers/${root.toString()}`, { headers: { accept: 'application/json' }, signal: AbortSignal.timeout(5_000) })
    if (!res.ok) throw new Error(`${res.status} ${res.statusText}`)
    const { Providers } = await res.json() as { Providers?: Array<{ ID?: string, Addrs?: string[] }> | null }
    const origins = (Providers ?? []).flatMap(p => (p.Addrs ?? []).map(a => a.includes('/p2p/') ? a : `${a}/p2p/${p.ID ?? ''}`))
    if (origins.length === 0) warn(`the gateway at ${gatewayUrl} does not hold ${root.toString()}; the service gets no origins and must find the blocks by itself`)
    return [...new Set(origins)].slice(0, 20)
  } catch (err) {
    const cause = (err as Error & { cause?: { code?: string } }).cause?.code
    warn(`asking the gateway at ${gatewayUrl} for this node's addresses failed (${cause ?? (err as Error).message}); start it (nixipfs gateway) or give --origin MULTIADDR, else the service must find the blocks by itself`)
    return []
  }
}

const v1 = (cid: string): string => { try { return CID.parse(cid).toV1().toString() } catch { return cid } }

/** Every pin of the service whose name starts with `prefix`, whatever its status. */
async function existingPins (client: PinningClient, prefix: string): Promise<RemotePinStatus[]> {
  const found = new Map<string, RemotePinStatus>()
  let before: string | undefined
  for (;;) {
    const page = await client.list({ name: prefix, match: 'partial', status: 'queued,pinning,pinned,failed', limit: '1000', ...(before === undefined ? {} : { before }) })
    for (const p of page.results) found.set(p.requestid, p)
    if (page.results.length === 0 || found.size >= page.count || page.results.length >= page.count) break
    before = page.results.at(-1)!.created
  }
  return [...found.values()].filter(p => p.pin.name?.startsWith(prefix) === true)
}

/**
 * Makes the service pin exactly `wanted` under `prefix`: pins already there
 * stay, stale ones are replaced by new ones (so shared blocks stay pinned),
 * new ones are added; waits until all are pinned, then removes the stale
 * pins left over. Throws PinServiceError when one fails or the time is up.
 */
export async function pushPins (options: PushOptions): Promise<PushResult> {
  const { client, onProgress } = options
  const existing = await existingPins(client, options.prefix)
  const pending: RemotePinStatus[] = []
  const stale = [...existing]
  let kept = 0
  let added = 0
  let replaced = 0
  const toPin: PinTarget[] = []
  for (const w of options.wanted) {
    const i = stale.findIndex(p => v1(p.pin.cid) === v1(w.cid.toString()) && p.pin.name === w.name && p.status !== 'failed')
    if (i < 0) { toPin.push(w); continue }
    const [same] = stale.splice(i, 1)
    if (same!.status === 'pinned') kept++
    pending.push(same!)
  }
  /** what each replacing request replaced: asked for again should the new one fail, so the service keeps the last good pin */
  const replacedBy = new Map<string, RemotePinStatus>()
  for (const w of toPin) {
    const pin = { cid: w.cid.toString(), name: w.name, origins: options.origins }
    const old = stale.shift()
    if (old === undefined) {
      pending.push(await client.add(pin))
      added++
      onProgress(`${w.cid.toString()}: pin requested (${w.name})`)
    } else {
      const request = await client.replace(old.requestid, pin)
      pending.push(request)
      if (old.status === 'pinned') replacedBy.set(request.requestid, old)
      replaced++
      onProgress(`${w.cid.toString()}: replaces ${old.pin.cid} (${w.name})`)
    }
  }
  let pinned: RemotePinStatus[]
  try {
    pinned = await waitPinned(options, pending)
  } catch (err) {
    const failed = (err as { requestid?: string }).requestid
    const old = failed === undefined ? undefined : replacedBy.get(failed)
    if (old === undefined) throw err
    // The replaced pin was good: ask for it again rather than leave the service with nothing.
    await client.add({ ...old.pin, origins: options.origins })
    onProgress(`${old.pin.cid}: the pin it replaced is requested again (${old.pin.name ?? ''})`)
    throw new PinServiceError('ERR_PIN_FAILED', `${(err as Error).message}; the pin it replaced (${old.pin.cid}) was requested again`)
  }
  for (const old of stale) {
    await client.remove(old.requestid)
    onProgress(`${old.pin.cid}: old pin removed (${old.pin.name ?? ''})`)
  }
  return { pinned, added, replaced, kept, removed: stale.length }
}

/** Polls the requests until every one is pinned; progress when a status or its details change. */
async function waitPinned (options: PushOptions, requests: RemotePinStatus[]): Promise<RemotePinStatus[]> {
  const deadline = Date.now() + options.timeoutMs
  const said = new Map<string, string>()
  let current = requests
  for (;;) {
    for (const p of current) {
      const line = `${p.pin.cid}: ${p.status}${p.info?.status_details === undefined ? '' : ` (${p.info.status_details})`}`
      if (said.get(p.requestid) !== line) { said.set(p.requestid, line); options.onProgress(line) }
      if (p.status === 'failed') {
        throw Object.assign(new PinServiceError('ERR_PIN_FAILED', `the pinning service ${options.client.endpoint} failed to pin ${p.pin.cid}${p.info?.status_details === undefined ? '' : `: ${p.info.status_details}`}; check that it can reach the origins (${options.origins.join(', ') || 'none given'})`), { requestid: p.requestid })
      }
    }
    if (current.every(p => p.status === 'pinned')) return current
    if (Date.now() >= deadline) {
      const waiting = current.filter(p => p.status !== 'pinned')
      throw new PinServiceError('ERR_PIN_TIMEOUT', `${waiting.length} pin(s) not pinned after ${Math.round(options.timeoutMs / 1000)} s (${waiting.map(p => `${p.pin.cid}: ${p.status}`).join(', ')}); they stay requested: run again later, or raise --timeout`)
    }
    await new Promise(resolve => setTimeout(resolve, options.pollMs ?? 1000))
    current = await Promise.all(current.map(async p => p.status === 'pinned' ? p : await options.client.get(p.requestid)))
  }
}
