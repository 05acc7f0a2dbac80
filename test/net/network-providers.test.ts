import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { CID } from 'multiformats/cid'
import { afterAll, describe, expect, it } from 'vitest'
import { cidOf, getVerified, RAW_CODE } from '../../src/ipfs/block.js'
import { PackStore } from '../../src/ipfs/pack-store.js'
import { startNetwork } from '../../src/net/network.js'
import { tmp } from '../helpers/cli.js'

const quiet = { info: () => {}, warn: () => {}, debug: () => {} }

// A NAR's fetch waits at most 2 s for the routing to name a first provider.
// Under load a fresh DHT query took longer, though the node had found both
// providers moments before: the NAR then came over bitswap alone (CI's
// routing-http failure). Providers named lately are now given at once.
describe('provider searches', () => {
  let server: Server | undefined
  afterAll(async () => { await new Promise(resolve => server?.close(resolve)) })

  it('start with the providers named for the same CID in the last minute, while the routing no longer names them', async () => {
    const cid = CID.parse('bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy')
    const id = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
    let asked = 0
    // A Delegated Routing V1 server that names the provider once, then nobody (as a DHT query that times out).
    server = createServer((req, res) => {
      asked++
      if (asked > 1) { res.writeHead(404); res.end(); return }
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ Providers: [{ Schema: 'peer', ID: id, Addrs: ['/ip4/127.0.0.1/tcp/9/http'], Protocols: ['transport-ipfs-gateway-http'] }] }))
    })
    await new Promise<void>(resolve => server!.listen(0, '127.0.0.1', resolve))
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    const repo = tmp()
    const network = await startNetwork(repo, await PackStore.openRepo(repo), { offline: true, listen: [], peers: [], httpGateways: [], routing: [url], peerTimeoutMs: 2_000, peerConnections: 2, log: quiet })
    try {
      const search = async (c: CID): Promise<string[]> => {
        const ids: string[] = []
        for await (const p of network.findProviders(c, AbortSignal.timeout(5_000))) ids.push(p.id)
        return ids
      }
      expect(await search(cid)).toEqual([id])
      expect(await search(cid)).toEqual([id])
      expect(asked).toBe(2) // the routing was asked again, and named nobody
      // Another CID gets nothing from the memory.
      expect(await search(CID.parse('bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4'))).toEqual([])
    } finally {
      await network.stop()
    }
  }, 30_000)

  // A discovered cache's root was searched twice at once: its holders were dialled, and its index fetch looked for
  // their gateways; two DHT walks for one answer.
  it('share one routing query among those who ask for the same CID meanwhile; the next one asks again', async () => {
    const cid = CID.parse('bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy')
    const id = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
    let asked = 0
    const slow = createServer((_req, res) => {
      asked++
      setTimeout(() => {
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ Providers: [{ Schema: 'peer', ID: id, Addrs: ['/ip4/127.0.0.1/tcp/9/http'], Protocols: ['transport-ipfs-gateway-http'] }] }))
      }, 300)
    })
    await new Promise<void>(resolve => slow.listen(0, '127.0.0.1', resolve))
    const url = `http://127.0.0.1:${(slow.address() as AddressInfo).port}`
    const repo = tmp()
    const network = await startNetwork(repo, await PackStore.openRepo(repo), { offline: true, listen: [], peers: [], httpGateways: [], routing: [url], peerTimeoutMs: 2_000, peerConnections: 2, log: quiet })
    try {
      const search = async (): Promise<string[]> => {
        const ids: string[] = []
        for await (const p of network.findProviders(cid, AbortSignal.timeout(5_000))) ids.push(p.id)
        return ids
      }
      expect(await Promise.all([search(), search(), search()])).toEqual([[id], [id], [id]])
      expect(asked).toBe(1)
      expect(await search()).toEqual([id])
      expect(asked).toBe(2)
    } finally {
      await network.stop()
      slow.closeAllConnections()
      await new Promise(resolve => slow.close(resolve))
    }
  }, 30_000)
})

// Discovery adds the trustless gateways of the peers that provide a followed
// cache's root (its index then comes over HTTP, not over bitswap alone). A
// provider record is anyone's claim, so a gateway joins the peers every block
// is asked of only once it served that root, checked.
describe('holders', () => {
  const servers: Server[] = []
  afterAll(async () => { for (const s of servers) { s.closeAllConnections(); await new Promise(resolve => s.close(resolve)) } })
  /** A trustless gateway answering every block request with `body` (undefined: never answering). */
  async function gateway (body: Uint8Array | undefined): Promise<string> {
    const server = createServer((_req, res) => {
      if (body === undefined) return
      res.writeHead(200, { 'content-type': 'application/vnd.ipld.raw', 'content-length': body.length })
      res.end(body)
    })
    servers.push(server)
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    return `/ip4/127.0.0.1/tcp/${(server.address() as AddressInfo).port}/http`
  }

  it('take a provider\'s trustless gateway as a block source only once it served the root it claims, checked', async () => {
    const bytes = new TextEncoder().encode('the root of a followed cache')
    const root = cidOf(RAW_CODE, bytes)
    const honest = await gateway(bytes)
    const liar = await gateway(new TextEncoder().encode('something else'))
    const silent = await gateway(undefined)
    const repo = tmp()
    const network = await startNetwork(repo, await PackStore.openRepo(repo), { offline: true, listen: [], peers: [], httpGateways: [], peerTimeoutMs: 10_000, peerConnections: 2, log: quiet })
    try {
      const id = async (): Promise<string> => peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
      const signal = AbortSignal.timeout(10_000)
      const started = Date.now()
      expect(await network.addHolder({ id: await id(), addresses: [liar] }, root, signal)).toBe(false)
      expect(await network.addHolder({ id: await id(), addresses: [silent] }, root, signal)).toBe(false)
      // The silent one is passed over after 2 s, not after the 10 s a block may take.
      expect(Date.now() - started).toBeLessThan(8_000)
      expect(await network.addHolder({ id: await id(), addresses: [] }, root, signal)).toBe(false)
      expect(network.blocks.usableHttpPeers()).toBe(0)
      const holder = await id()
      expect(await network.addHolder({ id: holder, addresses: [honest] }, root, signal)).toBe(true)
      expect(await network.addHolder({ id: holder, addresses: [honest] }, root, signal)).toBe(true)
      expect(network.blocks.usableHttpPeers()).toBe(1)
      expect(Buffer.from(await getVerified(network.blocks, root)).equals(bytes)).toBe(true)
      expect(network.blocks.counters.http).toBe(1)
      // Holders of caches followed long ago give way to new ones at the cap of 32 HTTP peers.
      for (let i = 0; i < 40; i++) expect(await network.addHolder({ id: await id(), addresses: [await gateway(bytes)] }, root, signal)).toBe(true)
      expect(network.blocks.usableHttpPeers()).toBe(32)
    } finally {
      await network.stop()
    }
  }, 30_000)
})
