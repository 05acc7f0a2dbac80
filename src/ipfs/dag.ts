import * as dagPb from '@ipld/dag-pb'
import type { CID } from 'multiformats/cid'
import { IntegrityError } from '../errors.js'
import { DAG_PB_CODE, RAW_CODE, getVerified, type BlockGetter } from './block.js'

/** The links of a block, in order (none for raw leaves); throws for codecs nixipfs does not write. */
export function linksOf (cid: CID, bytes: Uint8Array): Array<{ name?: string, cid: CID }> {
  if (cid.code === RAW_CODE) return []
  if (cid.code !== DAG_PB_CODE) throw new IntegrityError(`block ${cid.toString()} has codec 0x${cid.code.toString(16)}; nixipfs only follows dag-pb and raw`)
  return dagPb.decode(bytes).Links.map(l => ({ name: l.Name, cid: l.Hash }))
}

export interface WalkOptions {
  /** links of a dag-pb node to leave out (e.g. a cache root's `nar` directory); the node itself is still yielded */
  skipLink?: (name: string | undefined, parent: CID, cid: CID) => boolean
  /** the set of blocks already visited, instead of the walk's own Set of CID strings: lets several walks share one, or a compact one serve a million blocks */
  visited?: { has: (cid: CID) => boolean, add: (cid: CID) => void }
  /** what to do when a block is missing or corrupt: throw (default) or leave that subtree out */
  onMissing?: (cid: CID, err: Error) => void
  signal?: AbortSignal
}

/**
 * Yields every block reachable from `root` once, depth first in link order
 * (the order of a trustless gateway's `order=dfs` CAR), each checked against
 * its CID.
 */
export async function * walkDag (blocks: BlockGetter, root: CID, options: WalkOptions = {}): AsyncGenerator<{ cid: CID, bytes: Uint8Array }> {
  const own = new Set<string>()
  const seen = options.visited ?? { has: (cid: CID) => own.has(cid.toString()), add: (cid: CID) => { own.add(cid.toString()) } }
  const stack: CID[] = [root]
  while (stack.length > 0) {
    options.signal?.throwIfAborted()
    const cid = stack.pop()!
    if (seen.has(cid)) continue
    seen.add(cid)
    let bytes: Uint8Array
    try {
      bytes = await getVerified(blocks, cid, options)
    } catch (err) {
      if (options.onMissing === undefined) throw err
      options.onMissing(cid, err as Error)
      continue
    }
    yield { cid, bytes }
    const links = linksOf(cid, bytes)
    for (let i = links.length - 1; i >= 0; i--) {
      const link = links[i]!
      if (options.skipLink?.(link.name, cid, link.cid) !== true) stack.push(link.cid)
    }
  }
}
