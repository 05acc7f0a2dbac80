import { readFile } from 'node:fs/promises'
import { CID } from 'multiformats/cid'
import { PinsError } from '../errors.js'
import { writeFileAtomic } from '../atomic.js'
import { pinsPath } from '../repo-layout.js'

/** The repo's pinned CIDs, in file order (none without a pins file). */
export async function readPins (repo: string): Promise<CID[]> {
  let text: string
  try {
    text = await readFile(pinsPath(repo), 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw err
  }
  const cids: CID[] = []
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.replace(/#.*/, '').trim()
    if (line === '') continue
    try {
      cids.push(CID.parse(line))
    } catch {
      // gc must not guess: a pin it cannot read could be the only thing keeping blocks alive.
      throw new PinsError(`${pinsPath(repo)} line ${i + 1}: ${JSON.stringify(line)} is not a CID; fix or remove that line`)
    }
  }
  return cids
}

async function writePins (repo: string, cids: CID[]): Promise<void> {
  await writeFileAtomic(pinsPath(repo), cids.map(c => `${c.toString()}\n`).join(''))
}

/**
 * Adds CIDs to the pins (atomically; ones already pinned stay once). Not
 * safe against another process pinning at the same moment: callers that may
 * race (mirrors) hold the repo lock.
 */
export async function pin (repo: string, cids: Iterable<CID>): Promise<void> {
  const current = await readPins(repo)
  const seen = new Set(current.map(c => c.toString()))
  const added = [...cids].filter(c => { const k = c.toString(); if (seen.has(k)) return false; seen.add(k); return true })
  if (added.length > 0) await writePins(repo, [...current, ...added])
}

/** Removes CIDs from the pins (atomically; the same caveat as `pin`). */
export async function unpin (repo: string, cids: Iterable<CID>): Promise<void> {
  const drop = new Set([...cids].map(c => c.toString()))
  const current = await readPins(repo)
  const rest = current.filter(c => !drop.has(c.toString()))
  if (rest.length !== current.length) await writePins(repo, rest)
}
