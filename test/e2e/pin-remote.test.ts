import { readFileSync, writeFileSync } from 'node:fs'
import { createServer, type AddressInfo } from 'node:net'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runAsync, runCli, runCliAsync, startGatewayProcess, startNodeProcess, tmp, type GatewayProcess } from '../helpers/cli.js'
import { nixAvailable, nixBuild, nixDump, shellDerivation } from '../helpers/nix.js'
import { specProxy, type SpecProxy } from '../helpers/pinning-spec.js'

// Issue 20 item 2: a builder asks a second nixipfs node, a mirror that follows
// nothing and only takes pins (--pin-token-file), to pin its cache through the
// IPFS Pinning Service API (`nixipfs pin-remote`). The mirror fetches the blocks
// from the origins the request names (the builder's gateway), says pinned, and
// then serves the cache to real `nix copy` with the builder gone. Every request
// and answer goes through a proxy that checks it against the spec's OpenAPI document.

const salt = `${Date.now()}-${process.pid}`
const EXPR = `[ ${[1, 2].map(i => '(' + shellDerivation(`pin-remote-${i}-${salt}`, `mkdir -p $out; echo ${i} ${salt} > $out/n; head -c ${200_000 * i} /dev/zero | tr '\\0' x > $out/data`) + ')').join(' ')} ]`

describe.runIf(nixAvailable)('nixipfs pin-remote → a nixipfs mirror\'s Pinning Service API', () => {
  let paths: string[]
  let builderRepo: string
  let mirrorRepo: string
  let pub: string
  let builder: GatewayProcess
  let mirror: GatewayProcess
  let proxy: SpecProxy
  let mirror2: GatewayProcess
  let proxy2: SpecProxy
  let tokenFile: string
  let tokens: string
  const nodes: GatewayProcess[] = []

  beforeAll(async () => {
    paths = nixBuild(EXPR)
    builderRepo = tmp()
    expect(runCli(['publish', '--repo', builderRepo, paths[0]!]).status).toBe(0)
    pub = readFileSync(join(builderRepo, 'keys', 'cache.public'), 'utf8').trim()
    const dir = tmp()
    tokens = join(dir, 'tokens')
    writeFileSync(tokens, '# who may pin here\nsomeone-else\npin-token-b1\n')
    tokenFile = join(dir, 'my-token')
    writeFileSync(tokenFile, 'pin-token-b1\n')
    mirrorRepo = tmp()
    ;[builder, mirror, mirror2] = await Promise.all([
      startGatewayProcess(['--repo', builderRepo]),
      startNodeProcess('mirror', ['--repo', mirrorRepo, '--pin-token-file', tokens]),
      startNodeProcess('mirror', ['--repo', tmp(), '--pin-token-file', tokens])
    ])
    nodes.push(builder, mirror, mirror2)
    proxy = await specProxy(`${mirror.url}/psa`)
    proxy2 = await specProxy(`${mirror2.url}/psa`)
  })
  afterAll(async () => {
    await Promise.all(nodes.map(async n => await n.stop()))
    await proxy?.close()
    await proxy2?.close()
  })

  const pinRemote = async (repo: string, extra: string[] = [], service = proxy.url): Promise<{ status: number, out: string }> => {
    const r = await runCliAsync(['pin-remote', '--repo', repo, '--service', service, '--token-file', tokenFile, '--gateway', builder.url, '--timeout', '60', ...extra])
    return { status: r.status, out: r.stdout + r.stderr }
  }

  const nixCopy = async (url: string, path: string): Promise<{ status: number, stderr: string, store: string }> => {
    const store = tmp()
    const r = await runAsync('nix', ['--extra-experimental-features', 'nix-command', 'copy', '--from', url, '--to', store, path,
      '--option', 'trusted-public-keys', pub, '--option', 'substituters', ''], { XDG_CACHE_HOME: tmp() })
    return { status: r.status, stderr: r.stderr, store }
  }

  it('pins the cache root on the mirror, which fetches it from the origins, replaces it on a new root, and serves Nix with the builder stopped', async () => {
    const first = await pinRemote(builderRepo)
    expect(first.out).toMatch(/origins: \/ip4\/127\.0\.0\.1\/tcp\/\d+\/http\/p2p\/12D3Koo\w+/)
    expect(first.out).toMatch(/: pinned \(\d+ blocks/)
    expect(first.out).toMatch(/pinned 1 CID\(s\) in [\d.]+ s: 1 added, 0 replaced, 0 already pinned, 0 old removed; delegates: \/ip4\/127\.0\.0\.1\/tcp\/\d+\/http\/p2p\//)
    expect(first.status).toBe(0)
    expect(await mirror.waitForLog(/pin origin http:\/\/127\.0\.0\.1:\d+ added/)).toMatch(/pinned bafy\w+ \(nixipfs k51\w+\)/)

    // Nothing new: nothing asked again.
    const same = await pinRemote(builderRepo)
    expect(same.out).toMatch(/0 added, 0 replaced, 1 already pinned, 0 old removed/)

    // A new root replaces the pin of the old one.
    expect(runCli(['publish', '--repo', builderRepo, paths[1]!]).status).toBe(0)
    const second = await pinRemote(builderRepo)
    expect(second.out).toMatch(/replaces bafy\w+/)
    expect(second.out).toMatch(/0 added, 1 replaced, 0 already pinned, 0 old removed/)
    expect(second.status).toBe(0)
    const listed = await fetch(`${mirror.url}/psa/pins?status=queued,pinning,pinned,failed`, { headers: { authorization: 'Bearer pin-token-b1' } })
    const { count, results } = await listed.json() as { count: number, results: Array<{ status: string, pin: { cid: string } }> }
    expect(count).toBe(1)
    expect(results[0]!.status).toBe('pinned')
    expect(second.out).toContain(results[0]!.pin.cid)

    // With --closure: the narinfo and NAR of each path of the closure, each a pin of its own, on another mirror.
    const closure = await pinRemote(builderRepo, ['--closure', paths[1]!], proxy2.url)
    expect(closure.out).toMatch(/pinning 2 CID\(s\)/)
    expect(closure.out).toMatch(/pinned 2 CID\(s\) in [\d.]+ s: 2 added, 0 replaced/)
    expect(closure.status).toBe(0)
    const names = await fetch(`${mirror2.url}/psa/pins`, { headers: { authorization: 'Bearer pin-token-b1' } }).then(async r => await r.json() as { results: Array<{ pin: { name: string } }> })
    const hash = paths[1]!.slice('/nix/store/'.length, '/nix/store/'.length + 32)
    const got = names.results.map(r => r.pin.name.replace(/k51\w+/, 'NAME'))
    expect(got).toHaveLength(2)
    expect(got).toEqual(expect.arrayContaining([`nixipfs NAME ${hash}.narinfo`, expect.stringMatching(/^nixipfs NAME nar\/bafk\w+\.nar$/)]))

    await builder.stop()
    const copied = await nixCopy(mirror.url, paths[0]!)
    expect(copied.stderr).not.toMatch(/lacks a valid signature/)
    expect(copied.status).toBe(0)
    expect(Buffer.compare(nixDump(paths[0]!), nixDump(join(copied.store, paths[0]!)))).toBe(0)

    // The pin outlives a restart of the mirror: still served, still listed.
    await mirror.stop()
    const again = await startNodeProcess('mirror', ['--repo', mirrorRepo, '--pin-token-file', tokens])
    nodes.push(again)
    const after = await nixCopy(again.url, paths[1]!)
    expect(after.status).toBe(0)
    expect(Buffer.compare(nixDump(paths[1]!), nixDump(join(after.store, paths[1]!)))).toBe(0)
    // gc keeps what is pinned (the mirror runs no gc itself; stopped, its repo is gc'ed here).
    await again.stop()
    const gc = runCli(['gc', '--repo', mirrorRepo])
    expect(gc.stdout).toMatch(/roots: +0 record\(s\), 1 pin\(s\)/)
    expect(gc.status).toBe(0)

    expect(proxy.problems).toEqual([])
    expect(proxy2.problems).toEqual([])
    expect(proxy.exchanges).toEqual(expect.arrayContaining([
      expect.stringMatching(/^GET \/pins\?name=nixipfs\+k51\w+&match=partial&status=queued%2Cpinning%2Cpinned%2Cfailed&limit=1000 200$/),
      expect.stringMatching(/^POST \/pins 202$/),
      expect.stringMatching(/^GET \/pins\/[\w-]+ 200$/),
      expect.stringMatching(/^POST \/pins\/[\w-]+ 202$/)
    ]))
  })

  it('says clearly when the service is unreachable, refuses the token, or fails the pin', async () => {
    const closed = createServer()
    await new Promise<void>(resolve => closed.listen(0, '127.0.0.1', resolve))
    const port = (closed.address() as AddressInfo).port
    await new Promise(resolve => closed.close(resolve))
    const unreachable = await pinRemote(builderRepo, [], `http://127.0.0.1:${port}/psa`)
    expect(unreachable.status).toBe(1)
    expect(unreachable.out).toMatch(/the pinning service http:\/\/127\.0\.0\.1:\d+\/psa cannot be reached \(ECONNREFUSED\).*\[ERR_PIN_SERVICE_UNREACHABLE\]/)

    writeFileSync(tokenFile, 'not-a-token\n')
    const refused = await pinRemote(builderRepo, [], `${mirror2.url}/psa`)
    expect(refused.status).toBe(1)
    expect(refused.out).toMatch(/refused the access token \(401: UNAUTHORIZED: .*\); check --token-file.*\[ERR_PIN_SERVICE_AUTH\]/)
    writeFileSync(tokenFile, 'pin-token-b1\n')

    // The builder is gone (previous test) and mirror2 holds only a closure: nobody has the root's blocks.
    const failed = await pinRemote(builderRepo, [], proxy2.url)
    expect(failed.status).toBe(1)
    expect(failed.out).toMatch(/asking the gateway at http:\/\/127\.0\.0\.1:\d+ for this node's addresses failed \(ECONNREFUSED\)/)
    expect(failed.out).toMatch(/failed to pin bafy\w+: .*; the pin it replaced \(bafk\w+\) was requested again \[ERR_PIN_FAILED\]/)
    // The service is left with the closure's pins it had (the replaced one asked for again), not with nothing.
    const auth = { headers: { authorization: 'Bearer pin-token-b1' } }
    let left: Array<{ status: string, pin: { name: string } }> = []
    for (let i = 0; i < 50; i++) {
      left = (await fetch(`${mirror2.url}/psa/pins?status=queued,pinning,pinned,failed`, auth).then(async r => await r.json() as { results: typeof left })).results
      if (left.filter(p => p.status === 'pinned').length === 2) break
      await new Promise(resolve => setTimeout(resolve, 100))
    }
    expect(left.map(p => `${p.status} ${p.pin.name.replace(/^nixipfs k51\w+ /, '').replace(/\w{20,}/, 'X')}`).sort()).toEqual(['failed nixipfs X', 'pinned X.narinfo', 'pinned nar/X.nar'].sort())
    expect(proxy2.problems).toEqual([])
  })
})

describe.runIf(nixAvailable)('a pin request whose only origin is a libp2p address', () => {
  it('is dialled, and the blocks come over bitswap', async () => {
    const [path] = nixBuild(shellDerivation(`pin-remote-p2p-${salt}`, `mkdir -p $out; echo p2p ${salt} > $out/n`))
    const repo = tmp()
    expect(runCli(['publish', '--repo', repo, path!]).status).toBe(0)
    const dir = tmp()
    writeFileSync(join(dir, 'tokens'), 'p2p-token\n')
    const p2p = ['--listen-p2p', '/ip4/127.0.0.1/tcp/0']
    const [builder, mirror] = await Promise.all([
      startGatewayProcess(['--repo', repo, ...p2p]),
      startNodeProcess('mirror', ['--repo', tmp(), '--pin-token-file', join(dir, 'tokens'), ...p2p])
    ])
    try {
      const origin = builder.p2p()!
      expect(origin).toMatch(/^\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\/12D3Koo\w+$/)
      // No gateway to ask (port 1 is closed): the --origin given is the only one.
      const r = await runCliAsync(['pin-remote', '--repo', repo, '--service', `${mirror.url}/psa`, '--token-file', join(dir, 'tokens'), '--gateway', 'http://127.0.0.1:1', '--origin', origin, '--timeout', '60'])
      expect(r.stdout + r.stderr).toMatch(new RegExp(`origins: ${origin}\\n`))
      expect(r.stdout + r.stderr).toMatch(/: pinned \(\d+ blocks/)
      expect(r.status).toBe(0)
      expect(await mirror.waitForLog(/connected to pin origin/)).toContain(`connected to pin origin ${origin}`)
      const { blocks } = await (await fetch(`${mirror.url}/stats`)).json() as { blocks: Record<string, number> }
      expect(blocks.bitswap).toBeGreaterThan(0)
      expect(blocks.http + blocks.car).toBe(0)
    } finally {
      await Promise.all([builder.stop(), mirror.stop()])
    }
  })
})
