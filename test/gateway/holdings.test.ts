import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { PackStore } from '../../src/ipfs/pack-store.js'
import { startNetwork } from '../../src/net/network.js'
import { decodeHoldings } from '../../src/net/rendezvous.js'
import { runCli, startGatewayProcess, tmp, type GatewayProcess } from '../helpers/cli.js'
import { nixAvailable, nixBuild, shellDerivation } from '../helpers/nix.js'

const quiet = { info: () => {}, warn: () => {}, debug: () => {} }
const EXPR = shellDerivation(`holdings-${Date.now()}-${process.pid}`, 'mkdir -p $out; echo holdings > $out/a')

// A discovering gateway asks the providers of a path's rendezvous CID which caches hold its narinfo. It could ask
// only over libp2p: a gateway on `--routing` alone (no libp2p) found providers and could ask none of them. A
// provider's trustless gateway answers the same question over plain HTTP.
describe.runIf(nixAvailable)('which caches hold a narinfo, over HTTP', () => {
  let gw: GatewayProcess
  let hash: string
  let name: string
  let narinfo: string
  beforeAll(async () => {
    const [path] = nixBuild(EXPR) as [string]
    hash = path.slice('/nix/store/'.length, '/nix/store/'.length + 32)
    const repo = tmp()
    const r = runCli(['publish', '--repo', repo, path])
    expect(r.status, r.stderr).toBe(0)
    name = /name: +\/ipns\/(\S+)/.exec(r.stdout)![1]!
    gw = await startGatewayProcess(['--repo', repo])
    narinfo = await (await fetch(`${gw.url}/${hash}.narinfo`)).text()
  })
  afterAll(async () => { await gw?.stop() })

  it('GET /nixipfs/narinfo/<hash> names the cache with its narinfo, and is a 404 for a path no served cache holds', async () => {
    const res = await fetch(`${gw.url}/nixipfs/narinfo/${hash}`)
    expect(res.status).toBe(200)
    expect(decodeHoldings(await res.text())).toEqual([{ name, narinfo }])
    expect((await fetch(`${gw.url}/nixipfs/narinfo/${'0'.repeat(32)}`)).status).toBe(404)
  })

  it('is what a network without libp2p gets when it asks a provider that has an HTTP gateway', async () => {
    const repo = tmp()
    const network = await startNetwork(repo, await PackStore.openRepo(repo), { offline: true, listen: [], peers: [], httpGateways: [], peerTimeoutMs: 5_000, peerConnections: 2, log: quiet })
    try {
      const provider = { id: '12D3KooWEngf7BCawNSH9nvitW7tLHzUn4PBZe3D5iSsGcXdq9Z7', addresses: [`/ip4/127.0.0.1/tcp/${new URL(gw.url).port}/http`] }
      expect(await network.cachesHolding(provider, hash, AbortSignal.timeout(10_000))).toEqual([{ name, narinfo }])
    } finally {
      await network.stop()
    }
  })
})
