import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { formatPublicKey, generateSecretKey, publicKeyOf } from '../../src/nix/signing.js'
import { repoKeyPaths } from '../../src/repo.js'
import { signedCache } from '../helpers/cache.js'
import { runAsync, runCli, startGatewayProcess, tmp, type GatewayProcess } from '../helpers/cli.js'
import { nixAvailable, nixBuild, nixDump, shellDerivation } from '../helpers/nix.js'
import { narOf } from '../nix/fixtures.js'

// A union of followed caches behind one URL must not hide a path that one
// of them could serve to this Nix: a cache X that publishes its own narinfo
// (another NAR, X's signature) for honest builder H's path is not served to
// a Nix that trusts only H, whatever the order of the --follow flags.

const salt = `${Date.now()}-${process.pid}`
const EXPR = shellDerivation(`union-h-${salt}`, `mkdir -p $out; echo honest ${salt} > $out/h`)

describe.runIf(nixAvailable)('a union of an honest builder and a hostile cache', () => {
  let path: string
  let pubH: string
  let pubX: string
  const nodes: GatewayProcess[] = []

  beforeAll(async () => {
    ;[path] = nixBuild(EXPR) as [string]
    const h = tmp()
    expect(runCli(['publish', '--repo', h, path]).status).toBe(0)
    pubH = readFileSync(repoKeyPaths(h).public, 'utf8').trim()
    // X signs its own narinfo for H's store path, naming another NAR.
    const x = tmp()
    const keyX = generateSecretKey('hostile-x-1')
    pubX = formatPublicKey(publicKeyOf(keyX))
    await signedCache(x, keyX, [{ path, nar: narOf('nix-archive-1', '(', 'type', 'regular', 'contents', `not what H built ${salt}\n`, ')') }])
    nodes.push(await startGatewayProcess(['--repo', h]), await startGatewayProcess(['--repo', x]))
  })

  afterAll(async () => { await Promise.all(nodes.map(async n => await n.stop())) })

  it.each([
    ['X first, H preferred with --prefer', (x: string, h: string) => ['--follow', x, '--follow', h, '--prefer', h], false],
    ['H first, H trusted by the local Nix (nix show-config)', (x: string, h: string) => ['--follow', h, '--follow', x], true],
    ['X first, H trusted by the local Nix (nix show-config)', (x: string, h: string) => ['--follow', x, '--follow', h], true]
  ] as const)('%s: Nix trusting only H substitutes the path, and the disagreement is a dispute', async (_, flags, nixTrustsH) => {
    const repo = tmp()
    const gw = await startGatewayProcess(['--repo', repo, ...flags(pubX, pubH), '--http-gateway', nodes[0]!.url, '--http-gateway', nodes[1]!.url],
      nixTrustsH ? { NIX_CONFIG: `trusted-public-keys = ${pubH}` } : {})
    nodes.push(gw)
    const log = await gw.waitForLog(/indexed root[^]*indexed root/, 20_000)
    expect(log).toMatch(/indexed root[^]*indexed root/)
    const store = tmp()
    const r = await runAsync('nix', ['--extra-experimental-features', 'nix-command', 'copy', '--from', gw.url, '--to', store, path,
      '--option', 'trusted-public-keys', pubH, '--option', 'substituters', ''], { XDG_CACHE_HOME: tmp() })
    expect(r.stderr).not.toMatch(/lacks a valid signature/)
    expect(r.status).toBe(0)
    expect(Buffer.compare(nixDump(path), nixDump(join(store, path)))).toBe(0)
    await gw.waitForLog(/dispute: followed caches signed 2 different NARs/)
    const disputes = runCli(['disputes', '--repo', repo, '--json'])
    const recorded = (JSON.parse(disputes.stdout) as Array<{ storePath: string, groups: Array<{ keys: string[] }> }>).find(d => d.storePath === path)
    expect(recorded?.groups.map(g => g.keys.map(k => k.split(':')[0]))).toEqual(expect.arrayContaining([[pubH.split(':')[0]], ['hostile-x-1']]))
  })
})
