import { execFileSync } from 'node:child_process'
import { createServer } from 'node:http'
import { connect, type AddressInfo, type Socket } from 'node:net'
import { describe, expect, it } from 'vitest'
import { PackStore } from '../../src/ipfs/pack-store.js'
import { startGateway } from '../../src/gateway/server.js'
import { connectionCapWithin, limitConnections, openFileLimit } from '../../src/gateway/connections.js'
import { tmp } from '../helpers/cli.js'
import { DEFAULT_LISTEN } from '../../src/constants.js'
import { parseListen } from '../../src/commands/network-args.js'
import { ROUTES } from '../../src/gateway/routes.js'

describe('gateway limits', () => {
  /**
   * A raw connection to the gateway at `url`, once connected. The server closing it is what these tests look for
   * (through 'close'); a reset while the client still writes (a dripping head) is no error of the test's.
   */
  const open = async (url: string): Promise<Socket> => await new Promise(resolve => { const s = connect(Number(new URL(url).port), '127.0.0.1', () => resolve(s)); s.on('error', () => {}) })
  /** Resolves true once `s` is closed (by the server), false after `ms` (default 3 s) if it is still open. */
  const closes = async (s: Socket, ms = 3_000): Promise<boolean> => await new Promise(resolve => {
    if (s.destroyed) { resolve(true); return }
    s.on('close', () => resolve(true))
    setTimeout(() => resolve(false), ms)
  })
  /** Sends a GET on `s`; resolves with the status line, or 'closed' when the server closes the connection without one. */
  const ask = async (s: Socket): Promise<string> => await new Promise(resolve => {
    s.once('data', (b: Buffer) => resolve(b.toString().split('\r\n')[0]!))
    s.on('close', () => resolve('closed'))
    s.write('GET /nix-cache-info HTTP/1.1\r\nhost: x\r\n\r\n')
  })

  it('refuses oversized request heads with 431; at the connection cap closes the longest-idle connection for a new one, and refuses one only while all are answering', async () => {
    const store = await PackStore.openRepo(tmp())
    let hold: Promise<void> | undefined
    let held = 0
    const gw = await startGateway({ caches: async () => { if (hold !== undefined) { held++; await hold } return undefined }, disputes: async () => [], stats: () => ({}), blocks: store, local: store, record: async () => undefined, host: '127.0.0.1', port: 0, maxConnections: 2, maxHeaderBytes: 1024 })
    const sockets: Socket[] = []
    try {
      expect((await fetch(`${gw.url}/nix-cache-info`, { headers: { 'x-big': 'a'.repeat(4096) } })).status).toBe(431)
      expect((await fetch(`${gw.url}/nix-cache-info`)).status).toBe(200)
      // Two idle connections take the two places; a third is served, and the one idle longest makes room.
      const [first, second] = [await open(gw.url), await open(gw.url)]
      const third = await open(gw.url)
      sockets.push(first!, second!, third)
      expect(await ask(third)).toBe('HTTP/1.1 200 OK')
      expect(await closes(first!)).toBe(true)
      expect(second!.destroyed).toBe(false)
      second!.destroy()
      third.destroy()
      await new Promise(resolve => setTimeout(resolve, 100)) // the gateway sees them closed

      // Both places answering (the index held back): a new connection is closed without an answer.
      let release!: () => void
      hold = new Promise(resolve => { release = resolve })
      const busy = [await open(gw.url), await open(gw.url)]
      sockets.push(...busy)
      const answers = busy.map(ask)
      while (held < 2) await new Promise(resolve => setTimeout(resolve, 20))
      const refused = await open(gw.url)
      sockets.push(refused)
      expect(await ask(refused)).toBe('closed')
      release()
      expect(await Promise.all(answers)).toEqual(['HTTP/1.1 200 OK', 'HTTP/1.1 200 OK'])
      hold = undefined
      // Counted (at least these; the test's own earlier connections may have been shed as well).
      const metrics = await (await fetch(`${gw.url}/metrics`)).text()
      for (const reason of ['shed', 'refused']) expect(Number(new RegExp(`closed_total\\{reason="${reason}"\\} (\\d+)`).exec(metrics)?.[1])).toBeGreaterThanOrEqual(1)
    } finally {
      for (const s of sockets) s.destroy()
      await gw.close()
      await store.close()
    }
  })

  it('closes a new connection that has not sent a whole request head in time, silent or dripping; answers one that has', async () => {
    const store = await PackStore.openRepo(tmp())
    const gw = await startGateway({ caches: async () => undefined, disputes: async () => [], stats: () => ({}), blocks: store, local: store, record: async () => undefined, host: '127.0.0.1', port: 0, headTimeoutMs: 500 })
    const sockets: Socket[] = []
    try {
      const [silent, dripping, prompt] = [await open(gw.url), await open(gw.url), await open(gw.url)]
      sockets.push(silent!, dripping!, prompt!)
      dripping!.write('GET /nix-cache-info HTTP/1.1\r\nhost: x\r\n')
      const drip = setInterval(() => { if (!dripping!.destroyed) dripping!.write('x-drip: 1\r\n') }, 100)
      // A whole head in time is answered, also when it came close to the deadline.
      await new Promise(resolve => setTimeout(resolve, 300))
      expect(await ask(prompt!)).toBe('HTTP/1.1 200 OK')
      const closed = await Promise.all([closes(silent!), closes(dripping!)])
      clearInterval(drip)
      expect(closed).toEqual([true, true])
      expect(await (await fetch(`${gw.url}/metrics`)).text()).toContain('nixipfs_http_connections_closed_total{reason="head_timeout"} 2\n')
    } finally {
      for (const s of sockets) s.destroy()
      await gw.close()
      await store.close()
    }
  })

  it('closes a kept-alive connection when silent, and when it drips its next request head', async () => {
    const server = createServer((_req, res) => res.end('ok'))
    limitConnections(server, { maxConnections: 10, headTimeoutMs: 500, keepAliveMs: 300 })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    const sockets: Socket[] = []
    try {
      const [silent, dripping] = [await open(url), await open(url)]
      sockets.push(silent!, dripping!)
      expect(await ask(silent!)).toBe('HTTP/1.1 200 OK')
      expect(await ask(dripping!)).toBe('HTTP/1.1 200 OK')
      // Kept alive, then asked again in time: answered on the same connection.
      await new Promise(resolve => setTimeout(resolve, 100))
      expect(await ask(silent!)).toBe('HTTP/1.1 200 OK')
      dripping!.write('GET / HTTP/1.1\r\nhost: x\r\n')
      const drip = setInterval(() => { if (!dripping!.destroyed) dripping!.write('x-drip: 1\r\n') }, 100)
      const closed = await Promise.all([closes(silent!), closes(dripping!)])
      clearInterval(drip)
      expect(closed).toEqual([true, true])
    } finally {
      for (const s of sockets) s.destroy()
      server.close()
    }
  })

  it('sizes the connection cap within the open-file limit, keeping files for packs and peers', () => {
    expect(openFileLimit()).toBe(Number(execFileSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' })))
    expect(connectionCapWithin(8192, 1024)).toBe(768) // systemd's default soft limit
    expect(connectionCapWithin(8192, 65536)).toBe(8192)
    expect(connectionCapWithin(8192, undefined)).toBe(8192)
    expect(connectionCapWithin(8192, 100)).toBe(1)
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
