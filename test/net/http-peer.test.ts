import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createServer, type OutgoingHttpHeaders } from 'node:http'
import type { AddressInfo } from 'node:net'
import { gzipSync } from 'node:zlib'
import type { CID } from 'multiformats/cid'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CODINGS } from '../../src/codings.js'
import { RAW_CODE } from '../../src/ipfs/block.js'
import { fixedChunker } from '../../src/ipfs/chunker.js'
import { walkDag } from '../../src/ipfs/dag.js'
import { importFile } from '../../src/ipfs/file-dag.js'
import { PackStore } from '../../src/ipfs/pack-store.js'
import { startGateway, type Gateway } from '../../src/gateway/server.js'
import { PeerEncodingError } from '../../src/net/decode.js'
import { HttpPeer, isLoopbackUrl } from '../../src/net/http-peer.js'
import { tmp } from '../helpers/cli.js'
import { rawGet } from '../helpers/http.js'

async function * once (bytes: Uint8Array): AsyncGenerator<Uint8Array> { yield bytes }
async function collect (it: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = []
  for await (const p of it) parts.push(p)
  return Buffer.concat(parts)
}

/** A server that answers every request with `answer`'s headers and body (a peer that lies about its encoding). */
async function lyingPeer (answer: (path: string) => { headers: OutgoingHttpHeaders, body: Buffer }): Promise<{ url: string, close: () => void }> {
  const server = createServer((req, res) => {
    const { headers, body } = answer(req.url ?? '/')
    res.writeHead(200, { 'content-length': body.length, ...headers })
    res.end(body)
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => { server.closeAllConnections(); server.close() } }
}

describe('compression between peers (trustless gateway responses)', () => {
  // Real machine code (this Node's own binary) compresses ~2–3×; random bytes not at all.
  const binary = readFileSync(process.execPath).subarray(0, 3 * 1024 * 1024)
  const noise = randomBytes(2 * 1024 * 1024)
  let store: PackStore
  let gw: Gateway
  let code: CID
  let random: CID

  beforeAll(async () => {
    store = await PackStore.openRepo(tmp())
    code = (await importFile(store, once(binary), fixedChunker(256 * 1024), 4)).cid
    random = (await importFile(store, once(noise), fixedChunker(256 * 1024), 4)).cid
    await store.flush()
    gw = await startGateway({ caches: async () => undefined, disputes: async () => [], stats: () => ({}), blocks: store, local: store, record: async () => undefined, host: '127.0.0.1', port: 0 })
  })
  afterAll(async () => { await gw.close(); await store.close() })

  it('asks loopback peers for nothing compressed unless told to, and every other peer for what this Node decodes', () => {
    expect(isLoopbackUrl('http://127.0.0.1:8080')).toBe(true)
    expect(isLoopbackUrl('http://[::1]:8080/')).toBe(true)
    expect(isLoopbackUrl('http://localhost:1')).toBe(true)
    expect(isLoopbackUrl('http://10.0.0.2:8080')).toBe(false)
    expect(new HttpPeer('http://127.0.0.1:1').codings).toEqual([])
    expect(new HttpPeer('http://10.0.0.2:1').codings).toEqual(CODINGS)
    expect(new HttpPeer('http://127.0.0.1:1', { idleMs: 1000, connections: 1, compression: 'always' }).codings).toEqual(CODINGS)
    expect(new HttpPeer('http://10.0.0.2:1', { idleMs: 1000, connections: 1, compression: 'never' }).codings).toEqual([])
  })

  it('serves a block and a CAR compressed when asked and it pays; what the client decodes equals the raw response', async () => {
    for (const coding of CODINGS) {
      const raw = await rawGet(`${gw.url}/ipfs/${code.toString()}?format=car`)
      const packed = await rawGet(`${gw.url}/ipfs/${code.toString()}?format=car`, { 'accept-encoding': coding })
      expect(raw.headers['content-encoding']).toBeUndefined()
      expect(packed.headers['content-encoding']).toBe(coding)
      expect(packed.headers.vary).toMatch(/Accept-Encoding/)
      expect(packed.headers.etag).not.toBe(raw.headers.etag)
      expect(packed.body.length * 1.5).toBeLessThan(raw.body.length)
      // The compressed response's ETag is its own, and a client holding it gets 304 (as with the raw one).
      const again = await rawGet(`${gw.url}/ipfs/${code.toString()}?format=car`, { 'accept-encoding': coding, 'if-none-match': String(packed.headers.etag) })
      expect(again.status).toBe(304)
    }
    const always = new HttpPeer(gw.url, { idleMs: 5000, connections: 4, compression: 'always' })
    const never = new HttpPeer(gw.url, { idleMs: 5000, connections: 4, compression: 'never' })
    expect(Buffer.compare(await collect((await always.car(code))!), await collect((await never.car(code))!))).toBe(0)
    // A leaf of machine code, as one raw block.
    const blocks: CID[] = []
    for await (const b of walkDag(store, code)) if (b.cid.code === RAW_CODE) blocks.push(b.cid)
    // Our preference among what the client takes: brotli before gzip.
    const block = await rawGet(`${gw.url}/ipfs/${blocks[0]!.toString()}?format=raw`, { 'accept-encoding': 'gzip, br' })
    expect(block.headers['content-encoding']).toBe('br')
    expect(Buffer.compare((await always.block(blocks[0]!))!, (await never.block(blocks[0]!))!)).toBe(0)
  })

  it('sends blocks and CARs that do not compress as they are', async () => {
    const car = await rawGet(`${gw.url}/ipfs/${random.toString()}?format=car`, { 'accept-encoding': CODINGS.join(', ') })
    expect(car.headers['content-encoding']).toBeUndefined()
    const leaves: CID[] = []
    for await (const b of walkDag(store, random)) if (b.cid.code === RAW_CODE) leaves.push(b.cid)
    const block = await rawGet(`${gw.url}/ipfs/${leaves[0]!.toString()}?format=raw`, { 'accept-encoding': CODINGS.join(', ') })
    expect(block.headers['content-encoding']).toBeUndefined()
    expect(block.body.length).toBe(256 * 1024)
  })

  it('refuses a body that lies about its encoding, is corrupt or cut, or uses a coding not asked for, with PeerEncodingError', async () => {
    const honest = gzipSync(binary.subarray(0, 200_000))
    const cases: Array<[string, { headers: OutgoingHttpHeaders, body: Buffer }, RegExp]> = [
      ['says gzip, sends raw', { headers: { 'content-encoding': 'gzip' }, body: binary.subarray(0, 200_000) }, /does not decode as gzip/],
      // Not random bytes: those now and then start with a valid, empty brotli stream (and then decode to wrong bytes, which
      // the CID check refuses, as for any peer sending wrong bytes).
      ['says br, sends garbage', { headers: { 'content-encoding': 'br' }, body: Buffer.from('not brotli at all, just text\n'.repeat(3000)) }, /does not decode as br/],
      ['gzip cut in the middle', { headers: { 'content-encoding': 'gzip' }, body: honest.subarray(0, honest.length >> 1) }, /does not decode as gzip/],
      ['gzip with a flipped byte', { headers: { 'content-encoding': 'gzip' }, body: Buffer.from(honest).fill(0x55, 1000, 1010) }, /does not decode as gzip/],
      ['a coding never asked for', { headers: { 'content-encoding': 'compress' }, body: honest }, /Content-Encoding "compress"/]
    ]
    for (const [what, answer, message] of cases) {
      const liar = await lyingPeer(() => answer)
      try {
        const peer = new HttpPeer(liar.url, { idleMs: 5000, connections: 2, compression: 'always' })
        const cid = code
        const block = await peer.block(cid).then(() => undefined, (err: Error) => err)
        expect(block, what).toBeInstanceOf(PeerEncodingError)
        expect(block!.message, what).toMatch(message)
        expect((block as PeerEncodingError).code).toBe('ERR_PEER_ENCODING')
        const car = await peer.car(cid).then(async body => await collect(body!)).then(() => undefined, (err: Error) => err)
        expect(car, what).toBeInstanceOf(PeerEncodingError)
      } finally { liar.close() }
    }
    // A peer not asked for compression that sends it anyway is refused too.
    const liar = await lyingPeer(() => ({ headers: { 'content-encoding': 'gzip' }, body: honest }))
    try {
      const never = new HttpPeer(liar.url, { idleMs: 5000, connections: 2, compression: 'never' })
      await expect(never.block(code)).rejects.toThrow(/not asked for \(asked: none\)/)
    } finally { liar.close() }
  })

  it('stops a decompression bomb: a block at the largest block size, a CAR stream at 64× what was sent', async () => {
    // 64 MiB of zeros in ~280 KiB of gzip.
    const bomb = gzipSync(Buffer.alloc(64 * 1024 * 1024), { level: 1 })
    expect(bomb.length).toBeLessThan(512 * 1024)
    const liar = await lyingPeer(() => ({ headers: { 'content-encoding': 'gzip' }, body: bomb }))
    try {
      const peer = new HttpPeer(liar.url, { idleMs: 5000, connections: 2, compression: 'always' })
      await expect(peer.block(code)).rejects.toThrow(/decodes \(gzip\) to more than 4194304 bytes/)
      let decoded = 0
      const read = (async () => { for await (const chunk of (await peer.car(code))!) decoded += chunk.length })()
      await expect(read).rejects.toThrow(/decompression bomb/)
      expect(decoded).toBeLessThan(4 * 1024 * 1024 + 64 * bomb.length)
    } finally { liar.close() }
  })
})
