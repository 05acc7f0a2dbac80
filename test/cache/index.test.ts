import { describe, expect, it } from 'vitest'
import { narUrl } from '../../src/cache/directory.js'
import { openIndex } from '../../src/cache/index.js'
import { appendEntries } from '../../src/cache/publish.js'
import { RECIPES } from '../../src/cache/recipes.js'
import { importFile } from '../../src/ipfs/file-dag.js'
import { PackStore } from '../../src/ipfs/pack-store.js'
import { NarHasher } from '../../src/nix/hash.js'
import { formatNarInfo } from '../../src/nix/narinfo.js'
import { generateSecretKey } from '../../src/nix/signing.js'
import { narOf } from '../nix/fixtures.js'
import { tmp } from '../helpers/cli.js'

describe('the cache index', () => {
  it('checks a NAR asked for before its narinfo against the NarHash once a narinfo names it', async () => {
    const repo = tmp()
    const blocks = await PackStore.openRepo(repo)
    try {
      const nar = narOf('nix-archive-1', '(', 'type', 'regular', 'contents', 'hello', ')')
      const { cid, tsize } = await importFile(blocks, (async function * () { yield nar })(), RECIPES.cdc.chunker)
      const hasher = new NarHasher()
      hasher.update(nar)
      const hash = '0123456789abcdfghijklmnpqrsvwxyz'
      const info = { storePath: `/nix/store/${hash}-hello`, url: narUrl(cid), compression: 'none', narHash: hasher.digest(), narSize: nar.length, references: [], sigs: [] }
      const record = await appendEntries({ repo, blocks }, generateSecretKey('k-1'), [{ hash, nar: cid, narTsize: tsize, narInfo: formatNarInfo(info) }], { recordLifetimeMs: 60_000, recipe: RECIPES.cdc })
      const index = await openIndex(blocks, record.root)
      const entry = await index.nar(cid.toString())
      expect(entry?.narSize).toBe(nar.length)
      expect(entry?.narHash).toBeUndefined()
      await index.narInfo(hash)
      expect((await index.nar(cid.toString()))?.narHash).toBe(info.narHash)
    } finally {
      await blocks.close()
    }
  })

  it('refuses a narinfo file larger than any real one without holding it', async () => {
    const repo = tmp()
    const blocks = await PackStore.openRepo(repo)
    try {
      const nar = narOf('nix-archive-1', '(', 'type', 'regular', 'contents', 'x', ')')
      const { cid, tsize } = await importFile(blocks, (async function * () { yield nar })(), RECIPES.cdc.chunker)
      const hash = '1123456789abcdfghijklmnpqrsvwxyz'
      const text = `StorePath: /nix/store/${hash}-big\nURL: ${narUrl(cid)}\n` + `X-Padding: ${'a'.repeat(2 * 1024 * 1024)}\n`
      const record = await appendEntries({ repo, blocks }, generateSecretKey('k-1'), [{ hash, nar: cid, narTsize: tsize, narInfo: text }], { recordLifetimeMs: 60_000, recipe: RECIPES.cdc })
      const index = await openIndex(blocks, record.root)
      await expect(index.narInfo(hash)).rejects.toThrow(/text file .* is larger than 1048576 bytes/)
    } finally {
      await blocks.close()
    }
  })
})
