import { randomBytes } from 'node:crypto'
import { createServer } from 'node:net'
import type { AddressInfo } from 'node:net'
import { describe, expect, it } from 'vitest'
import { startGateway } from '../../src/gateway/server.js'
import { cidOf, RAW_CODE } from '../../src/ipfs/block.js'
import { PackStore } from '../../src/ipfs/pack-store.js'
import { startNetwork } from '../../src/net/network.js'
import { tmp } from '../helpers/cli.js'

const quiet = { info: () => {}, warn: () => {}, debug: () => {} }
const PEER = '12D3KooWDwEVQ6Bjf6LUwNkL25qPuVVEb2zVSd8CMhQSPg6mjb4Y'

/** A loopback port nothing listens on. */
async function closedPort (): Promise<number> {
  const s = createServer()
  await new Promise<void>(resolve => s.listen(0, '127.0.0.1', resolve))
  const { port } = s.address() as AddressInfo
  await new Promise(resolve => s.close(resolve))
  return port
}

describe('pin origins (Network.dialOrigin)', () => {
  it('an HTTP origin becomes a peer blocks come from; past 32 peers the oldest origin gives way, never a --http-gateway', async () => {
    const source = await PackStore.openRepo(tmp())
    const bytes = randomBytes(2000)
    const cid = cidOf(RAW_CODE, bytes)
    await source.put(cid, bytes)
    await source.flush()
    const origin = await startGateway({ caches: async () => undefined, disputes: async () => [], stats: () => ({}), blocks: source, local: source, record: async () => undefined, host: '127.0.0.1', port: 0 })
    const dead = await closedPort()
    const local = await PackStore.openRepo(tmp())
    const network = await startNetwork(tmp(), local, { offline: true, listen: [], peers: [], httpGateways: [`http://127.0.0.1:${dead}`], peerTimeoutMs: 2_000, peerConnections: 2, log: quiet })
    try {
      // 40 origins that do not answer (distinct URLs), then the one that has the block.
      for (let i = 0; i < 40; i++) await network.dialOrigin(`/ip4/127.0.0.${i + 2}/tcp/${dead}/http/p2p/${PEER}`)
      await network.dialOrigin(`/ip4/127.0.0.1/tcp/${new URL(origin.url).port}/http/p2p/${PEER}`)
      // Unknown and malformed addresses are ignored (offline: no libp2p to dial).
      await network.dialOrigin(`/ip4/127.0.0.1/tcp/4001/p2p/${PEER}`)
      await network.dialOrigin('/dns4/example.invalid/udp/1/quic')
      expect(Buffer.from(await network.blocks.getChecked(cid))).toEqual(bytes)
      expect(network.blocks.counters.http + network.blocks.counters.car).toBe(1)
      // Who is asked now: the --http-gateway still, the oldest origins no longer.
      const miss = await network.blocks.getChecked(cidOf(RAW_CODE, randomBytes(8))).catch((err: Error) => err.message)
      expect(miss).toContain(`http://127.0.0.1:${dead}:`)
      expect(miss).not.toContain('http://127.0.0.2:')
      expect(miss).toContain('http://127.0.0.41:')
    } finally {
      await network.stop()
      await origin.close()
      await local.close()
      await source.close()
    }
  })
})
