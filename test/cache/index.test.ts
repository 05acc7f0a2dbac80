import type { CID } from 'multiformats/cid'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { narUrl, type CacheEntry } from '../../src/cache/directory.js'
import { openIndex } from '../../src/cache/index.js'
import { appendEntries } from '../../src/cache/publish.js'
import { RECIPES } from '../../src/cache/recipes.js'
import type { IndexSource } from '../../src/cache/source.js'
import { unionOf } from '../../src/cache/union.js'
import { importFile } from '../../src/ipfs/file-dag.js'
import { PackStore } from '../../src/ipfs/pack-store.js'
import { startGateway } from '../../src/gateway/server.js'
import { NarHasher } from '../../src/nix/hash.js'
import { formatNarInfo } from '../../src/nix/narinfo.js'
import { generateSecretKey } from '../../src/nix/signing.js'
import { narOf } from '../nix/fixtures.js'
import { tmp } from '../helpers/cli.js'

describe('the cache index', () => {
  const nar = narOf('nix-archive-1', '(', 'type', 'regular', 'contents', 'hello', ')')
  const hasher = new NarHasher()
  hasher.update(nar)
  const narHash = hasher.digest()
  const wrong = 'sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s'
  let repo: string
  let blocks: PackStore
  let cid: CID
  let tsize: number

  beforeEach(async () => {
    repo = tmp()
    blocks = await PackStore.openRepo(repo)
    ;({ cid, tsize } = await importFile(blocks, (async function * () { yield nar })(), RECIPES.cdc.chunker))
  })
  afterEach(async () => { await blocks.close() })

  /** A cache entry for store path hash `hash` naming the stored NAR; `pad` makes the narinfo that many bytes longer. */
  const entry = (hash: string, claimed: string, pad = 0): CacheEntry => ({
    hash,
    nar: cid,
    narTsize: tsize,
    narInfo: formatNarInfo({ storePath: `/nix/store/${hash}-p`, url: narUrl(cid), compression: 'none', narHash: claimed, narSize: nar.length, references: [], sigs: [] }) + (pad > 0 ? `X-Padding: ${'a'.repeat(pad)}\n` : '')
  })
  /** Publishes `entries` as a cache signed by a key named `key`; returns its root. */
  const cache = async (key: string, entries: CacheEntry[]): Promise<CID> =>
    (await appendEntries({ repo, blocks }, generateSecretKey(key), entries, { recordLifetimeMs: 60_000, recipe: RECIPES.cdc })).root

  it('checks a NAR asked for before its narinfo against the NarHash once a narinfo names it', async () => {
    const hash = '0123456789abcdfghijklmnpqrsvwxyz'
    const index = await openIndex(blocks, await cache('k-1', [entry(hash, narHash)]))
    const first = await index.nar(cid.toString())
    expect(first?.narSize).toBe(nar.length)
    expect(first?.narHash).toBeUndefined()
    await index.narInfo(hash)
    expect((await index.nar(cid.toString()))?.narHash).toBe(narHash)
  })

  it('refuses a narinfo file larger than any real one without holding it', async () => {
    const hash = '1123456789abcdfghijklmnpqrsvwxyz'
    const index = await openIndex(blocks, await cache('k-1', [entry(hash, narHash, 2 * 1024 * 1024)]))
    await expect(index.narInfo(hash)).rejects.toThrow(/text file .* is larger than 1048576 bytes/)
  })

  it('refuses a narinfo that gives a NAR another NarHash than the first narinfo naming it; a union still answers from another cache', async () => {
    const [honest, liar] = ['2123456789abcdfghijklmnpqrsvwxyz', '3123456789abcdfghijklmnpqrsvwxyz'] as const
    const hostile = await cache('h-1', [entry(honest, narHash), entry(liar, wrong)])
    const good = await cache('g-1', [entry(liar, narHash)])
    const index = await openIndex(blocks, hostile)
    expect((await index.narInfo(honest))?.info.narHash).toBe(narHash)
    await expect(index.narInfo(liar)).rejects.toThrow(/the narinfo of \S+-p gives NAR .* the NarHash sha256:1b8m.*, but the narinfo of \S+-p gave it sha256:.* first/)
    const source = (root: CID): IndexSource => ({ current: async () => await openIndex(blocks, root), recheck: () => {} })
    const union = await unionOf([source(hostile), source(good)])()
    await union!.narInfo(honest)
    expect((await union!.narInfo(liar))?.info.narHash).toBe(narHash)
  })

  it('a gateway answers a refused narinfo 503 ERR_INCONSISTENT_CACHE, logs it once per NAR naming both narinfos and NarHashes, and counts it', async () => {
    const [honest, liar] = ['4123456789abcdfghijklmnpqrsvwxyz', '5123456789abcdfghijklmnpqrsvwxyz'] as const
    const index = await openIndex(blocks, await cache('h-1', [entry(honest, narHash), entry(liar, wrong)]))
    const warnings: string[] = []
    const gw = await startGateway({ caches: async () => index, disputes: async () => [], stats: () => ({}), blocks, local: blocks, record: async () => undefined, host: '127.0.0.1', port: 0, logger: { debug: () => {}, warn: m => warnings.push(m) } })
    try {
      expect((await fetch(`${gw.url}/${honest}.narinfo`)).status).toBe(200)
      for (let i = 0; i < 3; i++) {
        const r = await fetch(`${gw.url}/${liar}.narinfo`)
        expect(r.status).toBe(503)
        expect(await r.text()).toMatch(/inconsistent/)
      }
      expect(warnings).toHaveLength(1)
      expect(warnings[0]).toContain(`/nix/store/${liar}-p`)
      expect(warnings[0]).toContain(wrong)
      expect(warnings[0]).toContain(`/nix/store/${honest}-p`)
      expect(warnings[0]).toContain(narHash)
      expect(await (await fetch(`${gw.url}/metrics`)).text()).toMatch(/nixipfs_http_errors_total\{code="ERR_INCONSISTENT_CACHE"\} 3/)
    } finally {
      await gw.close()
    }
  })
})
