import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { basename, join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ipnsNameOf } from '../../src/ipfs/ipns.js'
import { formatPublicKey, generateSecretKey, parsePublicKey, publicKeyOf, type PublicKey } from '../../src/nix/signing.js'
import { signedCache } from '../helpers/cache.js'
import { runCli, runCliAsync, tmp } from '../helpers/cli.js'
import { startTestNode, tamperedClosure, type TestNode } from '../helpers/dht.js'
import { nixAsync, nixAvailable, nixBuild, nixDump, shellDerivation } from '../helpers/nix.js'

// The network of issue 17 at its smallest size: 12 nodes on a loopback DHT,
// each told one bootstrap address. Three honest builders publish a closure;
// a fourth builder (trusted) and five Sybils publish it with a tampered
// library. A client with only --bootstrap --discover --trust K1…K4
// --threshold 2 serves the honest closure to real Nix; `nixipfs verify`
// flags the tampered builder and every live node lists that within 10 s;
// with a third of the nodes stopped, the bootstrap node among them, a new
// client still substitutes.
const salt = `${Date.now()}-${process.pid}`
const EXPR = `
let
  lib = ${shellDerivation(`net-lib-${salt}`, 'mkdir -p $out/lib; echo "honest library ' + salt + '" > $out/lib/a.txt')};
in ${shellDerivation(`net-top-${salt}`, 'mkdir -p $out/bin; printf "#!/bin/sh\\necho hi\\n" > $out/bin/hi; chmod +x $out/bin/hi; ln -s ${lib}/lib/a.txt $out/a')}
`

interface Listed { kind?: string, by?: string, storePath?: string }

describe.runIf(nixAvailable)('a 12-node network: discover, flag, survive', () => {
  let top: string
  let lib: string
  const honest: PublicKey[] = []
  let tamperedKey: PublicKey
  const sybils: PublicKey[] = []
  const nodes: Array<TestNode & { label: string }> = []
  let trusted: PublicKey[]
  const start = async (label: string, options: Parameters<typeof startTestNode>[0] = {}): Promise<TestNode> => {
    // Each node is told one address: that of a node started before it.
    const bootstrap = options.bootstrap ?? (nodes.length === 0 ? [] : [nodes[Math.max(0, nodes.length - 2)]!.address])
    const node = await startTestNode({ label, ...options, bootstrap })
    nodes.push({ ...node, label })
    return node
  }
  const live = (): TestNode[] => nodes.filter(n => !stopped.has(n))
  const stopped = new Set<TestNode>()
  const joined = async (node: TestNode, n = 3): Promise<void> => {
    for (let i = 0; i < 100 && node.daemon.network.routing!.size() < n; i++) await new Promise(resolve => setTimeout(resolve, 100))
  }
  /** Substitutes the closure from `client` with real Nix into a new store; returns nix's exit status and output. */
  const substitute = async (client: TestNode): Promise<{ status: number, stderr: string, store: string }> => {
    const store = tmp()
    const r = await nixAsync(['copy', '--option', 'substituters', '', '--from', client.url, '--to', store, top, '--option', 'trusted-public-keys', trusted.map(formatPublicKey).join(' ')])
    return { ...r, store }
  }

  beforeAll(async () => {
    ;[top] = nixBuild(EXPR) as [string]
    lib = execFileSync('nix-store', ['--query', '--requisites', top], { encoding: 'utf8' }).trim().split('\n').find(p => p !== top)!
    await start('boot')
    for (let i = 1; i <= 3; i++) {
      const repo = tmp()
      const r = runCli(['publish', '-r', '--repo', repo, top])
      expect(r.status, r.stderr).toBe(0)
      const key = parsePublicKey(readFileSync(join(repo, 'keys', 'cache.public'), 'utf8').trim())
      honest.push(key)
      await start(`honest${i}`, { repo, own: ipnsNameOf(key.key) })
    }
    const items = tamperedClosure(lib, top)
    for (let i = 0; i < 6; i++) {
      const key = generateSecretKey(i === 0 ? 'builder-4' : `sybil-${i}`)
      const repo = tmp()
      await signedCache(repo, key, items as never)
      if (i === 0) tamperedKey = publicKeyOf(key)
      else sybils.push(publicKeyOf(key))
      await start(i === 0 ? 'tampered' : `sybil${i}`, { repo, own: ipnsNameOf(key.publicKey) })
    }
    trusted = [...honest, tamperedKey]
    for (const n of nodes.slice(1)) expect(await n.waitForLog(/announced root/, 30_000), n.log.join('\n')).toBe(true)
  }, 180_000)
  afterAll(async () => { await Promise.all(nodes.map(async n => await n.stop())) })

  it('a client that knows one address and the trusted keys serves the honest closure to real nix copy; the tampered library never', async () => {
    const client = await start('client', { trust: { keys: trusted, threshold: 2 }, discover: { keys: trusted, requireSignature: false, deadlineMs: 10_000 } })
    await start('relay')
    expect(nodes).toHaveLength(12)
    await joined(client)
    const r = await substitute(client)
    expect(r.status, r.stderr + '\n' + client.log.join('\n')).toBe(0)
    for (const p of [top, lib]) expect(Buffer.compare(nixDump(p), nixDump(join(r.store, p)))).toBe(0)
    const log = client.log.join('\n')
    for (const key of sybils) expect(log).not.toContain(`following /ipns/${ipnsNameOf(key.key)}`)
    const narinfo = await (await fetch(`${client.url}/${basename(lib).slice(0, 32)}.narinfo`)).text()
    expect(narinfo).toContain(`NarHash: ${execFileSync('nix-store', ['--query', '--hash', lib], { encoding: 'utf8' }).trim()}`)
  }, 120_000)

  it('nixipfs verify on another node flags the tampered builder, and every live node lists the dispute within 10 s', async () => {
    // Like the client, the verifier knows one address and the key: the record, the narinfo and the NAR come through the DHT.
    const boot = nodes.find(n => n.label === 'boot')!
    const v = await runCliAsync(['verify', lib, '--repo', tmp(), '--follow', formatPublicKey(tamperedKey), '--listen-p2p', '/ip4/127.0.0.1/tcp/0', '--bootstrap', boot.address])
    expect(v.stdout + v.stderr).toMatch(/announced 1 dispute statement\(s\) on \/nixipfs\/disputes\/1/)
    const ended = Date.now()
    const listedBy = async (node: TestNode): Promise<boolean> => {
      const list = await (await fetch(`${node.url}/disputes`)).json() as Listed[]
      return list.some(d => d.kind === 'rebuild' && d.storePath === lib)
    }
    const missing: string[] = []
    for (const node of nodes) {
      let ok = false
      while (!(ok = await listedBy(node)) && Date.now() - ended < 10_000) await new Promise(resolve => setTimeout(resolve, 100))
      if (!ok) missing.push((node as { label: string }).label)
    }
    console.log(`network: the dispute was listed by ${nodes.length - missing.length}/${nodes.length} nodes ${Date.now() - ended} ms after verify exited`)
    expect(missing).toEqual([])
  }, 120_000)

  it('with a third of the nodes stopped, the bootstrap node among them, a new client still substitutes', async () => {
    for (const label of ['boot', 'honest1', 'sybil1', 'sybil2']) {
      const node = nodes.find(n => n.label === label)!
      await node.stop()
      stopped.add(node)
    }
    expect(stopped.size).toBe(nodes.length / 3)
    const client = await start('client2', { bootstrap: [nodes.find(n => n.label === 'relay')!.address], trust: { keys: trusted, threshold: 2 }, discover: { keys: trusted, requireSignature: false, deadlineMs: 10_000 } })
    await joined(client)
    const r = await substitute(client)
    expect(r.status, r.stderr + '\n' + client.log.join('\n')).toBe(0)
    for (const p of [top, lib]) expect(Buffer.compare(nixDump(p), nixDump(join(r.store, p)))).toBe(0)
    expect(live().length).toBe(9)
  }, 120_000)
})
