import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { writeFileAtomic } from '../repo.js'
import type { Dispute } from './quorum.js'

/** A dispute as recorded: what was signed, and when this node first and last saw it. */
export interface RecordedDispute extends Dispute {
  firstSeen: string
  lastSeen: string
}

const dir = (repo: string): string => join(repo, 'disputes')
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
