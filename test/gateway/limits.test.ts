import { connect } from 'node:net'
import { describe, expect, it } from 'vitest'
import { PackStore } from '../../src/ipfs/pack-store.js'
import { startGateway } from '../../src/gateway/server.js'
import { tmp } from '../helpers/cli.js'
import { DEFAULT_LISTEN } from '../../src/constants.js'
import { parseListen } from '../../src/commands/network-args.js'
import { ROUTES } from '../../src/gateway/routes.js'

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

  it('listens on loopback by default and answers nothing but GET and HEAD (nothing that writes is reachable)', async () => {
    expect(parseListen(DEFAULT_LISTEN).host).toBe('127.0.0.1')
    const store = await PackStore.openRepo(tmp())
    const gw = await startGateway({ caches: async () => undefined, disputes: async () => [], stats: () => ({}), blocks: store, local: store, record: async () => undefined, host: '127.0.0.1', port: 0 })
    try {
      // One path per route (the patterns' capture groups filled with something plausible), and a path no route takes.
      const paths = [...ROUTES.map(([pattern]) => pattern.source.replace(/^\^|\$$/g, '').replace(/\([^)]*\)/g, 'x').replace(/\\/g, '')), '/admin', '/publish']
      for (const path of paths) {
        for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) {
          const r = await fetch(gw.url + path, { method, body: method === 'DELETE' ? undefined : 'x' })
          expect(r.status, `${method} ${path}`).toBe(405)
          expect(r.headers.get('allow')).toBe('GET, HEAD')
        }
      }
      expect(store.size).toBe(0)
    } finally {
      await gw.close()
      await store.close()
    }
  })
})
