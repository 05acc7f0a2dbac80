import { readFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { delegatedRoutingV1HttpApiClient } from '@helia/delegated-routing-v1-http-api-client'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { createIPNSRecord, marshalIPNSRecord, unmarshalIPNSRecord } from 'ipns'
import { base36 } from 'multiformats/bases/base36'
import { CID } from 'multiformats/cid'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DelegatedRouting, routingBaseOf } from '../../src/net/delegated.js'
import { gatewayUrlsOf } from '../../src/net/routing-view.js'
import { signRecord } from '../../src/ipfs/ipns.js'
import { parseSecretKey } from '../../src/nix/signing.js'
import { runCli, startGatewayProcess, tmp, type GatewayProcess } from '../helpers/cli.js'
import { nix, nixAvailable, nixBuild, nixDump, shellDerivation } from '../helpers/nix.js'

const salt = `${Date.now()}-${process.pid}`
const build = (tag: string): string => nixBuild(shellDerivation(`delegated-${tag}-${salt}`, `mkdir -p $out; echo ${tag} ${salt} > $out/a; i=0; while [ $i -lt 20000 ]; do echo "${tag} line $i ${salt}"; i=$((i+1)); done > $out/big`))[0]!

describe('routing server URLs and provider addresses', () => {
  it('takes a server as its base URL or its /routing/v1 URL', () => {
    for (const url of ['http://127.0.0.1:8080', 'http://127.0.0.1:8080/', 'http://127.0.0.1:8080/routing/v1', 'http://127.0.0.1:8080/routing/v1/']) expect(routingBaseOf(url)).toBe('http://127.0.0.1:8080/')
    expect(routingBaseOf('https://example.org/prefix')).toBe('https://example.org/prefix/')
    expect(() => routingBaseOf('127.0.0.1:8080')).toThrow(/--routing takes an http\(s\) URL/)
  })
})

describe('providers from servers that write IDs otherwise', () => {
  let server: Server
  let url: string
  let asCid: string
  let base58: string
  const cid = CID.parse('bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy')
  beforeAll(async () => {
    const one = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    base58 = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
    asCid = one.toCID().toString()
    // As @helia/delegated-routing-v1-http-api-server 5.2 answers: the ID as a CID string, addresses with /p2p/; beside a legacy
    // bitswap record and one with no valid ID. /old answers 404 for none, as servers before IPIP-0513.
    const records = [
      { Schema: 'peer', ID: asCid, Addrs: [`/ip4/127.0.0.1/tcp/9/http/p2p/${one.toString()}`], Protocols: ['transport-ipfs-gateway-http'] },
      { Schema: 'bitswap', Protocol: 'transport-bitswap', ID: base58, Addrs: ['/ip4/127.0.0.1/tcp/4001'] },
      { Schema: 'peer', ID: 'not-a-peer', Addrs: [] }
    ]
    server = createServer((req, res) => {
      if (req.url!.startsWith('/old/')) { res.writeHead(404); res.end(); return }
      const ndjson = req.url!.startsWith('/nd/')
      res.writeHead(200, { 'content-type': ndjson ? 'application/x-ndjson' : 'application/json' })
      res.end(ndjson ? records.map(r => JSON.stringify(r)).join('\n') + '\n' : JSON.stringify({ Providers: records }))
    })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })
  afterAll(async () => { await new Promise(resolve => server.close(resolve)) })

  it('reads CID-string and base58 IDs, legacy Protocol fields, JSON and NDJSON; 404 is none', async () => {
    const expected = [
      { id: peerIdFromString(asCid).toString(), addresses: ['/ip4/127.0.0.1/tcp/9/http'], protocols: ['transport-ipfs-gateway-http'] },
      { id: base58, addresses: ['/ip4/127.0.0.1/tcp/4001'], protocols: ['transport-bitswap'] }
    ]
    for (const prefix of ['', '/nd']) {
      const client = new DelegatedRouting(url + prefix)
      const found = []
      for await (const p of client.findProviders(cid)) found.push(p)
      expect(found).toEqual(expected)
      await client.stop()
    }
    const old = new DelegatedRouting(`${url}/old`)
    const none = []
    for await (const p of old.findProviders(cid)) none.push(p)
    expect(none).toEqual([])
    await old.stop()
    // Why the stock client is not used for providers: it drops the record whose ID is a CID string.
    const silent = { forComponent: () => Object.assign(() => {}, { enabled: false, error: () => {}, trace: () => {}, newScope: () => { throw new Error('unused') } }) }
    const stock = delegatedRoutingV1HttpApiClient({ url, cacheTTL: 0 })({ logger: silent as never })
    const seen = []
    for await (const p of stock.getProviders(cid)) seen.push(p.ID.toString())
    expect(seen).toEqual([peerIdFromString(base58).toCID().toString()])
    await stock.stop()
  })
})

describe.runIf(nixAvailable)('--routing: records and blocks found through Delegated Routing V1 only', () => {
  const nodes: GatewayProcess[] = []
  const start = async (args: string[]): Promise<GatewayProcess> => {
    const node = await startGatewayProcess(args)
    nodes.push(node)
    return node
  }
  let first: string
  let second: string
  let repoA: string
  let pubA: string
  let nameA: string
  let a: GatewayProcess
  let c: GatewayProcess

  beforeAll(async () => {
    first = build('first')
    second = build('second')
    repoA = tmp()
    const r = runCli(['publish', '--repo', repoA, first])
    expect(r.status, r.stderr).toBe(0)
    pubA = readFileSync(join(repoA, 'keys', 'cache.public'), 'utf8').trim()
    nameA = /name: +\/ipns\/(\S+)/.exec(r.stdout)![1]!
    // C: a routing server that knows nothing of A but what A puts to it.
    const repoC = tmp()
    expect(runCli(['publish', '--repo', repoC, second]).status).toBe(0)
    c = await start(['--repo', repoC])
    a = await start(['--repo', repoA, '--routing', `${c.url}/routing/v1`])
  })
  afterAll(async () => { await Promise.all(nodes.map(async n => await n.stop())) })

  const sequenceAt = async (server: string, name: string): Promise<bigint | undefined> => {
    const bytes = await new DelegatedRouting(server).getRecord(name)
    return bytes === undefined ? undefined : unmarshalIPNSRecord(bytes).sequence
  }

  it('a running gateway puts its own record to its --routing servers at start; publish and republish --routing put each new one', async () => {
    expect(await a.waitForLog(/record 1 put to/, 15_000)).toMatch(new RegExp(`/ipns/${nameA}: record 1 put to ${c.url}/`))
    expect(await sequenceAt(c.url, nameA)).toBe(1n)
    const p = runCli(['publish', '--repo', repoA, second, '--routing', c.url])
    expect(p.status, p.stderr).toBe(0)
    expect(p.stdout + p.stderr).toMatch(/record 2 put to/)
    expect(await sequenceAt(c.url, nameA)).toBe(2n)
    const rp = runCli(['republish', '--repo', repoA, '--routing', `${c.url}/routing/v1/`])
    expect(rp.status, rp.stderr).toBe(0)
    expect(await sequenceAt(c.url, nameA)).toBe(3n)
  })

  it('a gateway given only --routing follows the key: the record from the server, the blocks from the gateway its providers response names; real Nix substitutes byte-identical', async () => {
    const repoB = tmp()
    const b = await start(['--repo', repoB, '--follow', pubA, '--routing', `${a.url}/routing/v1`, '--follow-interval', '1'])
    const log = await b.waitForLog(/indexed root/, 30_000)
    expect(log).toMatch(new RegExp(`/ipns/${nameA}: record \\d+ from ${a.url}/`))
    expect(log).toMatch(new RegExp(`names ${a.url} \\(peer 12D3Koo\\w+\\) as a provider of /ipns/${nameA}`))
    for (const path of [first]) {
      const store = tmp()
      const r = nix(['copy', '--from', b.url, '--to', store, path, '--option', 'trusted-public-keys', pubA], { allowFail: true })
      expect(r.status, r.stderr).toBe(0)
      expect(Buffer.compare(nixDump(path), nixDump(join(store, path)))).toBe(0)
    }
    // A record put to B for the cache it follows goes through the follower's checks into B's repo: a newer one is kept, then an
    // older one refused. Both are signed here with A's key, so B can have them only from these PUTs.
    const toB = new DelegatedRouting(b.url)
    const current = unmarshalIPNSRecord(readFileSync(join(repoA, 'records', `${nameA}.ipns`)))
    const key = parseSecretKey(readFileSync(join(repoA, 'keys', 'cache.secret'), 'utf8'))
    const signed = async (ahead: bigint): Promise<Uint8Array> => (await signRecord(key.seed, CID.parse(current.value.slice('/ipfs/'.length)), current.sequence + ahead, 3600_000)).bytes
    const newest = await signed(5n)
    await toB.putRecord(nameA, newest)
    expect(Buffer.compare(readFileSync(join(repoB, 'records', `${nameA}.ipns`)), newest)).toBe(0)
    expect(await sequenceAt(b.url, nameA)).toBe(current.sequence + 5n)
    await expect(toB.putRecord(nameA, await signed(2n))).rejects.toThrow(/status other than 200/)
    expect(Buffer.compare(readFileSync(join(repoB, 'records', `${nameA}.ipns`)), newest)).toBe(0)
    await toB.stop()
  })

  it('the client reads records, providers and refusals of a real server', async () => {
    const server = new DelegatedRouting(`${a.url}/routing/v1`)
    const record = readFileSync(join(repoA, 'records', `${nameA}.ipns`))
    expect(Buffer.compare(Buffer.from((await server.getRecord(nameA))!), record)).toBe(0)
    const key = await generateKeyPair('Ed25519')
    const other = peerIdFromPrivateKey(key).toCID().toString(base36)
    expect(await server.getRecord(other)).toBeUndefined()
    const root = CID.parse(/\/ipfs\/(\S+)/.exec(unmarshalIPNSRecord(record).value)![1]!)
    const put = marshalIPNSRecord(await createIPNSRecord(key, root, 1n, 3600_000))
    await server.putRecord(other, put)
    expect(Buffer.compare(Buffer.from((await server.getRecord(other))!), put)).toBe(0)
    const forged = await createIPNSRecord(key, root, 2n, 3600_000)
    forged.signatureV2[0]! ^= 1
    await expect(server.putRecord(other, marshalIPNSRecord(forged))).rejects.toThrow(/status other than 200/)
    const providers = []
    for await (const p of server.findProviders(root)) providers.push(p)
    expect(providers).toHaveLength(1)
    expect(providers[0]!.id).toMatch(/^12D3Koo/)
    expect(gatewayUrlsOf(providers[0]!)).toEqual([a.url])
    await server.stop()
  })
})
