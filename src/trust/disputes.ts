import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { unixfs } from '@helia/unixfs'
import { DISPUTES_DIR } from '../cache/directory.js'
import { loadRecord } from '../cache/records.js'
import { readSmallFile } from '../ipfs/file-dag.js'
import { DirNodeCache, lookupEntry } from '../ipfs/hamt.js'
import type { BlockGetter } from '../ipfs/block.js'
import type { UnixfsBlocks } from '../ipfs/blocks.js'
import { writeFileAtomic } from '../atomic.js'
import { disputesDir, recordNames } from '../repo-layout.js'
import type { Dispute } from '../cache/union.js'
import type { CID } from 'multiformats/cid'
import { listHeard } from './heard.js'
import { openStatement, type DisputeStatement } from './statement.js'

/** A dispute as recorded: what was signed, and when this node first and last saw it. */
export interface RecordedDispute extends Dispute {
  firstSeen: string
  lastSeen: string
}

const dir = disputesDir
const fileOf = (repo: string, storePath: string): string => join(dir(repo), `${storePath.slice(storePath.lastIndexOf('/') + 1, storePath.lastIndexOf('/') + 33)}.json`)

const sameGroups = (a: Dispute, b: Dispute): boolean => JSON.stringify(a.groups) === JSON.stringify(b.groups)

/** Records (or refreshes) a dispute in `<repo>/disputes/<hash>.json`; returns true when it is new or changed. */
export async function recordDispute (repo: string, dispute: Dispute, now = new Date()): Promise<boolean> {
  const path = fileOf(repo, dispute.storePath)
  const old = await readFile(path, 'utf8').then(t => JSON.parse(t) as RecordedDispute, () => undefined)
  const changed = old === undefined || !sameGroups(old, dispute)
  // Rewritten at most hourly while unchanged, so a busy path does not cost a write per request.
  if (!changed && now.getTime() - Date.parse(old.lastSeen) < 3_600_000) return false
  const recorded: RecordedDispute = { ...dispute, firstSeen: changed ? now.toISOString() : old.firstSeen, lastSeen: now.toISOString() }
  await writeFileAtomic(path, JSON.stringify(recorded, null, 2) + '\n')
  return changed
}

/** Every dispute recorded in the repo, newest first. */
export async function listDisputes (repo: string): Promise<RecordedDispute[]> {
  const files = (await readdir(dir(repo)).catch(() => [] as string[])).filter(f => f.endsWith('.json'))
  const all = await Promise.all(files.map(async f => JSON.parse(await readFile(join(dir(repo), f), 'utf8')) as RecordedDispute))
  return all.sort((a, b) => b.lastSeen.localeCompare(a.lastSeen))
}

/** Largest dispute statement read (a few hundred bytes per signed NAR). */
const MAX_STATEMENT_BYTES = 1024 * 1024

/** A dispute statement a followed (or the own) cache published, checked against that cache's key. */
export interface PublishedDispute extends DisputeStatement {
  /** IPNS name of the cache that published it */
  cache: string
}

/** The texts of the dispute statements under `disputes/` of the cache at `root`, as far as its blocks are local (none when it has none). */
export async function cacheStatements (blocks: UnixfsBlocks & BlockGetter, root: CID): Promise<string[]> {
  const dir = await lookupEntry(blocks, root, DISPUTES_DIR, new DirNodeCache())
  if (dir === undefined) return []
  const texts: string[] = []
  for await (const entry of unixfs({ blockstore: blocks }).ls(dir)) {
    texts.push(Buffer.from(await readSmallFile(blocks, entry.cid, MAX_STATEMENT_BYTES, 'dispute statement')).toString('utf8'))
  }
  return texts
}

/**
 * Every signed dispute statement under `disputes/` of every cache the repo
 * holds a record for (own and followed), as far as their blocks are local;
 * statements that do not check out are reported through `warn` and left out.
 */
export async function listPublishedDisputes (repo: string, blocks: UnixfsBlocks & BlockGetter, warn: (m: string) => void = () => {}): Promise<PublishedDispute[]> {
  const names = await recordNames(repo)
  const found: PublishedDispute[] = []
  for (const name of names) {
    try {
      const record = await loadRecord(repo, name)
      if (record === undefined) continue
      for (const text of await cacheStatements(blocks, record.root)) found.push({ cache: name, ...openStatement(text, name) })
    } catch (err) {
      // One cache's bad or missing statements must not hide the others'.
      warn(`/ipns/${name}: ${(err as Error).message}`)
    }
  }
  return found
}

/** Disputes as `nixipfs disputes` and `GET /disputes` show them: recorded by this node's quorum checks, and rebuilds that builders published or announced. */
export type AnyDispute = ({ kind: 'quorum' } & RecordedDispute) | ({ kind: 'rebuild', via?: 'network' } & PublishedDispute)

/** Every dispute this repo knows of: a statement both published in a cache and heard on the network is listed once. */
export async function allDisputes (repo: string, blocks: UnixfsBlocks & BlockGetter, warn?: (m: string) => void): Promise<AnyDispute[]> {
  const published = await listPublishedDisputes(repo, blocks, warn)
  const idOf = (d: DisputeStatement): string => `${d.by} ${d.storePath} ${d.date}`
  const seen = new Set(published.map(idOf))
  // Heard only: signed by that key, but not (yet) seen in its cache.
  const heard = (await listHeard(repo)).reverse().filter(h => !seen.has(idOf(h.statement))).map(h => ({ cache: h.name, ...h.statement, via: 'network' as const }))
  return [
    ...(await listDisputes(repo)).map(d => ({ kind: 'quorum' as const, ...d })),
    ...published.map(d => ({ kind: 'rebuild' as const, ...d })),
    ...heard.map(d => ({ kind: 'rebuild' as const, ...d }))
  ]
}
