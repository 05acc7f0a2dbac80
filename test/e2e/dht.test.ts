import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { ipnsResolver } from '@helia/ipns'
import { unixfs } from '@helia/unixfs'
import { bootstrap as bootstrapDiscovery } from '@libp2p/bootstrap'
import { identify } from '@libp2p/identify'
import { kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import { noise } from '@libp2p/noise'
import { peerIdFromString } from '@libp2p/peer-id'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { createHelia } from 'helia'
import { ipnsSelector } from 'ipns/selector'
import { ipnsValidator } from 'ipns/validator'
import { CID } from 'multiformats/cid'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadRecord } from '../../src/cache/records.js'
import { ipnsNameOf } from '../../src/ipfs/ipns.js'
import { parsePublicKey } from '../../src/nix/signing.js'
import { runCli, runCliAsync, startNodeProcess, tmp } from '../helpers/cli.js'
import { startTestNode, type TestNode } from '../helpers/dht.js'
import { nixAsync, nixAvailable, nixBuild, nixDump, shellDerivation } from '../helpers/nix.js'

// A loopback network of in-process nodes, each told only one bootstrap
// address. A builder announces its cache; a client that knows only a key and
// one bootstrap address substitutes the closure; a stock Helia node resolves
// the builder's name and fetches a NAR. The bootstrap node is stopped after
// the others joined.
const salt = `${Date.now()}-${process.pid}`
const EXPR = `
let
  lib = ${shellDerivation(`dht-lib-${salt}`, 'mkdir -p $out/lib; i=0; while [ $i -lt 40000 ]; do echo "row $i of a file spanning several blocks ' + salt + '"; i=$((i+1)); done > $out/lib/big.txt')};
in ${shellDerivation(`dht-top-${salt}`, 'mkdir -p $out/bin; printf "#!/bin/sh\\necho hi\\n" > $out/bin/hi; chmod +x $out/bin/hi; ln -s ${lib}/lib/big.txt $out/big')}
`

describe.runIf(nixAvailable)('the DHT: publish to and resolve from the network', () => {
  let top: string
  let closure: string[]
  let pub: string
  let name: string
  let builderRepo: string
  const nodes: TestNode[] = []
  let boot: TestNode
  let builder: TestNode
  const start = async (options: Parameters<typeof startTestNode>[0]): Promise<TestNode> => {
    const node = await startTestNode(options)
    nodes.push(node)
    return node
  }

  beforeAll(async () => {
    builderRepo = tmp()
    ;[top] = nixBuild(EXPR) as [string]
    closure = execFileSync('nix-store', ['--query', '--requisites', top], { encoding: 'utf8' }).trim().split('\n')
    const r = runCli(['publish', '-r', '--repo', builderRepo, top])
    expect(r.status, r.stderr).toBe(0)
    pub = readFileSync(join(builderRepo, 'keys', 'cache.public'), 'utf8').trim()
    name = ipnsNameOf(parsePublicKey(pub).key)
    // A chain: each node knows one address, never the builder's.
    boot = await start({ label: 'boot' })
    const relays: TestNode[] = []
    for (let i = 0; i < 3; i++) relays.push(await start({ label: `relay${i}`, bootstrap: [(relays.at(-1) ?? boot).address] }))
    builder = await start({ label: 'builder', repo: builderRepo, own: name, bootstrap: [boot.address] })
    expect(await builder.waitForLog(/announced root/, 30_000), builder.log.join('\n')).toBe(true)
  })
  afterAll(async () => { await Promise.all(nodes.map(async n => await n.stop())) })

  it('every node prints its full address', () => {
    for (const n of nodes) expect(n.address).toMatch(/^\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\/12D3Koo\w+$/)
  })

  it('a client with only --bootstrap and --follow substitutes the closure with real Nix, the bootstrap node stopped', async () => {
    const client = await start({ label: 'client', follow: [name], bootstrap: [nodes[2]!.address] })
    const relay = nodes[1]!
    await boot.stop()
    const t0 = Date.now()
    expect(await client.waitForLog(/indexed root/, 30_000), client.log.join('\n')).toBe(true)
    console.log(`client: record and index from the DHT in ${Date.now() - t0} ms`)
    // From the DHT, or over fetch from a peer the DHT led it to (whichever answers first); no --peer was named.
    expect(client.log.join('\n')).toMatch(/record \d+ from (dht:)?12D3Koo/)
    const store = tmp()
    const r = await nixAsync(['copy', '--from', client.url, '--to', store, top, '--option', 'trusted-public-keys', pub])
    expect(r.status, r.stderr + client.log.join('\n')).toBe(0)
    for (const p of closure) expect(Buffer.compare(nixDump(p), nixDump(join(store, p)))).toBe(0)
    expect(relay.daemon.network.routing!.size()).toBeGreaterThan(0)

    // The client seeds what it fetched: it is found as a provider of the NARs it served.
    const narRoot = await narOf(client, top)
    const seeders = await providersOf(relay, narRoot, 2, 10_000)
    expect(seeders).toContain(client.daemon.network.p2p!.libp2p.peerId.toString())
  })

  it('the CLI: publish --bootstrap puts the record into the DHT; gateway --discover starts on an empty repo and prints its address', async () => {
    const repo = tmp()
    const lib = closure.find(p => p.includes('dht-lib'))!
    const r = await runCliAsync(['publish', '--repo', repo, '--bootstrap', nodes[1]!.address, lib])
    expect(r.status, r.stderr).toBe(0)
    expect(r.stdout + r.stderr).toMatch(/put the record of \/ipns\/k51\w+ into the DHT/)
    const other = ipnsNameOf(parsePublicKey(readFileSync(join(repo, 'keys', 'cache.public'), 'utf8').trim()).key)
    const found = await nodes[3]!.daemon.network.routing!.getRecord(other, { signal: AbortSignal.timeout(10_000) })
    expect(found.map(f => Buffer.from(f.bytes))).toContainEqual(readFileSync(join(repo, 'records', `${other}.ipns`)))

    const refused = runCli(['gateway', '--repo', tmp(), '--discover', '--offline'])
    expect(refused.stderr).toMatch(/--discover asks the network: give --bootstrap/)
    const gateway = await startNodeProcess('gateway', ['--repo', tmp(), '--discover', '--bootstrap', nodes[1]!.address, '--listen-p2p', '/ip4/127.0.0.1/tcp/0'])
    try {
      expect(gateway.p2p()).toMatch(/^\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\/12D3Koo\w+$/)
      expect(gateway.output()).toMatch(/serving no cache of its own and none followed \(what discovery or an upstream finds\) at http/) // was "serving  at"
      expect((await fetch(`${gateway.url}/nix-cache-info`)).status).toBe(200)
    } finally {
      await gateway.stop()
    }
  })

  it('a stock Helia node told only a bootstrap address resolves /ipns/<name> and fetches a NAR by its CID', async () => {
    const helia = await createHelia({
      libp2p: {
        addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
        transports: [tcp()],
        connectionEncrypters: [noise()],
        streamMuxers: [yamux()],
        peerDiscovery: [bootstrapDiscovery({ list: [nodes[3]!.address] })],
        connectionManager: { allow: ['/ip4/127.0.0.0/ipcidr/8'] },
        services: {
          identify: identify(),
          ping: ping(),
          dht: kadDHT({ protocol: '/ipfs/kad/1.0.0', clientMode: false, peerInfoMapper: passthroughMapper, validators: { ipns: ipnsValidator }, selectors: { ipns: ipnsSelector } })
        }
      },
      http: { delegatedRouters: [], recursiveGateways: [] }
    })
    try {
      await helia.start()
      for (let i = 0; i < 100 && helia.libp2p.getConnections().length === 0; i++) await new Promise(resolve => setTimeout(resolve, 100))
      const t0 = Date.now()
      let value: string | undefined
      for await (const result of ipnsResolver(helia).resolve(peerIdFromString(name).toCID(), { signal: AbortSignal.timeout(20_000) })) { value = result.value; break }
      console.log(`stock Helia: /ipns/${name} resolved in ${Date.now() - t0} ms`)
      expect(value).toBe(`/ipfs/${(await loadRecord(builderRepo, name))!.root.toString()}`)

      const lib = closure.find(p => p.includes('dht-lib'))!
      const nar = await narOf(builder, lib)
      const chunks: Uint8Array[] = []
      for await (const chunk of unixfs(helia).cat(nar, { signal: AbortSignal.timeout(30_000) })) chunks.push(chunk)
      expect(Buffer.compare(Buffer.concat(chunks), nixDump(lib))).toBe(0)
    } finally {
      await helia.stop()
    }
  })
})

/** The NAR root CID that `node` serves for store path `path`. */
async function narOf (node: TestNode, path: string): Promise<CID> {
  const hash = path.slice('/nix/store/'.length, '/nix/store/'.length + 32)
  const res = await fetch(`${node.url}/${hash}.narinfo`)
  const text = await res.text()
  return CID.parse(/^URL: nar\/(\w+)\.nar$/m.exec(text)![1]!)
}

/** Peer ids of up to `n` providers of `cid` found through `node`'s routing within `ms`. */
async function providersOf (node: TestNode, cid: CID, n: number, ms: number): Promise<string[]> {
  const found: string[] = []
  const deadline = Date.now() + ms
  while (Date.now() < deadline && found.length < n) {
    for await (const p of node.daemon.network.routing!.findProviders(cid, { signal: AbortSignal.timeout(2_000) })) {
      if (!found.includes(p.id)) found.push(p.id)
    }
    if (found.length < n) await new Promise(resolve => setTimeout(resolve, 500))
  }
  return found
}

describe.runIf(nixAvailable)('a builder that others bootstrap from', () => {
  it('announces its own cache once a peer has joined it, though it was told no bootstrap address', async () => {
    const repo = tmp()
    const [path] = nixBuild(shellDerivation(`dht-boot-builder-${salt}`, 'echo b > $out')) as [string]
    expect(runCli(['publish', '--repo', repo, path]).status).toBe(0)
    const own = ipnsNameOf(parsePublicKey(readFileSync(join(repo, 'keys', 'cache.public'), 'utf8').trim()).key)
    const builder = await startTestNode({ label: 'boot-builder', repo, own })
    const joiner = await startTestNode({ label: 'joiner', bootstrap: [builder.address] }).catch(async err => { await builder.stop(); throw err })
    try {
      expect(await builder.waitForLog(/announced root/, 30_000), builder.log.join('\n')).toBe(true)
    } finally {
      await joiner.stop()
      await builder.stop()
    }
  })
})
