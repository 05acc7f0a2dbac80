import { RecordError } from '../errors.js'
import { openRecord, type CacheRecord } from '../ipfs/ipns.js'
import { writeFileAtomic } from '../atomic.js'
import { loadRecordBytes, recordPath } from '../repo-layout.js'

/** The newest stored record for `name`, validated (expired records are returned: the caller decides), or undefined. */
export async function loadRecord (repo: string, name: string): Promise<CacheRecord | undefined> {
  const bytes = await loadRecordBytes(repo, name)
  return bytes === undefined ? undefined : await openRecord(name, bytes, { allowExpired: true })
}

/** Stores `record` as the newest for its name; refuses to go back to a sequence already stored. */
export async function saveRecord (repo: string, record: CacheRecord): Promise<void> {
  const current = await loadRecord(repo, record.name)
  if (current !== undefined && current.sequence >= record.sequence) {
    throw new RecordError('ERR_RECORD_ROLLBACK', `refusing to store record ${record.sequence} for ${record.name}: sequence ${current.sequence} is already stored`)
  }
  await writeFileAtomic(recordPath(repo, record.name), record.bytes)
}

/** What a follower made of a record it was offered. */
export type AcceptResult = 'newer' | 'same'

/**
 * Takes a record for a followed name, as from a peer: it must be signed by
 * the name's key and point to `/ipfs/<cid>`; a lower sequence than the newest
 * stored (a rollback) or the same sequence with other contents is refused;
 * expired records are refused (the stored one stays, for its grace period).
 */
export async function acceptRecord (repo: string, name: string, bytes: Uint8Array): Promise<AcceptResult> {
  const offered = await openRecord(name, bytes)
  const current = await loadRecord(repo, name)
  if (current !== undefined) {
    if (offered.sequence < current.sequence) {
      throw new RecordError('ERR_RECORD_ROLLBACK', `IPNS record ${offered.sequence} for ${name} is older than record ${current.sequence} already seen; ignoring it (a rollback)`)
    }
    if (offered.sequence === current.sequence) {
      if (Buffer.compare(offered.bytes, current.bytes) === 0) return 'same'
      throw new RecordError('ERR_RECORD_CONFLICT', `two different IPNS records for ${name} carry sequence ${offered.sequence}; keeping the first (the publisher reused a sequence)`)
    }
  }
  await writeFileAtomic(recordPath(repo, name), offered.bytes)
  return 'newer'
}
