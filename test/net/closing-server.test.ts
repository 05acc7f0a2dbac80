import { randomBytes } from 'node:crypto'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CID } from 'multiformats/cid'
import { HttpPeer } from '../../src/net/http-peer.js'
import { HttpBinaryCache } from '../../src/upstream/http-cache.js'
import { tmp } from '../helpers/cli.js'
import { pythonHttpServer, serveFiles } from '../helpers/http.js'

// Servers that close each connection after one answer. A reader that takes
// the body slower than it arrives has it paused when the connection ends:
// undici 7 threw an AssertionError from that socket event (nodejs/undici#5360),
// which no caller can catch, and the process ended. Both readers of outside
// servers, the upstream cache and the HTTP peer, read such bodies whole.
const CID_TEXT = 'bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy'

describe('reading from servers that close the connection after each answer', () => {
  const root = tmp()
  // Larger than what a peer's reader queues before it pauses the body (8 MiB).
  const big = randomBytes(12 * 1024 * 1024)
  const servers: Array<() => Promise<void>> = []
  const urls: Record<string, string> = {}

  beforeAll(async () => {
    writeFileSync(join(root, 'big.nar.xz'), big)
    // A peer's CAR URL is /ipfs/<cid>?format=car…: a file server answers it with the file ipfs/<cid>.
    mkdirSync(join(root, 'ipfs'))
    writeFileSync(join(root, 'ipfs', CID_TEXT), big)
    const python = await pythonHttpServer(root)
    servers.push(python.close)
    urls['python3 -m http.server'] = python.url
    const close = await serveFiles(root, new Map(), { close: true })
    servers.push(async () => { close.server.close() })
    urls['Connection: close'] = close.url
  })
  afterAll(async () => { for (const close of servers) await close() })

  /** Reads a body slower than loopback delivers it, so the reader pushes back until the last piece. */
  const slowly = async (body: AsyncIterable<Uint8Array>): Promise<Buffer> => {
    const parts: Uint8Array[] = []
    for await (const part of body) {
      await new Promise(resolve => setTimeout(resolve, 1))
      parts.push(part)
    }
    return Buffer.concat(parts)
  }

  for (const kind of ['python3 -m http.server', 'Connection: close']) {
    it(`an upstream cache behind ${kind}: a NAR read slowly arrives whole, three times in a row`, async () => {
      const upstream = new HttpBinaryCache(urls[kind]!)
      try {
        for (let i = 0; i < 3; i++) expect((await slowly(await upstream.file('big.nar.xz'))).equals(big)).toBe(true)
      } finally {
        await upstream.close()
      }
    })

    it(`an HTTP peer behind ${kind}: a CAR read slowly arrives whole`, async () => {
      const peer = new HttpPeer(urls[kind]!)
      const car = await peer.car(CID.parse(CID_TEXT))
      expect(car).toBeDefined()
      expect((await slowly(car!)).equals(big)).toBe(true)
    })
  }
})
