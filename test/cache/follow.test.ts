import { describe, expect, it } from 'vitest'
import { narUrl } from '../../src/cache/directory.js'
import { startFollowing } from '../../src/cache/follow.js'
import { openIndex } from '../../src/cache/index.js'
import { appendEntries } from '../../src/cache/publish.js'
import { RECIPES } from '../../src/cache/recipes.js'
import { loadRecord, loadRecordBytes } from '../../src/cache/records.js'
import { importFile } from '../../src/ipfs/file-dag.js'
import { ipnsNameOf } from '../../src/ipfs/ipns.js'
import { PackStore } from '../../src/ipfs/pack-store.js'
import { startGateway } from '../../src/gateway/server.js'
import { formatNarInfo } from '../../src/nix/narinfo.js'
import { generateSecretKey } from '../../src/nix/signing.js'
import { NetworkBlocks } from '../../src/net/fetcher.js'
import { HttpPeer } from '../../src/net/http-peer.js'
import { narOf } from '../nix/fixtures.js'
import { tmp } from '../helpers/cli.js'

describe('following a cache', () => {
  it('takes the record from a peer and says which index block it could not fetch, and why', async () => {
    // The builder's cache, one narinfo, served by a peer that has lost that narinfo's block.
    const builderRepo = tmp()
    const builder = await PackStore.openRepo(builderRepo)
    const key = generateSecretKey('b-1')
    const name = ipnsNameOf(key.publicKey)
    const nar = narOf('nix-archive-1', '(', 'type', 'regular', 'contents', 'x', ')')
    const { cid, tsize } = await importFile(builder, (async function * () { yield nar })(), RECIPES.cdc.chunker)
    const hash = '0123456789abcdfghijklmnpqrsvwxyz'
    const narInfo = formatNarInfo({ storePath: `/nix/store/${hash}-x`, url: narUrl(cid), compression: 'none', narHash: 'sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s', narSize: nar.length, references: [], sigs: [] })
    const { root } = await appendEntries({ repo: builderRepo, blocks: builder }, key, [{ hash, nar: cid, narTsize: tsize, narInfo }], { recordLifetimeMs: 60_000, recipe: RECIPES.cdc })
    const lost = (await (await openIndex(builder, root)).narInfo(hash))!.cid
    await builder.delete(lost)
    const peer = await startGateway({ caches: async () => undefined, disputes: async () => [], stats: () => ({}), blocks: builder, local: builder, record: async () => undefined, host: '127.0.0.1', port: 0 })

    const repo = tmp()
    const local = await PackStore.openRepo(repo)
    const warnings: string[] = []
    const log = { info: () => {}, debug: () => {}, warn: (m: string) => warnings.push(m) }
    const record = (await loadRecordBytes(builderRepo, name))!
    const follower = startFollowing(repo, [name], async () => [{ from: peer.url, bytes: record }], new NetworkBlocks(local, { http: [new HttpPeer(peer.url)] }), { intervalMs: 3_600_000, fetch: 'index', log })
    try {
      await follower.poll()
      expect((await loadRecord(repo, name))?.root.toString()).toBe(root.toString())
      expect(warnings).toHaveLength(1)
      expect(warnings[0]).toContain(`1 blocks of root ${root.toString()} could not be fetched yet (first: ${lost.toString()}: block ${lost.toString()} is not in the local repo and no peer could supply it (${peer.url}: does not have it)); retrying at the next poll`)
    } finally {
      follower.stop()
      await peer.close()
      await local.close()
      await builder.close()
    }
  })
})
