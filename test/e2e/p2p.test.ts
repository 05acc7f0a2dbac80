import { execFileSync } from 'node:child_process'
import { cpSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { PackStore } from '../../src/ipfs/pack-store.js'
import { nix, nixAvailable, nixBuild, nixDump, shellDerivation } from '../helpers/nix.js'
import { runCli, startGatewayProcess, startNodeProcess, tmp, type GatewayProcess } from '../helpers/cli.js'
import { hostilePeer } from '../helpers/http.js'

// Builder B publishes a two-path closure with a multi-block file; mirror M
// follows B by key and pins it; B goes away; client C, knowing only B's public
// key and M's address, serves the closure to real Nix.
const salt = `${Date.now()}-${process.pid}`
const EXPR = `
let
  lib = ${shellDerivation(`p2p-lib-${salt}`, 'mkdir -p $out/lib; echo library > $out/lib/a.txt; i=0; while [ $i -lt 60000 ]; do echo "row $i of a file spanning several blocks ' + salt + '"; i=$((i+1)); done > $out/lib/big.txt')};
in ${shellDerivation(`p2p-top-${salt}`, 'mkdir -p $out/bin; printf "#!/bin/sh\\necho hi\\n" > $out/bin/hi; chmod +x $out/bin/hi; ln -s ${lib}/lib/a.txt $out/a')}
`
const P2P = ['--listen-p2p', '/ip4/127.0.0.1/tcp/0']

/** A peer that answers like `upstream` but flips the last byte of every block or CAR it sends. */
async function corruptingProxy (upstream: string): Promise<{ url: string, close: () => void, corrupted: () => number }> {
  let corrupted = 0
  const peer = await hostilePeer(upstream, async (path, honest) => {
    if (!path.startsWith('/ipfs/')) return 'honest'
    const body = Buffer.from(await honest())
    if (body.length === 0) return { body }
    body[body.length - 1]! ^= 0xff
    corrupted++
    return { body }
  })
  return { ...peer, corrupted: () => corrupted }
}

describe.runIf(nixAvailable)('builder → mirror → client, builder gone', () => {
  let top: string
  let closure: string[]
  let pub: string
  let builderRepo: string
  const nodes: GatewayProcess[] = []
  const start = async (command: 'gateway' | 'mirror', args: string[]): Promise<GatewayProcess> => {
    const node = await startNodeProcess(command, args)
    nodes.push(node)
    return node
  }

  beforeAll(() => {
    builderRepo = tmp()
    ;[top] = nixBuild(EXPR) as [string]
    closure = execFileSync('nix-store', ['--query', '--requisites', top], { encoding: 'utf8' }).trim().split('\n')
    expect(closure).toHaveLength(2)
    const r = runCli(['publish', '-r', '--repo', builderRepo, top])
    expect(r.status, r.stderr).toBe(0)
    pub = readFileSync(join(builderRepo, 'keys', 'cache.public'), 'utf8').trim()
  })
  afterAll(async () => { await Promise.all(nodes.map(async n => await n.stop())) })

  function substitute (url: string): void {
    const store = tmp()
    const r = nix(['copy', '--from', url, '--to', store, top, '--option', 'trusted-public-keys', pub], { allowFail: true })
    expect(r.status, r.stderr).toBe(0)
    for (const p of closure) expect(Buffer.compare(nixDump(p), nixDump(join(store, p)))).toBe(0)
  }

  it('over HTTP (trustless gateway), and a corrupting peer is detected and routed around', async () => {
    const builder = await start('gateway', ['--repo', builderRepo])
    const mirrorRepo = tmp()
    const mirror = await start('mirror', ['--repo', mirrorRepo, '--follow', pub, '--http-gateway', builder.url, '--follow-interval', '1'])
    expect(await mirror.waitForLog(/pinned root/, 30_000)).toMatch(/pinned root/)
    // A second mirror keeps only the library's closure.
    const lib = closure.find(p => p.includes('p2p-lib'))!
    const partial = await start('mirror', ['--repo', tmp(), '--follow', pub, '--http-gateway', builder.url, '--follow-interval', '1', '--closure', lib])
    expect(await partial.waitForLog(/pinned the closure \(1 paths\)/, 30_000)).toMatch(/pinned the closure/)
    await builder.stop()
    // gc keeps its hands off a store a running mirror writes to.
    const gc = runCli(['gc', '--repo', mirrorRepo])
    expect(gc.status).toBe(1)
    expect(gc.stderr).toMatch(/a gateway or mirror \(pid \d+\) is fetching blocks into/)

    const client = await start('gateway', ['--repo', tmp(), '--follow', pub, '--http-gateway', mirror.url])
    expect(await client.waitForLog(/indexed root/, 20_000)).toMatch(/indexed root/)
    substitute(client.url)

    // From the partial mirror alone: the library comes, the top path cannot (its NAR is nowhere).
    const fromPartial = await start('gateway', ['--repo', tmp(), '--follow', pub, '--http-gateway', partial.url])
    expect(await fromPartial.waitForLog(/indexed root/, 20_000)).toMatch(/indexed root/)
    const store = tmp()
    expect(nix(['copy', '--from', fromPartial.url, '--to', store, lib, '--option', 'trusted-public-keys', pub], { allowFail: true }).status).toBe(0)
    expect(Buffer.compare(nixDump(lib), nixDump(join(store, lib)))).toBe(0)
    expect(nix(['copy', '--from', fromPartial.url, '--to', store, top, '--option', 'trusted-public-keys', pub], { allowFail: true }).status).not.toBe(0)

    // Every user seeds: a second client that knows only the first client gets the closure from it.
    const neighbour = await start('gateway', ['--repo', tmp(), '--follow', pub, '--http-gateway', client.url])
    expect(await neighbour.waitForLog(/indexed root/, 20_000)).toMatch(/indexed root/)
    substitute(neighbour.url)

    // A second client whose first peer corrupts everything it sends.
    const evil = await corruptingProxy(mirror.url)
    try {
      const careful = await start('gateway', ['--repo', tmp(), '--follow', pub, '--http-gateway', evil.url, '--http-gateway', mirror.url])
      expect(await careful.waitForLog(/indexed root/, 20_000)).toMatch(/indexed root/)
      substitute(careful.url)
      expect(evil.corrupted()).toBeGreaterThan(0)
      expect(careful.output()).toMatch(/sent a corrupt block/)
    } finally {
      evil.close()
    }
  })

  it('over HTTP with blocks compressed ahead (nixipfs precompress): frames go out as stored, never a damaged one', async () => {
    const repo = tmp()
    cpSync(builderRepo, repo, { recursive: true })
    expect(runCli(['precompress', '--repo', repo, '--level', '0']).stderr).toMatch(/--level must be a whole number from 1 to 19, got "0"/)
    const first = runCli(['precompress', '--repo', repo])
    expect(first.status, first.stderr).toBe(0)
    expect(first.stdout).toMatch(/compressed: [1-9]\d* blocks, .* at level 9/)
    expect(runCli(['precompress', '--repo', repo]).stdout).toMatch(/compressed: 0 blocks[\s\S]*already: +[1-9]/)
    // Every frame damaged on disk: no CRC-32 matches, so each block is compressed again as it is sent.
    const frames = await PackStore.openAt(join(repo, 'packs-zstd'))
    const pack = join(repo, 'packs-zstd', '000001.pack')
    const bytes = readFileSync(pack)
    for await (const { loc } of frames.records()) bytes[loc.offset + loc.length - 1]! ^= 0xff
    await frames.close()
    writeFileSync(pack, bytes)
    const builder = await start('gateway', ['--repo', repo])
    const client = await start('gateway', ['--repo', tmp(), '--follow', pub, '--http-gateway', builder.url, '--peer-compression', 'always'])
    expect(await client.waitForLog(/indexed root/, 20_000)).toMatch(/indexed root/)
    substitute(client.url)
    expect(builder.output()).toMatch(/compressed ahead is damaged \(CRC-32 mismatch\); compressing it on the fly/)
    expect(client.output()).not.toMatch(/corrupt/)
    await builder.stop()
    // gc keeps the frames of the blocks it keeps (publish left old index blocks to drop).
    const gc = runCli(['gc', '--repo', repo])
    expect(gc.stdout).toMatch(/before: +(\d+) blocks[\s\S]*kept: +(\d+) blocks[\s\S]*frames: +\1 blocks, .* compressed ahead -> \2 blocks/)
  })

  it('over libp2p (bitswap and record exchange)', async () => {
    const builder = await start('gateway', ['--repo', builderRepo, ...P2P])
    const builderAddr = builder.p2p()
    expect(builderAddr).toMatch(/\/p2p\/12D3Koo/)
    const mirror = await start('mirror', ['--repo', tmp(), '--follow', pub, '--peer', builderAddr!, ...P2P, '--follow-interval', '1'])
    expect(await mirror.waitForLog(/pinned root/, 30_000)).toMatch(/pinned root/)
    await builder.stop()

    const client = await start('gateway', ['--repo', tmp(), '--follow', pub, '--peer', mirror.p2p()!, ...P2P, '--follow-interval', '1'])
    expect(await client.waitForLog(/indexed root/, 20_000)).toMatch(/indexed root/)
    substitute(client.url)
  })
})
