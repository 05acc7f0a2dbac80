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

/** Blocks read ahead of the one being yielded, so storage or network round trips overlap. */
const READ_AHEAD = 16

/**
 * Yields every block reachable from `root` once, depth first in link order
 * (the order of a trustless gateway's `order=dfs` CAR), each checked against
 * its CID.
 */
export async function * walkDag (blocks: BlockGetter, root: CID, options: WalkOptions = {}): AsyncGenerator<{ cid: CID, bytes: Uint8Array }> {
  const own = new Set<string>()
  const seen = options.visited ?? { has: (cid: CID) => own.has(cid.toString()), add: (cid: CID) => { own.add(cid.toString()) } }
  const stack: CID[] = [root]
  // Reads started for the CIDs next on the stack (errors kept as values until their turn).
  const ahead = new Map<string, Promise<Uint8Array | Error>>()
  const read = (cid: CID): Promise<Uint8Array | Error> => getVerified(blocks, cid, options).catch((err: Error) => err)
  try {
    while (stack.length > 0) {
      options.signal?.throwIfAborted()
      const cid = stack.pop()!
      const key = cid.toString()
      const started = ahead.get(key)
      ahead.delete(key)
      if (seen.has(cid)) continue
      seen.add(cid)
      for (let i = stack.length - 1; i >= 0 && i >= stack.length - READ_AHEAD; i--) {
        const next = stack[i]!
        if (!seen.has(next) && !ahead.has(next.toString())) ahead.set(next.toString(), read(next))
      }
      const bytes = await (started ?? read(cid))
      if (bytes instanceof Error) {
        if (options.onMissing === undefined) throw bytes
        options.onMissing(cid, bytes)
        continue
      }
      yield { cid, bytes }
      const links = linksOf(cid, bytes)
      for (let i = links.length - 1; i >= 0; i--) {
        const link = links[i]!
        if (options.skipLink?.(link.name, cid, link.cid) !== true) stack.push(link.cid)
      }
    }
  } finally {
    await Promise.allSettled(ahead.values())
  }
}
