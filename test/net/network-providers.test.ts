import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { CID } from 'multiformats/cid'
import { afterAll, describe, expect, it } from 'vitest'
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
})
