import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { basename, join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ipnsNameOf } from '../../src/ipfs/ipns.js'
import { formatPublicKey, generateSecretKey, parsePublicKey, publicKeyOf, type PublicKey } from '../../src/nix/signing.js'
import { signedCache } from '../helpers/cache.js'
import { runCli, tmp } from '../helpers/cli.js'
import { startTestNode, tamperedClosure, type TestNode } from '../helpers/dht.js'
import { nixAsync, nixAvailable, nixBuild, nixDump, shellDerivation } from '../helpers/nix.js'

// gateway --discover on a loopback DHT: two honest builders (K1, K2) publish
// a closure; a third trusted builder (K3) and two Sybils publish the same
// paths with a tampered library under their own keys. A client that knows
// only one bootstrap address, --trust K1 K2 K3 --threshold 2 and no --follow,
// serves the honest closure to real Nix and never the tampered one.
const salt = `${Date.now()}-${process.pid}`
const EXPR = `
let
  lib = ${shellDerivation(`disc-lib-${salt}`, 'mkdir -p $out/lib; echo "honest library ' + salt + '" > $out/lib/a.txt')};
in ${shellDerivation(`disc-top-${salt}`, 'mkdir -p $out/bin; printf "#!/bin/sh\\necho hi\\n" > $out/bin/hi; chmod +x $out/bin/hi; ln -s ${lib}/lib/a.txt $out/a')}
`

describe.runIf(nixAvailable)('gateway --discover', () => {
  let top: string
  let lib: string
  const honest: PublicKey[] = []
  let tamperedKey: PublicKey
  const sybils: PublicKey[] = []
  const nodes: TestNode[] = []
  const start = async (options: Parameters<typeof startTestNode>[0]): Promise<TestNode> => {
    const node = await startTestNode(options)
    nodes.push(node)
    return node
  }
  /** Waits (at most 10 s) until `node` knows `n` DHT peers: a node that has just joined knows only its bootstrap peer. */
  const joined = async (node: TestNode, n = 3): Promise<void> => {
    for (let i = 0; i < 100 && node.daemon.network.routing!.size() < n; i++) await new Promise(resolve => setTimeout(resolve, 100))
  }

  beforeAll(async () => {
    ;[top] = nixBuild(EXPR) as [string]
    const closure = execFileSync('nix-store', ['--query', '--requisites', top], { encoding: 'utf8' }).trim().split('\n')
    lib = closure.find(p => p !== top)!
    const boot = await start({ label: 'boot' })
    // Honest builders publish with the real CLI.
    for (let i = 1; i <= 2; i++) {
      const repo = tmp()
      const r = runCli(['publish', '-r', '--repo', repo, top])
      expect(r.status, r.stderr).toBe(0)
      const key = parsePublicKey(readFileSync(join(repo, 'keys', 'cache.public'), 'utf8').trim())
      honest.push(key)
      await start({ label: `honest${i}`, repo, own: ipnsNameOf(key.key), bootstrap: [nodes.at(-1)!.address] })
    }
    const items = tamperedClosure(lib, top)
    for (let i = 0; i < 3; i++) {
      const key = generateSecretKey(i === 0 ? 'builder-3' : `sybil-${i}`)
      const repo = tmp()
      await signedCache(repo, key, items as never)
      if (i === 0) tamperedKey = publicKeyOf(key)
      else sybils.push(publicKeyOf(key))
      await start({ label: i === 0 ? 'tampered' : `sybil${i}`, repo, own: ipnsNameOf(key.publicKey), bootstrap: [nodes[1 + (i % 2)]!.address] })
    }
    void boot
    for (const n of nodes.slice(1)) expect(await n.waitForLog(/announced root/, 30_000), n.log.join('\n')).toBe(true)
  })
  afterAll(async () => { await Promise.all(nodes.map(async n => await n.stop())) })

  it('serves the honest closure to real nix copy, never the tampered library; Sybils are never followed', async () => {
    const trusted = [...honest, tamperedKey]
    const client = await start({
      label: 'client',
      bootstrap: [nodes[0]!.address],
      trust: { keys: trusted, threshold: 2 },
      discover: { keys: trusted, requireSignature: false, deadlineMs: 10_000 }
    })
    await joined(client)
    const store = tmp()
    const t0 = Date.now()
    const r = await nixAsync(['copy', '--option', 'substituters', '', '--from', client.url, '--to', store, top, '--option', 'trusted-public-keys', trusted.map(formatPublicKey).join(' ')])
    console.log(`discover: nix copy of the closure took ${Date.now() - t0} ms; ${client.log.filter(l => l.includes('discovery: ')).join('; ')}`)
    expect(r.status, r.stderr + '\n' + client.log.join('\n')).toBe(0)
    for (const p of [top, lib]) expect(Buffer.compare(nixDump(p), nixDump(join(store, p)))).toBe(0)
    const log = client.log.join('\n')
    for (const key of honest) expect(log).toContain(`following /ipns/${ipnsNameOf(key.key)}`)
    for (const key of sybils) expect(log).not.toContain(ipnsNameOf(key.key))
    // The followed caches' holders were found and their trustless gateways, checked, joined the block sources:
    // every block came over HTTP, none waited on bitswap (whose wants for the indexes timed out on a busy DHT).
    const { counters } = client.daemon.network.blocks
    console.log(`discover: blocks ${JSON.stringify({ http: counters.http, car: counters.car, bitswap: counters.bitswap })}`)
    for (const n of nodes.slice(1, 3)) expect(log).toContain(`${n.url} (peer `)
    expect(counters.http + counters.car).toBeGreaterThan(0)
    expect(counters.bitswap).toBe(0)
    // The trusted but tampered builder was found and outvoted: a dispute, not a served NAR. Its cache may answer
    // after the quorum was met, and is judged then: the dispute is recorded within seconds.
    expect(await client.waitForLog(/dispute: trusted builders signed 2 different NARs/, 10_000), client.log.join('\n')).toBe(true)
    const narinfo = await (await fetch(`${client.url}/${basename(lib).slice(0, 32)}.narinfo`)).text()
    expect(narinfo).toContain(`NarHash: ${execFileSync('nix-store', ['--query', '--hash', lib], { encoding: 'utf8' }).trim()}`)
  })

  // Not by name at start (warmUp off, as with more trusted keys than --max-discovered): the providers of the rendezvous
  // CID hand over each cache's narinfo with its name, and two signed by honest trusted keys settle the quorum at once.
  it('serves a narinfo the providers handed over, signed by enough trusted keys, without the Sybils\' or the tampered one', async () => {
    const trusted = [...honest, tamperedKey]
    const client = await start({
      label: 'client-handed',
      bootstrap: [nodes[4]!.address],
      trust: { keys: trusted, threshold: 2 },
      discover: { keys: trusted, requireSignature: false, deadlineMs: 10_000, warmUp: false }
    })
    await joined(client)
    const res = await fetch(`${client.url}/${basename(top).slice(0, 32)}.narinfo`)
    const log = client.log.join('\n')
    expect(res.status, log).toBe(200)
    const text = await res.text()
    expect(text).toContain(`NarHash: ${execFileSync('nix-store', ['--query', '--hash', top], { encoding: 'utf8' }).trim()}`)
    const trustedSigs = text.split('\n').filter(l => trusted.some(k => l.startsWith(`Sig: ${k.name}:`)))
    expect(trustedSigs.length).toBeGreaterThanOrEqual(2) // the threshold; K3's tampered build of the library changes not this path's NAR
    expect(log).toMatch(/discovery: [0-9a-z]{32}: .* [2-9] handed the narinfo over/)
    for (const key of sybils) expect(log).not.toContain(ipnsNameOf(key.key))
  })

  it('a path nobody has is a 404 within the deadline, and the miss is remembered', async () => {
    const client = nodes.at(-1)!
    const missing = '0'.repeat(31) + '1'
    let t0 = Date.now()
    expect((await fetch(`${client.url}/${missing}.narinfo`)).status).toBe(404)
    const first = Date.now() - t0
    expect(first).toBeLessThan(12_000)
    t0 = Date.now()
    expect((await fetch(`${client.url}/${missing}.narinfo`)).status).toBe(404)
    expect(Date.now() - t0).toBeLessThan(1_000)
    const lookups = client.log.filter(l => l.includes(`discovery: ${missing}`))
    expect(lookups, lookups.join('\n')).toHaveLength(1)
  })

  it('without --trust only the local Nix\'s keys count: an empty repo discovers the closure signed by such a key, never a Sybil\'s', async () => {
    const client = await start({
      label: 'client-nix-keys',
      bootstrap: [nodes[3]!.address],
      prefer: [honest[0]!],
      discover: { keys: [honest[0]!], requireSignature: true, deadlineMs: 10_000 }
    })
    await joined(client)
    const store = tmp()
    const r = await nixAsync(['copy', '--option', 'substituters', '', '--from', client.url, '--to', store, top, '--option', 'trusted-public-keys', formatPublicKey(honest[0]!)])
    expect(r.status, r.stderr + '\n' + client.log.join('\n')).toBe(0)
    for (const p of [top, lib]) expect(Buffer.compare(nixDump(p), nixDump(join(store, p)))).toBe(0)
    const log = client.log.join('\n')
    expect(log).toContain(`following /ipns/${ipnsNameOf(honest[0]!.key)}`)
    for (const key of [...sybils, tamperedKey, honest[1]!]) expect(log).not.toContain(`following /ipns/${ipnsNameOf(key.key)}`)
  })
})
