import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { createIPNSRecord, marshalIPNSRecord } from 'ipns'
import { base36 } from 'multiformats/bases/base36'
import { CID } from 'multiformats/cid'
import { describe, expect, it } from 'vitest'
import { PeerError, RecordError } from '../../src/errors.js'
import { FOREIGN_RECORD_BYTES, gatewayUrlsOf, networkRouting, nodeRouting, routingViewOf, type NetworkRouting, type RoutingSource } from '../../src/net/routing-view.js'

// The view /routing/v1 answers from, over several sources: what each source
// hands it is checked, and the DHT facade (net/routing.ts) plugs in through
// networkRouting. The facade here is an in-memory stand-in of that interface.
const cid = CID.parse('bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy')

async function keyAndName (): Promise<{ key: Awaited<ReturnType<typeof generateKeyPair>>, name: string }> {
  const key = await generateKeyPair('Ed25519')
  return { key, name: peerIdFromPrivateKey(key).toCID().toString(base36) }
}

/** An in-memory routing facade with the shape of net/routing.ts's. */
function facade (records: Uint8Array[], failPut?: Error): NetworkRouting & { puts: Uint8Array[] } {
  const puts: Uint8Array[] = []
  return {
    puts,
    async * findProviders () { yield { id: '12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN', addresses: ['/ip4/10.0.0.1/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN'] } },
    getRecord: async () => records.map(bytes => ({ from: 'dht', bytes })),
    putRecord: async (_name, bytes) => { if (failPut !== undefined) throw failPut; puts.push(bytes) },
    findPeer: async id => id === 'known' ? { id, addresses: ['/ip4/10.0.0.2/tcp/4001'] } : undefined
  }
}

describe('routing view', () => {
  it('keeps records that routing clients put for names of strangers within a byte budget, the newest first', async () => {
    // Anyone can make names: before the budget, 10 000 records of up to 10 KiB each (100 MiB) were kept.
    expect(FOREIGN_RECORD_BYTES).toBeLessThanOrEqual(8 * 1024 * 1024)
    const budget = 64 * 1024
    const node = nodeRouting({ self: () => ({ id: 'self', addresses: [], protocols: [] }), has: async () => false, stored: async () => undefined, followed: new Set(), accept: async () => {}, foreignRecordBytes: budget })
    const names: string[] = []
    let size = 0
    for (let i = 0; i < 24; i++) {
      const { key, name } = await keyAndName()
      const bytes = marshalIPNSRecord(await createIPNSRecord(key, `/ipfs/${cid.toString()}/${'a'.repeat(2000)}`, 1n, 3600_000))
      size = bytes.length
      await node.putRecord!(name, bytes)
      names.push(name)
    }
    const kept = await Promise.all(names.map(async n => (await node.records!(n)).length))
    const keptCount = Math.floor(budget / size)
    expect(size * names.length).toBeGreaterThan(budget)
    expect(kept).toEqual(names.map((_, i) => i >= names.length - keptCount ? 1 : 0))
  })

  it('hands on the newest valid record among all sources: forged and expired candidates never', async () => {
    const { key, name } = await keyAndName()
    const valid2 = marshalIPNSRecord(await createIPNSRecord(key, cid, 2n, 3600_000))
    const forged = await createIPNSRecord(key, cid, 9n, 3600_000)
    forged.signatureV2[3]! ^= 1
    const expired = marshalIPNSRecord(await createIPNSRecord(key, cid, 8n, 1))
    await new Promise(resolve => setTimeout(resolve, 20))
    const own: RoutingSource = { records: async () => [marshalIPNSRecord(await createIPNSRecord(key, cid, 1n, 3600_000))] }
    const view = routingViewOf([own, networkRouting(facade([marshalIPNSRecord(forged), expired, valid2]))])
    expect(Buffer.compare(Buffer.from((await view.record(name))!), Buffer.from(valid2))).toBe(0)
    const { name: other } = await keyAndName()
    expect(await view.record(other)).toBeUndefined()
  })

  it('checks a record before any source sees it; a source refusing it on its merits is the answer, one that is down is not', async () => {
    const { key, name } = await keyAndName()
    const dht = facade([])
    const taken: Uint8Array[] = []
    const view = routingViewOf([{ putRecord: async (_n, bytes) => { taken.push(bytes) } }, networkRouting(dht)])
    const forged = await createIPNSRecord(key, cid, 1n, 3600_000)
    forged.signatureV2[0]! ^= 1
    await expect(view.putRecord(name, marshalIPNSRecord(forged))).rejects.toThrow(/not validly signed/)
    const { name: other } = await keyAndName()
    const good = marshalIPNSRecord(await createIPNSRecord(key, cid, 1n, 3600_000))
    await expect(view.putRecord(other, good)).rejects.toBeInstanceOf(RecordError)
    expect(taken).toHaveLength(0)
    expect(dht.puts).toHaveLength(0)
    await view.putRecord(name, good)
    expect(taken).toEqual([good])
    expect(dht.puts).toEqual([good])
    // The DHT unreachable: the record was still taken here.
    await routingViewOf([{ putRecord: async () => {} }, networkRouting(facade([], new PeerError('dht', 'no DHT peer took the record')))]).putRecord(name, good)
    const refusing = routingViewOf([{ putRecord: async () => { throw new RecordError('ERR_RECORD_ROLLBACK', 'older') } }, networkRouting(dht)])
    await expect(refusing.putRecord(name, good)).rejects.toThrow('older')
  })

  it('providers from every source, each peer once; the DHT\'s without /p2p and with unknown protocols; a peer from the first source that knows it', async () => {
    const self = { id: '12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN', addresses: ['/ip4/127.0.0.1/tcp/8080/http'], protocols: ['transport-ipfs-gateway-http'] }
    const view = routingViewOf([{ async * providers () { yield self }, peer: async id => id === self.id ? self : undefined }, networkRouting(facade([]))])
    const found = []
    for await (const p of view.providers(cid)) found.push(p)
    expect(found).toEqual([self])
    const dhtOnly = routingViewOf([networkRouting(facade([]))])
    const fromDht = []
    for await (const p of dhtOnly.providers(cid)) fromDht.push(p)
    expect(fromDht).toEqual([{ id: self.id, addresses: ['/ip4/10.0.0.1/tcp/4001'], protocols: [] }])
    // A source that fails midway leaves the others' answers standing.
    const failing: RoutingSource = { async * providers () { throw new Error('no DHT peers') } }
    const despite = []
    for await (const p of routingViewOf([failing, { async * providers () { yield self } }]).providers(cid)) despite.push(p)
    expect(despite).toEqual([self])
    expect(await view.peer(self.id)).toEqual(self)
    expect(await view.peer('known')).toEqual({ id: 'known', addresses: ['/ip4/10.0.0.2/tcp/4001'], protocols: [] })
    expect(await view.peer('nobody')).toBeUndefined()
  })
})

describe('provider addresses', () => {
  it('turns the /http addresses of a gateway provider into URLs, and nothing else', () => {
    const peer = { id: 'x', protocols: ['transport-bitswap', 'transport-ipfs-gateway-http'], addresses: ['/ip4/127.0.0.1/tcp/4001', '/ip4/127.0.0.1/tcp/8080/http', '/ip6/::1/tcp/8081/http', '/dns4/example.org/tcp/443/tls/https', '/ip4/10.0.0.1/udp/4001/quic-v1'] }
    expect(gatewayUrlsOf(peer)).toEqual(['http://127.0.0.1:8080', 'http://[::1]:8081', 'https://example.org:443'])
    expect(gatewayUrlsOf({ ...peer, protocols: ['transport-bitswap'] })).toEqual([])
  })
})
