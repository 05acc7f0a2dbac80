import type { CID } from 'multiformats/cid'
import { RecordError } from '../errors.js'
import { ipnsNameOf, signRecord, type CacheRecord } from '../ipfs/ipns.js'
import type { SecretKey } from '../nix/signing.js'
import { ledgerPath, ledgerSequence, recordSequence } from './ledger.js'
import { saveRecord } from './records.js'

export interface CommitOptions {
  recordLifetimeMs: number
  /** publish on top of a repo that is behind the ledger (restored from a backup) */
  continueSequence?: boolean
}

/**
 * The sequence the next record for `key` gets, given the repo's current
 * record; refuses when the ledger knows a newer one (a repo restored from an
 * old backup) unless `continueSequence`.
 */
export async function nextSequence (key: SecretKey, current: CacheRecord | undefined, continueSequence = false): Promise<bigint> {
  const name = ipnsNameOf(key.publicKey)
  const base = current?.sequence ?? 0n
  const signed = await ledgerSequence(name)
  if (signed > base && !continueSequence) {
    throw new RecordError('ERR_RECORD_BEHIND', `the repo's newest record for ${name} has sequence ${base}, but sequence ${signed} was already signed for this key (see ${ledgerPath(name)}): the repo looks restored from an old backup. Restore the newer repo, or pass --continue-sequence to publish this repo's content as sequence ${signed + 1n}`)
  }
  return (signed > base ? signed : base) + 1n
}

/** Signs and stores the record that makes `root` current, then notes its sequence in the ledger. */
export async function commitRoot (repo: string, key: SecretKey, root: CID, current: CacheRecord | undefined, options: CommitOptions): Promise<CacheRecord> {
  const sequence = await nextSequence(key, current, options.continueSequence)
  const record = await signRecord(key.seed, root, sequence, options.recordLifetimeMs)
  await saveRecord(repo, record)
  // After the record: a crash in between leaves the ledger behind, which the next publish tolerates.
  await recordSequence(record.name, sequence)
  return record
}
