import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ipnsNameOf } from '../../src/ipfs/ipns.js'
import { formatPublicKey, parsePublicKey, type PublicKey } from '../../src/nix/signing.js'
import { runCli, startNodeProcess, tmp } from '../helpers/cli.js'
import { startTestNode, type TestNode } from '../helpers/dht.js'
import { nixAsync, nixAvailable, nixBuild, nixDump, shellDerivation } from '../helpers/nix.js'

// A builder joins a loopback DHT through a boot node, whose gateway is the
// only thing HTTP-only clients know (--routing URL). The builder's trustless
// gateway goes out with its peer record, so the boot node's /routing/v1,
// answering from the DHT, names it as an /http provider: a client without
// libp2p follows the builder and fetches its NAR over HTTP from it, and a
// --discover client with only --routing finds it.
const salt = `${Date.now()}-${process.pid}`
// 6 MiB: some 25 blocks, enough for two providers to share one NAR.
const EXPR = shellDerivation(`rhttp-${salt}`, 'mkdir -p $out; head -c 6291456 /dev/urandom > $out/blob')

const NETWORK = { listen: ['/ip4/127.0.0.1/tcp/0'], peers: [], httpGateways: [], peerTimeoutMs: 10_000, peerConnections: 4 }

describe.runIf(nixAvailable)('HTTP gateways in routing: advertised, found, used', () => {
  let top: string
  let key: PublicKey
  let name: string
  let boot: TestNode
  let builder: TestNode
  const nodes: TestNode[] = []
  const start = async (options: Parameters<typeof startTestNode>[0]): Promise<TestNode> => {
    const node = await startTestNode(options)
    nodes.push(node)
    return node
  }

  beforeAll(async () => {
    ;[top] = nixBuild(EXPR) as [string]
    boot = await start({ label: 'boot' })
    const repo = tmp()
    const r = runCli(['publish', '--repo', repo, top])
    expect(r.status, r.stderr).toBe(0)
    key = parsePublicKey(readFileSync(join(repo, 'keys', 'cache.public'), 'utf8').trim())
    name = ipnsNameOf(key.key)
    builder = await start({ label: 'builder', repo, own: name, bootstrap: [boot.address] })
    expect(await builder.waitForLog(/announced root/, 30_000), builder.log.join('\n')).toBe(true)
  })
  afterAll(async () => { await Promise.all(nodes.map(async n => await n.stop())) })

  it('the boot node\'s /routing/v1 names the builder\'s HTTP gateway, from the DHT, as a provider of its NAR', async () => {
    const hash = top.slice(11, 43)
    const narCid = /^URL: nar\/(\w+)\.nar$/m.exec(await (await fetch(`${builder.url}/${hash}.narinfo`)).text())![1]!
    const gatewayAddr = `/ip4/127.0.0.1/tcp/${new URL(builder.url).port}/http`
    const peers = await (await fetch(`${boot.url}/routing/v1/peers/${builder.daemon.network.peerId}`)).json() as { Peers: Array<{ Addrs: string[] }> }
    expect(peers.Peers[0]?.Addrs).toContain(gatewayAddr)
    const providers = await (await fetch(`${boot.url}/routing/v1/providers/${narCid}`)).json() as { Providers: Array<{ ID: string, Addrs: string[] }> }
    const found = providers.Providers.find(p => p.ID === builder.daemon.network.peerId)
    expect(found, JSON.stringify(providers)).toBeDefined()
    expect(found!.Addrs).toContain(gatewayAddr)
  })

  it('a client without libp2p, told only the boot node\'s --routing URL, follows the builder and fetches its NAR over HTTP from it', async () => {
    const client = await start({ label: 'http-only', follow: [name], network: { ...NETWORK, offline: true, listen: [], routing: [boot.url] } })
    for (let i = 0; i < 100 && (await fetch(`${client.url}/${top.slice(11, 43)}.narinfo`)).status !== 200; i++) await new Promise(resolve => setTimeout(resolve, 100))
    const store = tmp()
    const r = await nixAsync(['copy', '--option', 'substituters', '', '--from', client.url, '--to', store, top, '--option', 'trusted-public-keys', formatPublicKey(key)])
    expect(r.status, r.stderr + client.log.join('\n')).toBe(0)
    expect(Buffer.compare(nixDump(top), nixDump(join(store, top)))).toBe(0)
    const stats = await (await fetch(`${client.url}/stats`)).json() as { blocks: { peers: Record<string, number> } }
    expect(stats.blocks.peers[builder.url.replace(/\/+$/, '')]).toBeGreaterThan(0)
  })

  it('a client on the DHT provides the NAR it fetched; the next client swarms it from the builder and that seeder, both found by the DHT', async () => {
    const hash = top.slice(11, 43)
    const narCid = /^URL: nar\/(\w+)\.nar$/m.exec(await (await fetch(`${builder.url}/${hash}.narinfo`)).text())![1]!
    const copyFrom = async (client: TestNode): Promise<void> => {
      for (let i = 0; i < 100 && (await fetch(`${client.url}/${hash}.narinfo`)).status !== 200; i++) await new Promise(resolve => setTimeout(resolve, 100))
      const store = tmp()
      const r = await nixAsync(['copy', '--option', 'substituters', '', '--from', client.url, '--to', store, top, '--option', 'trusted-public-keys', formatPublicKey(key)])
      expect(r.status, r.stderr + client.log.join('\n')).toBe(0)
      expect(Buffer.compare(nixDump(top), nixDump(join(store, top)))).toBe(0)
    }
    const seeder = await start({ label: 'seeder', follow: [name], bootstrap: [boot.address] })
    await copyFrom(seeder)
    // The seeder's gateway is found as a provider of the NAR (announced at its next check, every 5 s).
    let named = false
    for (let i = 0; i < 150 && !named; i++) {
      const providers = await (await fetch(`${boot.url}/routing/v1/providers/${narCid}`)).json() as { Providers: Array<{ ID: string, Addrs: string[] }> }
      named = providers.Providers.some(p => p.ID === seeder.daemon.network.peerId && p.Addrs.includes(`/ip4/127.0.0.1/tcp/${new URL(seeder.url).port}/http`))
      if (!named) await new Promise(resolve => setTimeout(resolve, 100))
    }
    expect(named, seeder.log.join('\n')).toBe(true)
    const client = await start({ label: 'swarming', follow: [name], bootstrap: [boot.address] })
    // Provider records spread over the DHT peers a little after the boot node had the seeder's: wait until this client's DHT
    // names both. The client remembers them for a minute, so the NAR's fetch starts its swarm with both (a fresh DHT query
    // under load outlasted the 2 s a fetch waits for a first provider, and bitswap alone fetched the NAR).
    const { CID } = await import('multiformats/cid')
    const both = [builder, seeder].map(n => n.daemon.network.peerId)
    let ids: string[] = []
    for (let i = 0; i < 50 && !both.every(id => ids.includes(id)); i++) {
      if (i > 0) await new Promise(resolve => setTimeout(resolve, 200))
      ids = []
      for await (const p of client.daemon.network.findProviders(CID.parse(narCid), AbortSignal.timeout(2_000))) ids.push(p.id)
    }
    expect(ids).toEqual(expect.arrayContaining(both))
    await copyFrom(client)
    const log = client.log.join('\n')
    expect(log).toMatch(new RegExp(`swarm: ${narCid}: \\d+ blocks, .* from 2 peer\\(s\\)`))
    const stats = await (await fetch(`${client.url}/stats`)).json() as { blocks: { peers: Record<string, number> } }
    for (const node of [builder, seeder]) expect(stats.blocks.peers[node.url], JSON.stringify(stats) + log).toBeGreaterThan(0)
  })

  it('gateway --discover with only --routing (no --bootstrap) finds and serves the builder\'s path', async () => {
    const client = await start({
      label: 'discover-routing',
      trust: { keys: [key], threshold: 1 },
      discover: { keys: [key], requireSignature: false, deadlineMs: 10_000 },
      network: { ...NETWORK, offline: false, routing: [boot.url] }
    })
    const store = tmp()
    const r = await nixAsync(['copy', '--option', 'substituters', '', '--from', client.url, '--to', store, top, '--option', 'trusted-public-keys', formatPublicKey(key)])
    expect(r.status, r.stderr + client.log.join('\n')).toBe(0)
    expect(Buffer.compare(nixDump(top), nixDump(join(store, top)))).toBe(0)
    // Served from the narinfo the provider handed over, or from the followed cache; followed in either case, for later paths.
    expect(await client.waitForLog(new RegExp(`following /ipns/${name}`), 10_000), client.log.join('\n')).toBe(true)
    // The CLI takes --discover with only --routing, and still refuses it with --offline.
    const refused = runCli(['gateway', '--repo', tmp(), '--discover', '--routing', boot.url, '--offline'])
    expect(refused.stderr).toMatch(/--discover asks the network: give --bootstrap MULTIADDR or --routing URL \(and no --offline\)/)
    const cli = await startNodeProcess('gateway', ['--repo', tmp(), '--discover', '--routing', boot.url, '--listen-p2p', '/ip4/127.0.0.1/tcp/0'])
    try {
      expect((await fetch(`${cli.url}/nix-cache-info`)).status).toBe(200)
    } finally {
      await cli.stop()
    }
  })
})
