import { connect } from 'node:net'
import { describe, expect, it } from 'vitest'
import { PackStore } from '../../src/ipfs/pack-store.js'
import { startGateway } from '../../src/gateway/server.js'
import { tmp } from '../helpers/cli.js'

describe('gateway limits', () => {
  it('refuses oversized request heads with 431 and connections beyond the limit', async () => {
    const store = await PackStore.openRepo(tmp())
    const gw = await startGateway({ caches: async () => undefined, disputes: async () => [], stats: () => ({}), blocks: store, local: store, record: async () => undefined, host: '127.0.0.1', port: 0, maxConnections: 2, maxHeaderBytes: 1024 })
    try {
      expect((await fetch(`${gw.url}/nix-cache-info`, { headers: { 'x-big': 'a'.repeat(4096) } })).status).toBe(431)
      expect((await fetch(`${gw.url}/nix-cache-info`)).status).toBe(200)
      // Two idle connections take the two places; a third is closed without an answer.
      const { port } = new URL(gw.url)
      const open = async (): Promise<ReturnType<typeof connect>> => await new Promise(resolve => { const s = connect(Number(port), '127.0.0.1', () => resolve(s)) })
      const held = [await open(), await open()]
      const third = await open()
      const closed = await new Promise<boolean>(resolve => {
        third.on('close', () => resolve(true))
        third.on('data', () => resolve(false))
        third.write('GET /nix-cache-info HTTP/1.1\r\nhost: x\r\n\r\n')
        setTimeout(() => resolve(false), 2_000)
      })
      expect(closed).toBe(true)
      for (const s of held) s.destroy()
    } finally {
      await gw.close()
      await store.close()
    }
  })
})
