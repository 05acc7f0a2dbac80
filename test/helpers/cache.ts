import { randomBytes } from 'node:crypto'
import { CID } from 'multiformats/cid'
import { expect } from 'vitest'
import { listNarInfos, openIndex } from '../../src/cache/index.js'
import { readFile } from '../../src/ipfs/file-dag.js'
import { PackStore } from '../../src/ipfs/pack-store.js'
import { appendEntries } from '../../src/cache/publish.js'
import { narUrl } from '../../src/cache/directory.js'
import { RECIPES } from '../../src/cache/recipes.js'
import { importFile } from '../../src/ipfs/file-dag.js'
import { fingerprint, formatNarInfo, type NarInfo } from '../../src/nix/narinfo.js'
import { signFingerprint, type SecretKey } from '../../src/nix/signing.js'
import { parseStorePath } from '../../src/nix/store-path.js'
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

/** One store path of a cache made by `signedCache`: its NAR, its narinfo altered by `alter` (before signing), given `sigs` (after) or padded. */
export interface CacheItem { path: string, nar: Buffer, alter?: (i: NarInfo) => NarInfo, sigs?: string[], pad?: number }

/** Adds NARs to the cache signed by `key` in `repo` (a builder's, or a hostile one's) and signs a record valid for `lifetimeMs` (default a day). */
export async function signedCache (repo: string, key: SecretKey, items: CacheItem[], lifetimeMs = 24 * 3600_000): Promise<void> {
  const blocks = await PackStore.openRepo(repo)
  try {
    const entries = []
    for (const item of items) {
      const { cid, tsize } = await importFile(blocks, (async function * () { yield item.nar })(), RECIPES.cdc.chunker)
      const hasher = new NarHasher()
      hasher.update(item.nar)
      let info: NarInfo = { storePath: item.path, url: narUrl(cid), compression: 'none', narHash: hasher.digest(), narSize: item.nar.length, references: [], sigs: [] }
      info = item.alter?.(info) ?? info
      info = { ...info, sigs: item.sigs ?? [signFingerprint(key, fingerprint(info))] }
      entries.push({ hash: parseStorePath(item.path).hash, nar: cid, narTsize: tsize, narInfo: formatNarInfo(info) + (item.pad === undefined ? '' : `X-Padding: ${'a'.repeat(item.pad)}\n`) })
    }
    await appendEntries({ repo, blocks }, key, entries, { recordLifetimeMs: lifetimeMs, recipe: RECIPES.cdc })
  } finally {
    await blocks.close()
  }
}

/** A store path that no Nix build made (its NAR comes from a test's cache). */
export const fakePath = (name: string): string => `/nix/store/${[...randomBytes(32)].map(b => '0123456789abcdfghijklmnpqrsvwxyz'[b % 32]).join('')}-${name}`
