import { readFileSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import { createVerifiedFetch } from '@helia/verified-fetch'
import { delegatedRoutingV1HttpApiClient } from '@helia/delegated-routing-v1-http-api-client'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { identify } from '@libp2p/identify'
import { tcp } from '@libp2p/tcp'
import { createIPNSRecord, marshalIPNSRecord, unmarshalIPNSRecord } from 'ipns'
import { base36 } from 'multiformats/bases/base36'
import { CID } from 'multiformats/cid'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runCli, startGatewayProcess, tmp, type GatewayProcess } from '../helpers/cli.js'
import { nixAvailable, nixBuild, nixDump, shellDerivation } from '../helpers/nix.js'

// A published cache served by a real gateway process over loopback, checked
// against the Delegated Routing V1 spec (https://specs.ipfs.tech/routing/http-routing-v1/,
// with IPIP-0513: nothing found is a 200 with no results) and used by stock
// IPFS clients: the spec's client and @helia/verified-fetch.
const salt = `${Date.now()}-${process.pid}`
// Several blocks: the NAR is a UnixFS file of more than one chunk.
const EXPR = shellDerivation(`routing-v1-${salt}`, 'mkdir -p $out; echo ' + salt + ' > $out/a; i=0; while [ $i -lt 40000 ]; do echo "line $i of a multi-block NAR ' + salt + '"; i=$((i+1)); done > $out/big')
const RECORD = 'application/vnd.ipfs.ipns-record'
const silent = { forComponent: () => Object.assign(() => {}, { enabled: false, error: () => {}, trace: () => {}, newScope: () => { throw new Error('unused') } }) }

/** A fresh Ed25519 key and its IPNS name (k51…). */
async function newName (): Promise<{ key: Awaited<ReturnType<typeof generateKeyPair>>, name: string }> {
  const key = await generateKeyPair('Ed25519')
  return { key, name: peerIdFromPrivateKey(key).toCID().toString(base36) }
}

describe.runIf(nixAvailable)('/routing/v1 on the gateway port (spec, stock clients)', () => {
  let path: string
  let repo: string
  let name: string
  let gw: GatewayProcess
  let peerId: string
  let root: string
  let nar: string

  beforeAll(async () => {
    ;[path] = nixBuild(EXPR) as [string]
    repo = tmp()
    const r = runCli(['publish', '--repo', repo, path])
    expect(r.status, r.stderr).toBe(0)
    name = /name: +\/ipns\/(\S+)/.exec(r.stdout)![1]!
    root = /root: +\/ipfs\/(\S+)/.exec(r.stdout)![1]!
    gw = await startGatewayProcess(['--repo', repo, '--listen-p2p', '/ip4/127.0.0.1/tcp/0'])
    peerId = gw.p2p()!.split('/p2p/')[1]!
    const narinfo = await (await fetch(`${gw.url}/${path.slice('/nix/store/'.length, '/nix/store/'.length + 32)}.narinfo`)).text()
    nar = /^URL: nar\/(\S+)\.nar$/m.exec(narinfo)![1]!
    expect(CID.parse(nar).code).toBe(0x70) // a dag-pb root over several chunks
  })
  afterAll(async () => { await gw?.stop() })

  /** The peer record this gateway gives for itself, as the spec's peer schema says. */
  function expectSelf (record: Record<string, unknown>): void {
    const port = new URL(gw.url).port
    expect(record).toEqual({
      Schema: 'peer',
      ID: peerId,
      Addrs: [gw.p2p()!.split('/p2p/')[0], `/ip4/127.0.0.1/tcp/${port}/http`],
      Protocols: ['transport-bitswap', 'transport-ipfs-gateway-http']
    })
    for (const a of record.Addrs as string[]) expect(() => multiaddr(a)).not.toThrow()
  }

  function expectListHeaders (r: Response, type: string, found: boolean): void {
    expect(r.status).toBe(200)
    expect(r.headers.get('content-type')).toBe(type)
    expect(r.headers.get('vary')).toBe('Accept')
    expect(r.headers.get('access-control-allow-origin')).toBe('*')
    expect(r.headers.get('cache-control')).toBe(`public, max-age=${found ? 300 : 15}, stale-while-revalidate=172800, stale-if-error=172800`)
    expect(Math.abs(Date.parse(r.headers.get('last-modified')!) - Date.now())).toBeLessThan(60_000)
  }

  it('GET /routing/v1/providers/{cid}: this node for the blocks it holds, as JSON and as NDJSON', async () => {
    for (const cid of [root, nar]) {
      const json = await fetch(`${gw.url}/routing/v1/providers/${cid}`)
      expectListHeaders(json, 'application/json', true)
      const body = await json.json() as { Providers: Array<Record<string, unknown>> }
      expect(Object.keys(body)).toEqual(['Providers'])
      expect(body.Providers).toHaveLength(1)
      expectSelf(body.Providers[0]!)
      const nd = await fetch(`${gw.url}/routing/v1/providers/${cid}`, { headers: { accept: 'application/x-ndjson' } })
      expectListHeaders(nd, 'application/x-ndjson', true)
      const lines = (await nd.text()).split('\n')
      expect(lines.pop()).toBe('')
      expect(lines).toHaveLength(1)
      expectSelf(JSON.parse(lines[0]!))
    }
    // A CIDv0 of the same dag-pb root names the same block.
    const v0 = CID.parse(root).toV0().toString()
    expect(((await (await fetch(`${gw.url}/routing/v1/providers/${v0}`)).json()) as { Providers: unknown[] }).Providers).toHaveLength(1)
  })

  it('nothing found is a 200 with no results and a short cache window; a malformed CID is a 400', async () => {
    const absent = 'bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy'
    const json = await fetch(`${gw.url}/routing/v1/providers/${absent}`)
    expectListHeaders(json, 'application/json', false)
    expect(await json.json()).toEqual({ Providers: [] })
    const nd = await fetch(`${gw.url}/routing/v1/providers/${absent}`, { headers: { accept: 'application/x-ndjson' } })
    expectListHeaders(nd, 'application/x-ndjson', false)
    expect(await nd.text()).toBe('')
    const other = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
    const peers = await fetch(`${gw.url}/routing/v1/peers/${other}`)
    expectListHeaders(peers, 'application/json', false)
    expect(await peers.json()).toEqual({ Peers: [] })
    expect((await fetch(`${gw.url}/routing/v1/providers/not-a-cid`)).status).toBe(400)
    expect((await fetch(`${gw.url}/routing/v1/peers/not-a-peer`)).status).toBe(400)
  })

  it('IPIP-484 filters: filter-protocols drops peers, filter-addrs drops addresses', async () => {
    const providers = async (query: string): Promise<Array<{ Addrs: string[] }>> => ((await (await fetch(`${gw.url}/routing/v1/providers/${root}?${query}`)).json()) as { Providers: Array<{ Addrs: string[] }> }).Providers
    expect(await providers('filter-protocols=transport-graphsync-filecoinv1')).toEqual([])
    expect(await providers('filter-protocols=unknown,TRANSPORT-IPFS-GATEWAY-HTTP')).toHaveLength(1)
    expect((await providers('filter-addrs=http'))[0]!.Addrs).toEqual([`/ip4/127.0.0.1/tcp/${new URL(gw.url).port}/http`])
    expect((await providers('filter-addrs=!http'))[0]!.Addrs).toEqual([gw.p2p()!.split('/p2p/')[0]])
    expect(await providers('filter-addrs=webtransport')).toEqual([])
  })

  it('GET /routing/v1/peers/{peer-id}: itself, by base58 or CIDv1 peer ID; the spec\'s client reads its records', async () => {
    for (const id of [peerId, peerIdFromString(peerId).toCID().toString(), peerIdFromString(peerId).toCID().toString(base36)]) {
      const r = await fetch(`${gw.url}/routing/v1/peers/${id}`)
      expectListHeaders(r, 'application/json', true)
      const body = await r.json() as { Peers: Array<Record<string, unknown>> }
      expect(body.Peers).toHaveLength(1)
      expectSelf(body.Peers[0]!)
    }
    // The stock client drops records whose ID it cannot read (a CID string, as some servers write): ours it reads.
    const client = delegatedRoutingV1HttpApiClient({ url: gw.url, cacheTTL: 0 })({ logger: silent as never })
    const found = []
    for await (const p of client.getProviders(CID.parse(nar))) found.push(p)
    expect(found.map(p => p.ID.toString())).toEqual([peerIdFromString(peerId).toCID().toString()])
    expect(found[0]!.Protocols).toEqual(['transport-bitswap', 'transport-ipfs-gateway-http'])
    const peers = []
    for await (const p of client.getPeers(peerIdFromString(peerId).toCID())) peers.push(p)
    expect(peers.map(p => p.Addrs.map(String))).toEqual([[gw.p2p()!.split('/p2p/')[0], `/ip4/127.0.0.1/tcp/${new URL(gw.url).port}/http`]])
    await client.stop()
  })

  it('GET /routing/v1/peers/{peer-id}: a peer libp2p met, with its addresses and bitswap', async () => {
    const other = await startGatewayProcess(['--repo', tmp(), '--cache', name, '--listen-p2p', '/ip4/127.0.0.1/tcp/0', '--peer', gw.p2p()!])
    try {
      const [address, id] = other.p2p()!.split('/p2p/') as [string, string]
      let peers: Array<Record<string, unknown>> = []
      // It dialled this gateway at start; identify tells this one its addresses and protocols shortly after.
      for (let i = 0; i < 100 && peers.length === 0; i++) {
        peers = ((await (await fetch(`${gw.url}/routing/v1/peers/${id}`)).json()) as { Peers: Array<Record<string, unknown>> }).Peers
        if (peers.length === 0) await new Promise(resolve => setTimeout(resolve, 100))
      }
      expect(peers).toHaveLength(1)
      expect(peers[0]!.ID).toBe(id)
      expect(peers[0]!.Addrs).toContain(address)
      expect(peers[0]!.Protocols).toEqual(['transport-bitswap'])
    } finally {
      await other.stop()
    }
  })

  it('GET /routing/v1/ipns/{name}: the signed record with Etag, Cache-Control from its TTL and validity, Expires; 406 unless asked for a record', async () => {
    const stored = readFileSync(join(repo, 'records', `${name}.ipns`))
    const record = unmarshalIPNSRecord(stored)
    for (const asked of [name, peerIdFromString(name).toCID().toString()]) {
      const r = await fetch(`${gw.url}/routing/v1/ipns/${asked}`, { headers: { accept: RECORD } })
      expect(r.status).toBe(200)
      expect(r.headers.get('content-type')).toBe(RECORD)
      expect(Buffer.compare(Buffer.from(await r.arrayBuffer()), stored)).toBe(0)
      expect(r.headers.get('etag')).toMatch(/^"[A-Za-z0-9_-]{43}"$/)
      const left = Math.floor((Date.parse(record.validity) - Date.now()) / 1000)
      const m = /^public, max-age=(\d+), stale-while-revalidate=(\d+), stale-if-error=(\d+)$/.exec(r.headers.get('cache-control')!)!
      expect(Number(m[1])).toBe(Number(record.ttl!) / 1e9)
      expect(Math.abs(Number(m[2]) - left)).toBeLessThan(30)
      expect(m[3]).toBe(m[2])
      expect(Date.parse(r.headers.get('expires')!)).toBe(Math.floor(Date.parse(record.validity) / 1000) * 1000)
      expect(r.headers.get('vary')).toBe('Accept')
    }
    expect((await fetch(`${gw.url}/routing/v1/ipns/${name}`)).status).toBe(406)
    expect((await fetch(`${gw.url}/routing/v1/ipns/${name}`, { headers: { accept: 'application/json' } })).status).toBe(406)
    // No record: a 200 that is not a record (IPIP-0513); the stock client calls it "not found".
    const { name: unknown } = await newName()
    const none = await fetch(`${gw.url}/routing/v1/ipns/${unknown}`, { headers: { accept: RECORD } })
    expect(none.status).toBe(200)
    expect(none.headers.get('content-type')).toMatch(/^text\/plain/)
    const client = delegatedRoutingV1HttpApiClient({ url: gw.url, cacheTTL: 0 })({ logger: silent as never })
    await expect(client.getIPNS(peerIdFromString(unknown).toCID())).rejects.toThrow(/No matching records/)
    expect(Buffer.compare(Buffer.from(await client.getIPNS(peerIdFromString(name).toCID())), stored)).toBe(0)
    await client.stop()
  })

  it('PUT /routing/v1/ipns/{name}: a forged signature, a wrong name, a lower sequence are refused with 400; a valid newer record is taken', async () => {
    const { key, name: other } = await newName()
    const { name: third } = await newName()
    const value = CID.parse(root)
    const put = async (target: string, bytes: Uint8Array, type = RECORD): Promise<Response> => await fetch(`${gw.url}/routing/v1/ipns/${target}`, { method: 'PUT', headers: { 'content-type': type }, body: bytes })
    const get = async (target: string): Promise<Buffer> => Buffer.from(await (await fetch(`${gw.url}/routing/v1/ipns/${target}`, { headers: { accept: RECORD } })).arrayBuffer())
    const seq2 = marshalIPNSRecord(await createIPNSRecord(key, value, 2n, 3600_000))
    expect((await put(other, seq2)).status).toBe(200)
    expect(Buffer.compare(await get(other), seq2)).toBe(0)

    const forged = await createIPNSRecord(key, value, 5n, 3600_000)
    forged.signatureV2[10]! ^= 1
    const bad = await put(other, marshalIPNSRecord(forged))
    expect(bad.status).toBe(400)
    expect(await bad.text()).toMatch(/not validly signed/)
    const wrongName = await put(third, marshalIPNSRecord(await createIPNSRecord(key, value, 6n, 3600_000)))
    expect(wrongName.status).toBe(400)
    const older = await put(other, marshalIPNSRecord(await createIPNSRecord(key, value, 1n, 3600_000)))
    expect(older.status).toBe(400)
    expect(await older.text()).toMatch(/older than record 2/)
    expect((await put(other, seq2.subarray(0, 40))).status).toBe(400)
    expect((await put(other, seq2, 'application/octet-stream')).status).toBe(406)
    expect(Buffer.compare(await get(other), seq2)).toBe(0)

    const seq3 = marshalIPNSRecord(await createIPNSRecord(key, value, 3n, 3600_000))
    expect((await put(other, seq3)).status).toBe(200)
    expect(Buffer.compare(await get(other), seq3)).toBe(0)
    // The node's own record cannot be rolled back or replaced by a PUT either.
    const own = readFileSync(join(repo, 'records', `${name}.ipns`))
    expect((await put(name, seq3)).status).toBe(400)
    expect(Buffer.compare(await get(name), own)).toBe(0)
  })

  it('PUT: a record body that trickles in is cut off (within 15 s; the deadline is 5 s); one past 10 KiB is refused', async () => {
    const { name: other } = await newName()
    const socket = connect(Number(new URL(gw.url).port), '127.0.0.1')
    await new Promise(resolve => socket.once('connect', resolve))
    socket.write(`PUT /routing/v1/ipns/${other} HTTP/1.1\r\nHost: x\r\nContent-Type: ${RECORD}\r\nContent-Length: 300\r\n\r\n` + 'x'.repeat(10))
    const drip = setInterval(() => { if (!socket.destroyed) socket.write('x') }, 500)
    const closed = await Promise.race([new Promise(resolve => socket.once('close', () => resolve(true))), new Promise(resolve => setTimeout(() => resolve(false), 15_000))])
    clearInterval(drip)
    socket.destroy()
    expect(closed, 'the trickling PUT still open after 15 s').toBe(true)
    const big = await fetch(`${gw.url}/routing/v1/ipns/${other}`, { method: 'PUT', headers: { 'content-type': RECORD }, body: new Uint8Array(10 * 1024 + 1) })
    expect(big.status).toBe(400)
    expect(await big.text()).toMatch(/at most 10240 bytes/)
  })

  it('other methods and paths: 501 for the spec\'s routes not served, 400 for unknown ones, CORS preflight', async () => {
    expect((await fetch(`${gw.url}/routing/v1/providers`, { method: 'PUT', body: '{}' })).status).toBe(501)
    expect((await fetch(`${gw.url}/routing/v1/dht/closest/peers/${peerId}`)).status).toBe(501)
    expect((await fetch(`${gw.url}/routing/v1/providers/${root}`, { method: 'DELETE' })).status).toBe(501)
    expect((await fetch(`${gw.url}/routing/v1/nonsense/x`)).status).toBe(400)
    const pre = await fetch(`${gw.url}/routing/v1/ipns/${name}`, { method: 'OPTIONS' })
    expect(pre.status).toBe(204)
    expect(pre.headers.get('access-control-allow-methods')).toBe('GET, PUT, OPTIONS')
    expect(pre.headers.get('access-control-allow-origin')).toBe('*')
    // Elsewhere the gateway still takes only GET and HEAD.
    expect((await fetch(`${gw.url}/nix-cache-info`, { method: 'PUT', body: 'x' })).status).toBe(405)
  })

  it('@helia/verified-fetch with this gateway as its only router resolves ipns://<name> and fetches the NAR, byte-identical to nix-store --dump', async () => {
    // Only this gateway as router, no recursive gateway; libp2p's defaults (public bootstrap peers, mDNS, UPnP, autoNAT,
    // listening on every interface) replaced: it listens nowhere and dials only what the routing answers name.
    const asked: string[] = []
    // The stock client cancels a routing answer's body when its signal aborts (at stop(), or at its timeout after the
    // caller left the iterator), also while its own reader holds the body: cancel() then rejects, unhandled ("Invalid
    // state: ReadableStream is locked", seen under load in the full suite). That rejection is the client's, not this
    // gateway's, and the bodies it cancels are clones it made: while it runs, cancelling a locked stream is a no-op.
    const realFetch = globalThis.fetch
    const realCancel = Object.getOwnPropertyDescriptor(ReadableStream.prototype, 'cancel')!
    Object.defineProperty(ReadableStream.prototype, 'cancel', {
      ...realCancel,
      value: async function (this: ReadableStream, reason?: unknown): Promise<void> {
        if (!this.locked) await (realCancel.value as ReadableStream['cancel']).call(this, reason)
      }
    })
    globalThis.fetch = async (input, init) => {
      asked.push(input instanceof Request ? input.url : String(input))
      return await realFetch(input, init)
    }
    try {
      const verifiedFetch = await createVerifiedFetch({
        gateways: [],
        routers: [gw.url],
        allowInsecure: true,
        allowLocal: true,
        libp2pConfig: { addresses: { listen: [] }, transports: [tcp()], peerDiscovery: [], services: { identify: identify() } }
      })
      try {
        const dump = nixDump(path)
        const byName = await verifiedFetch(`ipns://${name}/nar/${nar}.nar`)
        expect(byName.status).toBe(200)
        expect(Buffer.compare(Buffer.from(await byName.arrayBuffer()), dump)).toBe(0)
        const byCid = await verifiedFetch(`ipfs://${nar}`)
        expect(byCid.status).toBe(200)
        expect(Buffer.compare(Buffer.from(await byCid.arrayBuffer()), dump)).toBe(0)
      } finally {
        await verifiedFetch.stop()
      }
    } finally {
      globalThis.fetch = realFetch
      Object.defineProperty(ReadableStream.prototype, 'cancel', realCancel)
    }
    // The record and the providers came from /routing/v1, the blocks from the trustless gateway those providers name.
    expect(asked.some(u => u.startsWith(`${gw.url}/routing/v1/ipns/`))).toBe(true)
    expect(asked.some(u => u.startsWith(`${gw.url}/routing/v1/providers/`))).toBe(true)
    expect(asked.some(u => u.startsWith(`${gw.url}/ipfs/`))).toBe(true)
    expect(asked.filter(u => !u.startsWith(`${gw.url}/`))).toEqual([])
  })
})
