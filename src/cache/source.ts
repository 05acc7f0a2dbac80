import { stat } from 'node:fs/promises'
import { unixfs } from '@helia/unixfs'
import type { PackStore } from '../ipfs/pack-store.js'
import { loadIndex, type CacheIndex } from './index.js'
import { loadRecord, recordPath } from './records.js'

/** Supplies the gateway with the index of the cache it serves, kept in step with the record. */
export interface IndexSource {
  /** the current index, or undefined while nothing has been published */
  current: () => Promise<CacheIndex | undefined>
}

/** How often, at most, the record file is checked for a change. */
const RECHECK_MS = 500

/**
 * Serves the cache that the repo itself publishes under IPNS name `name`,
 * reloading the index whenever `publish` stores a new record.
 */
export function repoIndexSource (repo: string, blocks: PackStore, name: string): IndexSource {
  const fs = unixfs({ blockstore: blocks })
  let index: CacheIndex | undefined
  let seenMtimeMs = -1
  let checkedAt = 0
  let loading: Promise<CacheIndex | undefined> | undefined

  async function reload (): Promise<CacheIndex | undefined> {
    const mtimeMs = await stat(recordPath(repo, name)).then(s => s.mtimeMs, () => 0)
    if (mtimeMs === seenMtimeMs) return index
    const record = await loadRecord(repo, name)
    if (record !== undefined && record.root.toString() !== index?.root.toString()) {
      index = await loadIndex(fs, record.root)
    }
    seenMtimeMs = mtimeMs
    return index
  }

  return {
    current: async () => {
      const now = Date.now()
      if (now - checkedAt < RECHECK_MS) return index
      checkedAt = now
      // One reload at a time; concurrent requests share it.
      loading ??= reload().finally(() => { loading = undefined })
      return await loading
    }
  }
}
