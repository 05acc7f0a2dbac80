import type { DurableWrites } from '../ipfs/blocks.js'
import { walkDag } from '../ipfs/dag.js'
import type { NetworkBlocks } from '../net/fetcher.js'
import { cacheClosure } from './closure.js'
import { openIndex } from './index.js'
import { loadRecord } from './records.js'

/**
 * Fetches and keeps every block of the closures of `paths` in the followed
 * cache `name` (as its newest record describes it), durably in `local`;
 * returns how many store paths that took, or undefined when there is nothing to pin.
 */
export async function pinClosures (repo: string, local: DurableWrites, blocks: NetworkBlocks, name: string, paths: string[]): Promise<number | undefined> {
  const record = await loadRecord(repo, name)
  if (record === undefined || paths.length === 0) return undefined
  const epoch = local.writeEpoch
  const index = await openIndex(blocks, record.root)
  let pinned = 0
  for (const { nar } of await cacheClosure(index, paths)) {
    await blocks.prefetch(nar)
    for await (const _ of walkDag(blocks, nar)) { /* fetches and keeps every block */ }
    pinned++
  }
  await local.sync(epoch)
  return pinned
}
