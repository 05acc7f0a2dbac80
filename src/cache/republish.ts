import { ipnsNameOf, type CacheRecord } from '../ipfs/ipns.js'
import type { SecretKey } from '../nix/signing.js'
import type { CommitOptions } from './commit.js'
import { updateOwnCache } from './own.js'
import { loadRecord } from './records.js'

/** Re-signs the repo's current root for `key` with the next sequence and a fresh validity. */
export async function republish (repo: string, key: SecretKey, options: CommitOptions): Promise<CacheRecord> {
  // Without blocks: the same root, signed again.
  return await updateOwnCache(repo, undefined, key, options, async own => await own.commit(await own.root()))
}

/** How often a running gateway checks whether its own record needs republishing. */
const REPUBLISH_CHECK_MS = 10 * 60 * 1000

/**
 * Keeps the repo's own record fresh while a gateway runs: whenever less than
 * half of `recordLifetimeMs` remains, the same root is signed again.
 */
export function startRepublisher (repo: string, key: SecretKey, options: CommitOptions, log: { info: (m: string) => void, warn: (m: string) => void }): { stop: () => void } {
  const name = ipnsNameOf(key.publicKey)
  const check = async (): Promise<void> => {
    const current = await loadRecord(repo, name)
    if (current === undefined) return
    if (Date.parse(current.validity) - Date.now() > options.recordLifetimeMs / 2) return
    const record = await republish(repo, key, options)
    log.info(`republished /ipns/${name} as sequence ${record.sequence}, valid until ${record.validity}`)
  }
  const run = (): void => { check().catch((err: Error) => log.warn(`republishing /ipns/${name} failed: ${err.message}`)) }
  run()
  const timer = setInterval(run, REPUBLISH_CHECK_MS)
  timer.unref()
  return { stop: () => clearInterval(timer) }
}
