import { CID } from 'multiformats/cid'
import type { BlockGetter } from '../ipfs/block.js'
import { openIndex, type CacheIndex } from './index.js'
import type { RemotePinStore } from './remote-pins.js'
import type { IndexSource } from './source.js'

/**
 * The pinned requests whose CID is a cache root (a nixipfs cache directory,
 * `nix-cache-info` at its top), as sources the gateway serves to Nix, newest
 * first: a mirror that only takes pins still answers `nix copy --from`. Nix
 * checks each narinfo's signature itself, as for any followed cache.
 */
export class PinnedCaches {
  private readonly opened = new Map<string, IndexSource>()

  constructor (private readonly store: RemotePinStore, private readonly blocks: BlockGetter) {}

  /** A source for every pinned request, newest first; those that are no cache root serve nothing. */
  sources (): IndexSource[] {
    const cids = [...new Set(this.store.all().filter(p => p.status === 'pinned').reverse().map(p => CID.parse(p.pin.cid).toV1().toString()))]
    for (const key of this.opened.keys()) if (!cids.includes(key)) this.opened.delete(key)
    return cids.map(key => {
      let source = this.opened.get(key)
      if (source === undefined) {
        source = this.sourceOf(CID.parse(key))
        this.opened.set(key, source)
      }
      return source
    })
  }

  private sourceOf (root: CID): IndexSource {
    let index: Promise<CacheIndex | undefined> | undefined
    return {
      // A root whose top holds no nix-cache-info (a NAR, a narinfo, any other DAG) is no cache: it serves nothing.
      current: async () => await (index ??= openIndex(this.blocks, root).then(i => i.cacheInfo === '' ? undefined : i, () => undefined)),
      recheck: () => {}
    }
  }
}
