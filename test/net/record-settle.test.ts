import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { KadDHT, QueryEvent } from '@libp2p/kad-dht'
import { describe, expect, it } from 'vitest'
import { dhtRouting, RECORD_SETTLE_MS } from '../../src/net/routing.js'

// A DHT record query goes on until every closest peer answered; one that never does (stopped, overloaded) keeps it
// open until the caller's deadline. That cannot be made to happen on demand on loopback, so the DHT here is a
// stand-in that answers one record, then waits for the abort as kad-dht does. The unit under test is the routing
// facade's settling.
async function slowDht (): Promise<{ dht: KadDHT, name: string }> {
  const key = await generateKeyPair('Ed25519')
  const peer = peerIdFromPrivateKey(key)
  const dht = {
    get: async function * (_key: Uint8Array, options: { signal?: AbortSignal }): AsyncGenerator<QueryEvent> {
      await new Promise(resolve => setTimeout(resolve, 10))
      yield { name: 'VALUE', type: 5, from: peer, value: Uint8Array.of(1, 2, 3) } as unknown as QueryEvent
      await new Promise((_resolve, reject) => options.signal?.addEventListener('abort', () => reject(new Error('aborted')), { once: true }))
    }
  } as unknown as KadDHT
  return { dht, name: peer.toString() }
}

describe('a DHT record lookup settles after its first record', () => {
  it('by default a second later (a newer record may come from another peer)', async () => {
    const { dht, name } = await slowDht()
    const t = Date.now()
    const found = await dhtRouting(dht, 'self').getRecord(name)
    expect(found.map(f => [...f.bytes])).toEqual([[1, 2, 3]])
    expect(Date.now() - t).toBeGreaterThanOrEqual(RECORD_SETTLE_MS - 50)
  })

  it('settleMs after it when asked (discovery: the follower asks again for newer ones)', async () => {
    const { dht, name } = await slowDht()
    const t = Date.now()
    const found = await dhtRouting(dht, 'self').getRecord(name, { settleMs: 50 })
    expect(found.map(f => [...f.bytes])).toEqual([[1, 2, 3]])
    expect(Date.now() - t).toBeLessThan(500)
  })
})
