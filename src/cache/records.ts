import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { RecordError } from '../errors.js'
import { openRecord, type CacheRecord } from '../ipfs/ipns.js'
import { writeFileAtomic } from '../repo.js'

/** File holding the newest record the repo has for an IPNS name. */
export function recordPath (repo: string, name: string): string {
  return join(repo, 'records', `${name}.ipns`)
}

/** The newest stored record for `name`, validated (expired records are returned: the caller decides), or undefined. */
export async function loadRecord (repo: string, name: string): Promise<CacheRecord | undefined> {
  let bytes: Uint8Array
  try {
    bytes = await readFile(recordPath(repo, name))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
  return await openRecord(name, bytes, { allowExpired: true })
}

/** Stores `record` as the newest for its name; refuses to go back to a sequence already stored. */
export async function saveRecord (repo: string, record: CacheRecord): Promise<void> {
  const current = await loadRecord(repo, record.name)
  if (current !== undefined && current.sequence >= record.sequence) {
    throw new RecordError('ERR_RECORD_ROLLBACK', `refusing to store record ${record.sequence} for ${record.name}: sequence ${current.sequence} is already stored`)
  }
  await writeFileAtomic(recordPath(repo, record.name), record.bytes)
}
