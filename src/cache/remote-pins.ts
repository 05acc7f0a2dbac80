import { randomUUID } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { CID } from 'multiformats/cid'
import { writeFileAtomic } from '../atomic.js'
import { RemotePinsError } from '../errors.js'
import { remotePinsPath } from '../repo-layout.js'

// The pin requests of the IPFS Pinning Service API (ipfs/pinning-services-api-spec v1.0.0),
// kept in `<repo>/remote-pins.json`. Their CIDs are gc roots, whatever their status.

/** Where a pin request stands (the spec's Status). */
export type PinState = 'queued' | 'pinning' | 'pinned' | 'failed'

export const PIN_STATES: readonly PinState[] = ['queued', 'pinning', 'pinned', 'failed']

/** What a client asks to pin (the spec's Pin object). */
export interface PinRequest {
  cid: string
  name?: string
  origins?: string[]
  meta?: Record<string, string>
}

/** A pin request as stored: the spec's PinStatus without `delegates` (the node's addresses, added when answering). */
export interface StoredPin {
  requestid: string
  status: PinState
  /** RFC 3339 */
  created: string
  pin: PinRequest
  info?: Record<string, string>
}

/** How names are matched in a listing (the spec's TextMatchingStrategy). */
export type NameMatch = 'exact' | 'iexact' | 'partial' | 'ipartial'

/** A listing's filters (the spec's query parameters of `GET /pins`). */
export interface PinQuery {
  cid?: string[]
  name?: string
  match?: NameMatch
  /** default: pinned only, as the spec says */
  status?: PinState[]
  before?: Date
  after?: Date
  /** default 10, at most 1000 */
  limit?: number
  meta?: Record<string, string>
}

interface PinsFile { version: 1, pins: StoredPin[] }

/** The CIDs of every pin request in the repo (any status): what gc and the evictor keep. */
export async function remotePinCids (repo: string): Promise<CID[]> {
  return (await readPinsFile(repo)).map(p => CID.parse(p.pin.cid))
}

async function readPinsFile (repo: string): Promise<StoredPin[]> {
  let text: string
  try {
    text = await readFile(remotePinsPath(repo), 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw err
  }
  try {
    const file = JSON.parse(text) as PinsFile
    if (file.version !== 1 || !Array.isArray(file.pins)) throw new Error('not a version 1 pins file')
    for (const p of file.pins) CID.parse(p.pin.cid)
    return file.pins
  } catch (err) {
    // gc must not guess: a pin it cannot read could be the only thing keeping blocks alive.
    throw new RemotePinsError(`${remotePinsPath(repo)} cannot be read (${(err as Error).message}); restore it from a backup or remove it (its pins are then lost)`)
  }
}

/** True when `name` matches `wanted` under `match`. */
function nameMatches (name: string | undefined, wanted: string, match: NameMatch): boolean {
  if (name === undefined) return false
  switch (match) {
    case 'exact': return name === wanted
    case 'iexact': return name.toLowerCase() === wanted.toLowerCase()
    case 'partial': return name.includes(wanted)
    case 'ipartial': return name.toLowerCase().includes(wanted.toLowerCase())
  }
}

/**
 * The pin requests of one node, in memory and in the repo: every change is
 * written (atomically) before it is answered, so a pin acknowledged is a pin
 * kept across restarts. One process owns the file (the running node).
 */
export class RemotePinStore {
  private saving: Promise<void> = Promise.resolve()

  private constructor (private readonly repo: string, private readonly pins: Map<string, StoredPin>) {}

  /** Opens the repo's pins; requests that were being fetched when the node stopped are queued again. */
  static async open (repo: string): Promise<RemotePinStore> {
    const pins = await readPinsFile(repo)
    for (const p of pins) if (p.status === 'pinning') p.status = 'queued'
    return new RemotePinStore(repo, new Map(pins.map(p => [p.requestid, p])))
  }

  /** The pin request `requestid`, if any. */
  get (requestid: string): StoredPin | undefined {
    return this.pins.get(requestid)
  }

  /** Every pin request, oldest first. */
  all (): StoredPin[] {
    return [...this.pins.values()]
  }

  /** The pin requests that match `query`, newest first: how many match, and at most `limit` of them. */
  list (query: PinQuery = {}): { count: number, results: StoredPin[] } {
    const status = new Set(query.status ?? ['pinned'])
    const cids = query.cid === undefined ? undefined : new Set(query.cid.map(c => normalCid(c)))
    const matching = this.all().filter(p =>
      status.has(p.status) &&
      (cids === undefined || cids.has(normalCid(p.pin.cid))) &&
      (query.name === undefined || nameMatches(p.pin.name, query.name, query.match ?? 'exact')) &&
      (query.before === undefined || Date.parse(p.created) < query.before.getTime()) &&
      (query.after === undefined || Date.parse(p.created) > query.after.getTime()) &&
      (query.meta === undefined || Object.entries(query.meta).every(([k, v]) => p.pin.meta?.[k] === v))
    ).reverse()
    return { count: matching.length, results: matching.slice(0, query.limit ?? 10) }
  }

  /** Takes a new pin request (queued) and writes it down. */
  async add (pin: PinRequest): Promise<StoredPin> {
    const stored = this.created(pin)
    this.pins.set(stored.requestid, stored)
    await this.save()
    return stored
  }

  /** Replaces `requestid` by a new request for `pin` in one write (blocks both share stay kept); undefined when there is no such request. */
  async replace (requestid: string, pin: PinRequest): Promise<StoredPin | undefined> {
    if (!this.pins.has(requestid)) return undefined
    const stored = this.created(pin)
    this.pins.delete(requestid)
    this.pins.set(stored.requestid, stored)
    await this.save()
    return stored
  }

  /** Removes `requestid`; false when there is no such request. */
  async remove (requestid: string): Promise<boolean> {
    if (!this.pins.delete(requestid)) return false
    await this.save()
    return true
  }

  /** Sets a request's status (and details), written down; a request removed meanwhile is left alone. */
  async setStatus (requestid: string, status: PinState, details?: string): Promise<void> {
    const p = this.pins.get(requestid)
    if (p === undefined) return
    p.status = status
    p.info = details === undefined ? undefined : { status_details: details }
    await this.save()
  }

  /** Sets a request's progress details in memory only (they change every second while it is fetched). */
  progress (requestid: string, details: string): void {
    const p = this.pins.get(requestid)
    if (p !== undefined) p.info = { status_details: details }
  }

  /** The oldest queued request, if any. */
  nextQueued (): StoredPin | undefined {
    return this.all().find(p => p.status === 'queued')
  }

  private created (pin: PinRequest): StoredPin {
    // Strictly increasing creation times: listings page with `before`, which must not skip a request.
    let created = new Date()
    const last = this.all().at(-1)
    if (last !== undefined && Date.parse(last.created) >= created.getTime()) created = new Date(Date.parse(last.created) + 1)
    return { requestid: randomUUID(), status: 'queued', created: created.toISOString(), pin: { ...pin } }
  }

  private async save (): Promise<void> {
    // Writes in order; each writes the state as it is when it runs (later changes included).
    const write = async (): Promise<void> => await writeFileAtomic(remotePinsPath(this.repo), JSON.stringify({ version: 1, pins: this.all() } satisfies PinsFile, null, 1) + '\n')
    this.saving = this.saving.then(write, write)
    await this.saving
  }
}

/** A CID as CIDv1 text, so that a CIDv0 and its CIDv1 name one pin; text that is no CID stays as it is. */
function normalCid (text: string): string {
  try { return CID.parse(text).toV1().toString() } catch { return text }
}
