import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createServer, request, type Server } from 'node:http'
import { connect, createServer as createTcpServer, type AddressInfo } from 'node:net'
import { CarBlockIterator } from '@ipld/car'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BlockUnavailableError } from '../../src/errors.js'
import { checkBlock, cidOf, DAG_PB_CODE, getVerified, RAW_CODE } from '../../src/ipfs/block.js'
import { fixedChunker } from '../../src/ipfs/chunker.js'
import { walkDag } from '../../src/ipfs/dag.js'
import { carBytes } from '../../src/ipfs/car.js'
import { importFile, readFile } from '../../src/ipfs/file-dag.js'
import { PackStore } from '../../src/ipfs/pack-store.js'
import { startGateway, type Gateway } from '../../src/gateway/server.js'
import { NetworkBlocks } from '../../src/net/fetcher.js'
import { HttpPeer } from '../../src/net/http-peer.js'
import { tmp } from '../helpers/cli.js'

async function * once (bytes: Uint8Array): AsyncGenerator<Uint8Array> { yield bytes }
async function collect (it: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = []
  for await (const p of it) parts.push(p)
  return Buffer.concat(parts)
}

const NAME = 'k51qzi5uqu5dh9ihj4p2v5sl3hxvv27ryx2w0xrsv6jmmqi91t9xp8p0kyxqbb'

/** A node serving `store` over the trustless gateway routes (no Nix caches). */
async function serve (store: PackStore, records: Record<string, Uint8Array> = {}): Promise<Gateway> {
  return await startGateway({ caches: async () => undefined, disputes: async () => [], stats: () => ({}), blocks: store, local: store, record: async n => records[n], host: '127.0.0.1', port: 0 })
}

/** A peer that flips the last byte of every response body under /ipfs/. */
async function corrupting (upstream: string): Promise<{ url: string, server: Server }> {
  const server = createServer((req, res) => {
    fetch(upstream + req.url, { headers: { accept: req.headers.accept ?? '*/*' } }).then(async up => {
      const body = Buffer.from(await up.arrayBuffer())
      if (up.ok && body.length > 0) body[body.length - 1]! ^= 1
      res.writeHead(up.status, { 'content-type': up.headers.get('content-type') ?? '' })
      res.end(body)
    }, () => { res.writeHead(502); res.end() })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server }
}

/** A TCP relay to `port` that counts the bytes the far side sends back. */
async function countingRelay (port: number): Promise<{ url: string, received: () => number, close: () => void }> {
  let received = 0
  const server = createTcpServer(client => {
    const far = connect(port, '127.0.0.1')
    far.on('data', (chunk: Buffer) => { received += chunk.length })
    client.pipe(far).pipe(client)
    far.on('error', () => client.destroy())
    client.on('error', () => far.destroy())
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, received: () => received, close: () => server.close() }
}

describe('trustless gateway routes and the network block source', () => {
  const data = randomBytes(3 * 1024 * 1024 + 12345)
  let origin: PackStore
  let root: Awaited<ReturnType<typeof importFile>>['cid']
  let gw: Gateway
  const record = randomBytes(200)

  beforeAll(async () => {
    origin = await PackStore.openRepo(tmp())
    root = (await importFile(origin, once(data), fixedChunker(256 * 1024), 4)).cid
    await origin.flush()
    gw = await serve(origin, { [NAME]: record })
  })
  afterAll(async () => { await gw.close(); await origin.close() })

  it('serves single blocks with ?format=raw or Accept: application/vnd.ipld.raw', async () => {
    const leaf = cidOf(RAW_CODE, data.subarray(0, 256 * 1024))
    for (const init of [{ url: `/ipfs/${leaf.toString()}?format=raw` }, { url: `/ipfs/${leaf.toString()}`, headers: { accept: 'application/vnd.ipld.raw' } }]) {
      const r = await fetch(gw.url + init.url, { headers: init.headers })
      expect(r.status).toBe(200)
      expect(r.headers.get('content-type')).toBe('application/vnd.ipld.raw')
      expect(Buffer.compare(Buffer.from(await r.arrayBuffer()), data.subarray(0, 256 * 1024))).toBe(0)
    }
  })

  it('serves a DAG as a CAR that @ipld/car reads, depth first, every block once', async () => {
    const r = await fetch(`${gw.url}/ipfs/${root.toString()}?format=car`)
    expect(r.status).toBe(200)
    expect(r.headers.get('content-type')).toMatch(/^application\/vnd\.ipld\.car; version=1; order=dfs; dups=n/)
    const car = await CarBlockIterator.fromIterable(r.body as unknown as AsyncIterable<Uint8Array>)
    expect((await car.getRoots()).map(String)).toEqual([root.toString()])
    const got: string[] = []
    for await (const block of car) got.push(block.cid.toString())
    const want: string[] = []
    for await (const { cid } of walkDag(origin, root)) want.push(cid.toString())
    expect(got).toEqual(want)
    expect(got.length).toBeGreaterThan(14) // 13 leaves + intermediate nodes + root
    const one = await CarBlockIterator.fromIterable((await fetch(`${gw.url}/ipfs/${root.toString()}?format=car&dag-scope=block`)).body as unknown as AsyncIterable<Uint8Array>)
    let n = 0
    for await (const _ of one) n++
    expect(n).toBe(1)
  })

  it('serves stored IPNS records as signed, and answers 404/406/400 otherwise', async () => {
    const r = await fetch(`${gw.url}/ipns/${NAME}?format=ipns-record`)
    expect(r.status).toBe(200)
    expect(r.headers.get('content-type')).toBe('application/vnd.ipfs.ipns-record')
    expect(Buffer.compare(Buffer.from(await r.arrayBuffer()), record)).toBe(0)
    expect((await fetch(`${gw.url}/ipns/${NAME.replace('k51', 'k52')}?format=ipns-record`)).status).toBe(404)
    expect((await fetch(`${gw.url}/ipfs/${root.toString()}`)).status).toBe(406)
    expect((await fetch(`${gw.url}/ipfs/${cidOf(RAW_CODE, randomBytes(8)).toString()}?format=raw`)).status).toBe(404)
    expect((await fetch(`${gw.url}/ipfs/notacid?format=raw`)).status).toBe(400)
    expect((await fetch(`${gw.url}/ipfs/${root.toString()}?format=car&dag-scope=subtree`)).status).toBe(400)
  })

  it('fetches a DAG from a peer as one CAR stream below its upper levels, verifies and keeps it', async () => {
    const local = await PackStore.openRepo(tmp())
    const blocks = new NetworkBlocks(local, { http: [new HttpPeer(gw.url)] })
    await blocks.prefetch(root)
    // The root and the leaves' parents one by one (to see whether any leaf is held), every leaf in the CAR.
    const kinds = { leaves: 0, nodes: 0 }
    for await (const { cid } of walkDag(origin, root)) kinds[cid.code === DAG_PB_CODE ? 'nodes' : 'leaves']++
    expect(blocks.counters.http).toBe(kinds.nodes)
    expect(blocks.counters.car).toBe(kinds.leaves)
    expect(Buffer.compare(await collect(readFile(blocks, root)), data)).toBe(0)
    expect(local.has(root)).toBe(true)
    // Kept: a second read needs no peer.
    const offline = new NetworkBlocks(local, { http: [] })
    expect(Buffer.compare(await collect(readFile(offline, root)), data)).toBe(0)
    expect(offline.counters.local).toBe(kinds.nodes + kinds.leaves)
    await local.close()
  })

  it('asks first the peer that served the last block: a walk of one DAG costs a peer without it one request, not one per block', async () => {
    let misses = 0
    const empty = createServer((_req, res) => { misses++; res.writeHead(404); res.end() })
    await new Promise<void>(resolve => empty.listen(0, '127.0.0.1', resolve))
    try {
      const blocks = new NetworkBlocks(await PackStore.openRepo(tmp()), { http: [new HttpPeer(`http://127.0.0.1:${(empty.address() as AddressInfo).port}`), new HttpPeer(gw.url)] })
      let walked = 0
      for await (const { cid } of walkDag(origin, root)) {
        await getVerified(blocks, cid)
        walked++
      }
      expect(walked).toBeGreaterThan(8)
      expect(blocks.counters.http).toBe(walked)
      expect(misses).toBeLessThanOrEqual(1)
    } finally {
      empty.close()
    }
  })

  it('asks a peer that failed lately after the others: one that never answers costs one timeout, not one per block', async () => {
    let silentHits = 0
    const silent = createServer(() => { silentHits++ }) // takes requests, never answers
    await new Promise<void>(resolve => silent.listen(0, '127.0.0.1', resolve))
    const other = await PackStore.openRepo(tmp())
    const otherRoot = (await importFile(other, once(randomBytes(1024 * 1024)), fixedChunker(64 * 1024))).cid
    const gw2 = await serve(other)
    try {
      const limits = { idleMs: 300, connections: 4 }
      const blocks = new NetworkBlocks(await PackStore.openRepo(tmp()), { http: [new HttpPeer(`http://127.0.0.1:${(silent.address() as AddressInfo).port}`, limits), new HttpPeer(gw.url, limits), new HttpPeer(gw2.url, limits)] })
      const cids = async (r: typeof root, from: PackStore): Promise<Array<typeof root>> => { const all = []; for await (const { cid } of walkDag(from, r)) all.push(cid); return all }
      const [mine, theirs] = [await cids(root, origin), await cids(otherRoot, other)]
      // Blocks of two DAGs held by two peers, alternately: each block is first asked of the peer that served the last.
      for (let i = 0; i < Math.min(mine.length, theirs.length); i++) {
        await getVerified(blocks, mine[i]!)
        await getVerified(blocks, theirs[i]!)
      }
      expect(Math.min(mine.length, theirs.length)).toBeGreaterThan(8)
      expect(silentHits).toBeLessThanOrEqual(1)
    } finally {
      silent.closeAllConnections()
      silent.close()
      await gw2.close()
      await other.close()
    }
  })

  it('read while it is prefetched from one peer, a DAG crosses the wire once: the reader waits for the CAR rather than fetching blocks beside it', async () => {
    const big = randomBytes(8 * 1024 * 1024)
    const bigRoot = (await importFile(origin, once(big), fixedChunker(64 * 1024))).cid
    await origin.flush()
    const relay = await countingRelay(Number(new URL(gw.url).port))
    const local = await PackStore.openRepo(tmp())
    try {
      const blocks = new NetworkBlocks(local, { http: [new HttpPeer(relay.url)] })
      const prefetch = blocks.prefetch(bigRoot)
      expect(Buffer.compare(await collect(readFile(blocks, bigRoot)), big)).toBe(0)
      await prefetch
      // 8 MiB of leaves, the root, HTTP and CAR framing: not the leaves the reader's read-ahead took (1 MiB) a second time.
      expect(relay.received()).toBeLessThan(big.length + 128 * 1024)
      expect(blocks.counters.car).toBeGreaterThan(100)
    } finally {
      relay.close()
      await local.close()
    }
  })

  it('crosses the wire once also when the prefetch\'s look at the repo is slower than the peer (a loaded disk): the reader still waits for its decision', async () => {
    const big = randomBytes(4 * 1024 * 1024)
    const bigRoot = (await importFile(origin, once(big), fixedChunker(64 * 1024))).cid
    await origin.flush()
    const relay = await countingRelay(Number(new URL(gw.url).port))
    const local = await PackStore.openRepo(tmp())
    // The prefetch reads the repo's block index again before its first fetch; the reader finds it just read and goes on.
    const refresh = local.refresh.bind(local)
    local.refresh = async () => { await new Promise(resolve => setTimeout(resolve, 300)); await refresh() }
    try {
      const blocks = new NetworkBlocks(local, { http: [new HttpPeer(relay.url)] })
      const prefetch = blocks.prefetch(bigRoot)
      expect(Buffer.compare(await collect(readFile(blocks, bigRoot)), big)).toBe(0)
      await prefetch
      // The CAR stream took the leaves (the reader fetched them alone before, and the stream carried them again).
      expect(blocks.counters.car).toBeGreaterThan(48)
      expect(relay.received()).toBeLessThan(big.length + 128 * 1024)
    } finally {
      relay.close()
      await local.close()
    }
  }, 30_000)

  it('gives the reader the blocks the prefetch fetched as they came, checked, not read back from the repo and hashed again', async () => {
    const big = randomBytes(4 * 1024 * 1024)
    const bigRoot = (await importFile(origin, once(big), fixedChunker(64 * 1024))).cid
    await origin.flush()
    const local = await PackStore.openRepo(tmp())
    let reads = 0
    const read = local.read.bind(local)
    local.read = async cid => { reads++; return await read(cid) }
    try {
      const blocks = new NetworkBlocks(local, { http: [new HttpPeer(gw.url)] })
      await blocks.prefetch(bigRoot)
      expect(blocks.counters.car).toBe(64) // the 64 leaves; the root came first, alone
      expect(Buffer.compare(await collect(readFile(blocks, bigRoot)), big)).toBe(0)
      expect(reads).toBe(1) // the root, which the prefetch's look at the DAG fetched alone
      // Stored all the same: a second reader finds every block in the repo.
      const again = new NetworkBlocks(local, { http: [] })
      expect(Buffer.compare(await collect(readFile(again, bigRoot)), big)).toBe(0)
      expect(reads).toBeGreaterThanOrEqual(1 + 65)
    } finally {
      await local.close()
    }
  }, 30_000)

  it('holding part of a DAG (an earlier build), fetches from one peer only the blocks it lacks', async () => {
    // The next build: one 256 KiB chunk in the middle changed, the other 13 the same.
    const next = Buffer.from(data)
    randomBytes(256 * 1024).copy(next, 6 * 256 * 1024)
    const nextRoot = (await importFile(origin, once(next), fixedChunker(256 * 1024), 4)).cid
    await origin.flush()
    const relay = await countingRelay(Number(new URL(gw.url).port))
    const local = await PackStore.openRepo(tmp())
    try {
      await importFile(local, once(data), fixedChunker(256 * 1024), 4)
      await local.flush()
      const blocks = new NetworkBlocks(local, { http: [new HttpPeer(relay.url)] })
      const prefetch = blocks.prefetch(nextRoot)
      expect(Buffer.compare(await collect(readFile(blocks, nextRoot)), next)).toBe(0)
      await prefetch
      // The changed chunk and the DAG nodes above it (a few KiB) came, and HTTP headers: far less than the 3 MiB a CAR of it all would carry.
      expect(relay.received()).toBeLessThan(256 * 1024 + 64 * 1024)
      expect(relay.received()).toBeGreaterThan(256 * 1024)
      expect(blocks.counters.local).toBeGreaterThanOrEqual(13)
    } finally {
      relay.close()
      await local.close()
    }
  })

  it('detects a peer sending corrupt blocks, takes them from another, and fails clearly when none has them', async () => {
    const evil = await corrupting(gw.url)
    const stores: PackStore[] = []
    try {
      const local = await PackStore.openRepo(tmp())
      const blocks = new NetworkBlocks(local, { http: [new HttpPeer(evil.url), new HttpPeer(gw.url)] })
      // Single-block fetches (no CAR): the corrupting peer is asked first.
      expect(Buffer.compare(await collect(readFile(blocks, root)), data)).toBe(0)
      expect(blocks.counters.corrupt).toBe(1) // then skipped for a while
      expect(blocks.counters.http).toBeGreaterThan(14)
      const nowhere = new NetworkBlocks(await PackStore.openRepo(tmp()), { http: [new HttpPeer(evil.url)] })
      stores.push(nowhere.local)
      await expect(collect(readFile(nowhere, root))).rejects.toBeInstanceOf(BlockUnavailableError)
      expect(nowhere.counters.corrupt).toBe(1)
      // A swarm of the two: the corrupt block is refused, that peer leaves the swarm, the other delivers every block once.
      const viaSwarm = new NetworkBlocks(await PackStore.openRepo(tmp()), { http: [new HttpPeer(evil.url), new HttpPeer(gw.url)] })
      stores.push(viaSwarm.local)
      const prefetch = viaSwarm.prefetch(root)
      expect(Buffer.compare(await collect(readFile(viaSwarm, root)), data)).toBe(0)
      await prefetch
      expect(viaSwarm.counters.corrupt).toBeGreaterThanOrEqual(1)
      let dagBlocks = 0
      for await (const _ of walkDag(origin, root)) dagBlocks++
      const [report] = viaSwarm.swarmReports()
      expect(report!.blocks).toBe(dagBlocks)
      expect(report!.peers).toEqual([{ url: evil.url, blocks: 0, rate: 0 }, { url: gw.url, blocks: dagBlocks, rate: expect.any(Number) }])
      expect(viaSwarm.counters.peers).toEqual({ [gw.url]: dagBlocks })
      await local.close()
    } finally {
      evil.server.close()
      await Promise.all(stores.map(async s => await s.close()))
    }
  })

  it('swarms one DAG after another from three peers: throughput measured on the first never stalls the second', async () => {
    const more = await Promise.all([serve(origin), serve(origin)])
    const other = randomBytes(1024 * 1024 + 777)
    const second = (await importFile(origin, once(other), fixedChunker(256 * 1024), 4)).cid
    await origin.flush()
    const local = await PackStore.openRepo(tmp())
    try {
      const blocks = new NetworkBlocks(local, { http: [gw, ...more].map(g => new HttpPeer(g.url)) })
      for (const [cid, bytes] of [[root, data], [second, other]] as const) {
        const prefetch = blocks.prefetch(cid)
        const read = collect(readFile(blocks, cid))
        const late = new Promise<never>((_resolve, reject) => setTimeout(() => reject(new Error(`${cid.toString()} not read within 10 s`)), 10_000).unref())
        expect(Buffer.compare(await Promise.race([read, late]), bytes)).toBe(0)
        await prefetch
      }
      const reports = blocks.swarmReports()
      expect(reports.map(r => r.root)).toEqual([root.toString(), second.toString()])
      // Each block once, from the three together.
      expect(Object.values(blocks.counters.peers).reduce((a, b) => a + b, 0)).toBe(reports[0]!.blocks + reports[1]!.blocks)
    } finally {
      await local.close()
      await Promise.all(more.map(async g => await g.close()))
    }
  })

  it('asks peers 150 ms away for runs of blocks as byte ranges, several at once: fewer requests than blocks, none waiting on its own round trip', async () => {
    const many = randomBytes(4 * 1024 * 1024)
    const manyRoot = (await importFile(origin, once(many), fixedChunker(64 * 1024))).cid
    await origin.flush()
    /** A peer answering `gw`'s requests 150 ms late, counting them and the most it had at once. */
    const far = async (): Promise<{ url: string, most: () => number, ranges: () => number, requests: () => number, server: Server }> => {
      let inFlight = 0
      let most = 0
      let requests = 0
      let ranges = 0
      const server = createServer((req, res) => {
        most = Math.max(most, ++inFlight)
        requests++
        if ((req.url ?? '').includes('entity-bytes=')) ranges++
        setTimeout(() => {
          fetch(gw.url + (req.url ?? '/'), { headers: { accept: req.headers.accept ?? '*/*' } }).then(async up => {
            res.writeHead(up.status, { 'content-type': up.headers.get('content-type') ?? '' })
            res.end(Buffer.from(await up.arrayBuffer()))
          }, () => { res.writeHead(502); res.end() }).finally(() => inFlight--)
        }, 150)
      })
      await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
      return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, most: () => most, ranges: () => ranges, requests: () => requests, server }
    }
    const peers = [await far(), await far()]
    const local = await PackStore.openRepo(tmp())
    try {
      const blocks = new NetworkBlocks(local, { http: peers.map(p => new HttpPeer(p.url)) })
      await blocks.prefetch(manyRoot)
      expect(Buffer.compare(await collect(readFile(blocks, manyRoot)), many)).toBe(0)
      const [report] = blocks.swarmReports()
      expect(report!.blocks).toBeGreaterThan(64)
      expect(report!.peers.every(p => p.blocks > 0)).toBe(true) // both took part
      expect(peers.reduce((n, p) => n + p.requests(), 0)).toBeLessThan(64 / 4) // runs, not a request per block
      expect(peers.reduce((n, p) => n + p.ranges(), 0)).toBeGreaterThan(0)
      expect(Math.max(...peers.map(p => p.most()))).toBeGreaterThan(1)
    } finally {
      for (const p of peers) p.server.close()
      await local.close()
    }
  })

  /** A peer in front of `gw` that answers byte-range CARs its own way (`ranges`), and everything `delayMs` late; counts the requests. */
  async function rangePeer (ranges: 'refuse' | 'die' | 'trickle' | 'stray' | 'pass', delayMs = 0): Promise<{ url: string, requests: () => { blocks: number, ranges: number }, server: Server }> {
    const seen = { blocks: 0, ranges: 0 }
    const server = createServer((req, res) => {
      const range = (req.url ?? '').includes('entity-bytes=')
      if (range) seen.ranges++
      else seen.blocks++
      if (range && ranges === 'refuse') { res.writeHead(400); res.end('entity-bytes is not supported'); return }
      if (ranges === 'stray' && (req.url ?? '').includes('format=car')) {
        // A valid CAR of valid blocks, none of them asked for, one every 100 ms for ever.
        res.writeHead(200, { 'content-type': 'application/vnd.ipld.car' })
        const stray = async function * () {
          while (!res.destroyed) {
            const bytes = randomBytes(1024)
            yield { cid: cidOf(RAW_CODE, bytes), bytes }
            await new Promise(resolve => setTimeout(resolve, 100))
          }
        }
        ;(async () => { for await (const piece of carBytes([root], stray())) if (!res.destroyed) res.write(piece) })().catch(() => {})
        return
      }
      setTimeout(() => request(gw.url + (req.url ?? '/'), { headers: { accept: req.headers.accept ?? '*/*' } }, up => {
        const headers = { ...up.headers }
        delete headers['content-length']
        res.writeHead(up.statusCode ?? 502, headers)
        if (!range || ranges === 'pass') { up.pipe(res); return }
        if (ranges === 'trickle') {
          // Half a block, then a byte every 100 ms: the connection never goes idle, the run never ends.
          const held: Buffer[] = []
          up.on('data', (chunk: Buffer) => held.push(chunk))
          up.on('end', () => {
            const body = Buffer.concat(held)
            res.write(body.subarray(0, 128 * 1024))
            let at = 128 * 1024
            const drip = setInterval(() => { if (at < body.length && !res.destroyed) res.write(body.subarray(at, ++at)); else clearInterval(drip) }, 100)
            res.on('close', () => clearInterval(drip))
          })
          return
        }
        // Half a block in, the connection is reset.
        let sent = 0
        up.on('data', (chunk: Buffer) => {
          if (sent > 128 * 1024) return
          res.write(chunk)
          sent += chunk.length
          if (sent > 128 * 1024) { up.destroy(); res.destroy() }
        })
      }).on('error', () => res.destroy()).end(), delayMs)
    })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests: () => seen, server }
  }

  it('asks a peer that refuses byte ranges (HTTP 400) for single blocks instead: it stays in the swarm', async () => {
    const refusing = await rangePeer('refuse')
    // The other answers 200 ms late, so the refusing one is measured first and asked for runs.
    const slow = await rangePeer('pass', 200)
    const local = await PackStore.openRepo(tmp())
    const said: string[] = []
    const log = { warn: (m: string) => said.push(m), debug: (m: string) => said.push(m) }
    try {
      const blocks = new NetworkBlocks(local, { http: [new HttpPeer(refusing.url), new HttpPeer(slow.url)], log })
      await blocks.prefetch(root)
      expect(Buffer.compare(await collect(readFile(blocks, root)), data)).toBe(0)
      expect(refusing.requests().ranges).toBeGreaterThan(0)
      expect(said.some(m => m.includes(`${refusing.url} refused a byte range`))).toBe(true)
      expect(said.filter(m => m.includes(`${refusing.url} left the fetch`))).toEqual([])
      expect(blocks.counters.corrupt).toBe(0)
    } finally {
      refusing.server.close()
      slow.server.close()
      await local.close()
    }
  })

  it('when a peer dies in the middle of a byte range, the others deliver the rest; nothing corrupt is kept', async () => {
    const dying = await rangePeer('die')
    // The other answers 200 ms late, so the dying one is measured first and given runs.
    const slow = await rangePeer('pass', 200)
    const local = await PackStore.openRepo(tmp())
    const said: string[] = []
    const log = { warn: (m: string) => said.push(m), debug: (m: string) => said.push(m) }
    try {
      const blocks = new NetworkBlocks(local, { http: [new HttpPeer(dying.url), new HttpPeer(slow.url)], log })
      await blocks.prefetch(root)
      expect(Buffer.compare(await collect(readFile(blocks, root)), data)).toBe(0)
      const report = blocks.swarmReports()[0]!
      expect(dying.requests().ranges).toBeGreaterThan(0)
      let dagBlocks = 0
      for await (const { cid } of walkDag(origin, root)) {
        dagBlocks++
        const parts: Uint8Array[] = []
        for await (const p of local.get(cid) as AsyncIterable<Uint8Array>) parts.push(p)
        expect(() => checkBlock(cid, Buffer.concat(parts))).not.toThrow()
      }
      // Every block once: the dying peer's lost run went to the other.
      expect(report.blocks).toBe(dagBlocks)
      expect(report.peers.find(p => p.url === slow.url)!.blocks).toBeGreaterThan(0)
      expect(blocks.counters.corrupt).toBe(0)
      // Said in words (Node's own message is a bare "aborted").
      expect(said.some(m => m.includes(`${dying.url} left the fetch`) && m.includes('closed the connection before the body ended')), said.join('\n')).toBe(true)
    } finally {
      dying.server.close()
      slow.server.close()
      await local.close()
    }
  })

  it('gives up a byte range that trickles (no block for the stall time), and takes its blocks from the others', async () => {
    const trickling = await rangePeer('trickle')
    const slow = await rangePeer('pass', 200)
    const local = await PackStore.openRepo(tmp())
    const said: string[] = []
    const log = { warn: (m: string) => said.push(m), debug: (m: string) => said.push(m) }
    try {
      const blocks = new NetworkBlocks(local, { http: [new HttpPeer(trickling.url), new HttpPeer(slow.url)], stallMs: 1000, log })
      const read = (async () => { await blocks.prefetch(root); return await collect(readFile(blocks, root)) })()
      const late = new Promise<never>((_resolve, reject) => setTimeout(() => reject(new Error('not read within 20 s')), 20_000).unref())
      expect(Buffer.compare(await Promise.race([read, late]), data)).toBe(0)
      expect(trickling.requests().ranges).toBeGreaterThan(0)
      expect(said.some(m => m.includes(`${trickling.url} left the fetch`) && m.includes('stalled'))).toBe(true)
    } finally {
      trickling.server.closeAllConnections()
      trickling.server.close()
      slow.server.close()
      await local.close()
    }
  })

  it('gives up a CAR that brings only blocks nobody asked for: the others, or single blocks, deliver the rest', async () => {
    // A peer that streamed stray blocks for ever kept its run (and a lone peer's whole CAR) and Nix waiting: each block reset the stall timer.
    for (const peers of [['stray', 'pass'], ['stray']] as const) {
      const servers = await Promise.all(peers.map(async mode => await rangePeer(mode, mode === 'pass' ? 200 : 0)))
      const local = await PackStore.openRepo(tmp())
      const said: string[] = []
      const log = { warn: (m: string) => said.push(m), debug: (m: string) => said.push(m) }
      try {
        const blocks = new NetworkBlocks(local, { http: servers.map(s => new HttpPeer(s.url)), stallMs: 1000, log })
        const read = (async () => { await blocks.prefetch(root); return await collect(readFile(blocks, root)) })()
        const late = new Promise<never>((_resolve, reject) => setTimeout(() => reject(new Error(`${peers.join(' and ')}: not read within 20 s`)), 20_000).unref())
        expect(Buffer.compare(await Promise.race([read, late]), data)).toBe(0)
        expect(said.some(m => m.includes(servers[0]!.url) && m.includes('stalled')), said.join('\n')).toBe(true)
      } finally {
        for (const s of servers) { s.server.closeAllConnections(); s.server.close() }
        await local.close()
      }
    }
  }, 60_000)

  it('keeps at most --peer-connections requests in flight to one peer', async () => {
    let inFlight = 0
    let most = 0
    const slow = createServer((_req, res) => {
      most = Math.max(most, ++inFlight)
      setTimeout(() => { inFlight--; res.writeHead(404); res.end() }, 50)
    })
    await new Promise<void>(resolve => slow.listen(0, '127.0.0.1', resolve))
    try {
      const peer = new HttpPeer(`http://127.0.0.1:${(slow.address() as AddressInfo).port}`, { idleMs: 5_000, connections: 3 })
      const cids = Array.from({ length: 20 }, () => cidOf(RAW_CODE, randomBytes(16)))
      expect(await Promise.all(cids.map(async cid => await peer.block(cid)))).toEqual(cids.map(() => undefined))
      expect(most).toBe(3)
    } finally {
      slow.close()
    }
  })
})

describe('a peer that dies in the middle of a compressed CAR stream', () => {
  // Real machine code, so the CAR goes out compressed.
  const data = readFileSync(process.execPath).subarray(0, 3 * 1024 * 1024)
  let origin: PackStore
  let root: Awaited<ReturnType<typeof importFile>>['cid']
  let gw: Gateway

  beforeAll(async () => {
    origin = await PackStore.openRepo(tmp())
    root = (await importFile(origin, once(data), fixedChunker(256 * 1024), 4)).cid
    await origin.flush()
    gw = await serve(origin)
  })
  afterAll(async () => { await gw.close(); await origin.close() })

  /**
   * A proxy in front of the gateway that passes CAR responses through as sent
   * (compressed) but stops after `cutAfter` bytes of body, by resetting the
   * connection (`reset`) or by ending the response cleanly (`end`); single
   * blocks it passes through (`raw: 'honest'`) or lacks (`raw: 'missing'`).
   * The cut falls inside the second of zstd's 1 MiB frames (the first takes
   * about 650 kB here), so whole blocks came before it.
   */
  async function dying (how: 'reset' | 'end', raw: 'honest' | 'missing', cutAfter = 800_000): Promise<{ url: string, encodings: string[], close: () => void }> {
    const encodings: string[] = []
    const server = createServer((req, res) => {
      const car = (req.url ?? '').includes('format=car')
      if (!car && raw === 'missing') { res.writeHead(404); res.end(); return }
      request(gw.url + (req.url ?? '/'), { headers: { accept: req.headers.accept ?? '*/*', 'accept-encoding': req.headers['accept-encoding'] ?? '' } }, up => {
        const headers = { ...up.headers }
        delete headers['content-length']
        res.writeHead(up.statusCode ?? 502, headers)
        if (!car) { up.pipe(res); return }
        encodings.push(String(up.headers['content-encoding']))
        let sent = 0
        up.on('data', (chunk: Buffer) => {
          if (sent >= cutAfter) return
          const piece = chunk.subarray(0, cutAfter - sent)
          sent += piece.length
          res.write(piece)
          if (sent < cutAfter) return
          up.destroy()
          if (how === 'reset') res.destroy()
          else res.end()
        })
      }).on('error', () => res.destroy()).end()
    })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, encodings, close: () => { server.closeAllConnections(); server.close() } }
  }

  /** Every block of the DAG the repo holds matches its CID; the number held. */
  async function keptIntact (local: PackStore): Promise<number> {
    let held = 0
    for await (const { cid } of walkDag(origin, root)) {
      if (!local.has(cid)) continue
      held++
      const parts: Uint8Array[] = []
      for await (const p of local.get(cid) as AsyncIterable<Uint8Array>) parts.push(p)
      expect(() => checkBlock(cid, Buffer.concat(parts))).not.toThrow()
    }
    return held
  }

  for (const how of ['reset', 'end'] as const) {
    it(`(${how === 'reset' ? 'connection reset' : 'response ended early'}): the rest comes block by block, or the read fails clearly; nothing corrupt is kept`, async () => {
      const stores: PackStore[] = []
      const peers = [await dying(how, 'honest'), await dying(how, 'missing')]
      try {
        // The rest of the NAR comes block by block (here from the same peer, which still answers those).
        const local = await PackStore.openRepo(tmp())
        stores.push(local)
        const blocks = new NetworkBlocks(local, { http: [new HttpPeer(peers[0]!.url, { idleMs: 5000, connections: 4, compression: 'always' })] })
        // Prefetched before it is read: a reader's read-ahead would take blocks the stream is to deliver.
        await blocks.prefetch(root)
        expect(Buffer.compare(await collect(readFile(blocks, root)), data)).toBe(0)
        expect(peers[0]!.encodings[0]).toMatch(/^(zstd|br|gzip)$/)
        expect(blocks.counters.car).toBeGreaterThan(0) // the stream delivered its first blocks…
        expect(blocks.counters.http).toBeGreaterThan(0) // …and single blocks the rest
        expect(blocks.counters.corrupt).toBe(0)
        expect(await keptIntact(local)).toBe(blocks.counters.car + blocks.counters.http)
        // No one has the rest: the read fails with BlockUnavailableError, and what was kept is intact.
        const alone = await PackStore.openRepo(tmp())
        stores.push(alone)
        const stranded = new NetworkBlocks(alone, { http: [new HttpPeer(peers[1]!.url, { idleMs: 5000, connections: 4, compression: 'always' })] })
        await stranded.prefetch(root)
        await expect(collect(readFile(stranded, root))).rejects.toBeInstanceOf(BlockUnavailableError)
        expect(stranded.counters.car).toBeGreaterThan(0)
        expect(await keptIntact(alone)).toBe(stranded.counters.car)
      } finally {
        for (const p of peers) p.close()
        await Promise.all(stores.map(async s => await s.close()))
      }
    })
  }
})
