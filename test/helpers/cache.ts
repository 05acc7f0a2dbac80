import { CID } from 'multiformats/cid'
import { expect } from 'vitest'
import { listNarInfos, openIndex } from '../../src/cache/index.js'
import { readFile } from '../../src/ipfs/file-dag.js'
import type { PackStore } from '../../src/ipfs/pack-store.js'
import { NarHasher } from '../../src/nix/hash.js'

/** Checks every narinfo of the cache under `root`: its NAR reads back complete and matches NarHash. Returns the entry count. */
export async function expectCacheIntact (blocks: PackStore, root: CID): Promise<number> {
  const index = await openIndex(blocks, root)
  let entries = 0
  for await (const { hash } of listNarInfos(blocks, root)) {
    const { info } = (await index.narInfo(hash))!
    const hasher = new NarHasher()
    for await (const chunk of readFile(blocks, CID.parse(info.url.slice(4, -4)))) hasher.update(chunk)
    expect(hasher.digest()).toBe(info.narHash)
    expect(hasher.size).toBe(info.narSize)
    entries++
  }
  return entries
}
