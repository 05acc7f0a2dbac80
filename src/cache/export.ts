import type { CID } from 'multiformats/cid'
import type { BlockGetter } from '../ipfs/block.js'
import type { CarBlock } from '../ipfs/car.js'
import { walkDag } from '../ipfs/dag.js'
import { cacheClosure } from './closure.js'
import { openIndex } from './index.js'

/** What goes into a CAR: its roots and its blocks, streamed. */
export interface CarSelection {
  roots: CID[]
  blocks: AsyncIterable<CarBlock>
}

/**
 * Every block reachable from `roots`, each once, DAG after DAG depth first.
 * Remembers the CIDs sent (not the blocks): NARs of one closure often share
 * chunks, and a CAR needs each block only once.
 */
export async function * walkDags (blocks: BlockGetter, roots: CID[]): AsyncGenerator<CarBlock> {
  const sent = new Set<string>()
  for (const root of roots) {
    for await (const block of walkDag(blocks, root)) {
      const key = block.cid.toString()
      if (sent.has(key)) continue
      sent.add(key)
      yield block
    }
  }
}

/** The whole DAG under `root` (a cache root exports the whole cache). */
export function dagExport (blocks: BlockGetter, root: CID): CarSelection {
  return { roots: [root], blocks: walkDag(blocks, root) }
}

/**
 * The closure of `paths` as the cache under `cacheRoot` knows it: roots are
 * the narinfo file and NAR root of every path in it, blocks their DAGs.
 */
export async function closureExport (blocks: BlockGetter, cacheRoot: CID, paths: string[]): Promise<CarSelection> {
  const closure = await cacheClosure(await openIndex(blocks, cacheRoot), paths)
  // Two paths with the same contents share a NAR; a root is listed once.
  const roots = [...new Map(closure.flatMap(e => [e.narInfo, e.nar]).map(c => [c.toString(), c])).values()]
  return { roots, blocks: walkDags(blocks, roots) }
}
