import { describe, expect, it } from 'vitest'
import type { CID } from 'multiformats/cid'
import { narUrl, type CacheEntry } from '../../src/cache/directory.js'
import type { IndexSource } from '../../src/cache/source.js'
import { unionOf } from '../../src/cache/union.js'
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

  it('refuses a narinfo that gives a NAR another NarHash than the first narinfo naming it; a union still answers from another cache', async () => {
    const repo = tmp()
    const blocks = await PackStore.openRepo(repo)
    try {
      const nar = narOf('nix-archive-1', '(', 'type', 'regular', 'contents', 'shared', ')')
      const { cid, tsize } = await importFile(blocks, (async function * () { yield nar })(), RECIPES.cdc.chunker)
      const hasher = new NarHasher()
      hasher.update(nar)
      const right = hasher.digest()
      const entry = (hash: string, narHash: string): CacheEntry => ({ hash, nar: cid, narTsize: tsize, narInfo: formatNarInfo({ storePath: `/nix/store/${hash}-p`, url: narUrl(cid), compression: 'none', narHash, narSize: nar.length, references: [], sigs: [] }) })
      const [honest, liar] = ['2123456789abcdfghijklmnpqrsvwxyz', '3123456789abcdfghijklmnpqrsvwxyz']
      const wrong = 'sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s'
      const hostile = await appendEntries({ repo, blocks }, generateSecretKey('h-1'), [entry(honest!, right), entry(liar!, wrong)], { recordLifetimeMs: 60_000, recipe: RECIPES.cdc })
      const good = await appendEntries({ repo, blocks }, generateSecretKey('g-1'), [entry(liar!, right)], { recordLifetimeMs: 60_000, recipe: RECIPES.cdc })
      const index = await openIndex(blocks, hostile.root)
      expect((await index.narInfo(honest!))?.info.narHash).toBe(right)
      await expect(index.narInfo(liar!)).rejects.toThrow(/gives NAR .* the NarHash sha256:1b8m.*, another narinfo of this cache gives it/)
      const source = (root: CID): IndexSource => ({ current: async () => await openIndex(blocks, root), recheck: () => {} })
      const union = await unionOf([source(hostile.root), source(good.root)])
      await union!.narInfo(honest!)
      expect((await union!.narInfo(liar!))?.info.narHash).toBe(right)
    } finally {
      await blocks.close()
    }
  })
})
