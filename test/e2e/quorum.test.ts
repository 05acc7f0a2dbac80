import { execFileSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { nix, nixAvailable, nixBuild, nixDump, shellDerivation } from '../helpers/nix.js'
import { runCli, startGatewayProcess, tmp, type GatewayProcess } from '../helpers/cli.js'

// Four trusted builders publish the same store path; three built it honestly,
// the fourth serves a tampered output (made with real Nix: the path exported,
// one byte of a file changed, imported into a chroot store under the same
// name). Ten untrusted caches agree with the tampered one. All caches live in
// one repo (one record per key), served by one gateway that follows them all.
const salt = `${Date.now()}-${process.pid}`

describe.runIf(nixAvailable)('k-of-n quorum over real builders', () => {
  let path: string
  let evilStore: string
  const repo = tmp()
  const keys: Array<{ secret: string, pub: string }> = []
  const gateways: GatewayProcess[] = []

  const keygen = (name: string): { secret: string, pub: string } => {
    const secret = join(tmp(), 'key.secret')
    expect(runCli(['keygen', name, '--secret-key-file', secret]).status).toBe(0)
    return { secret, pub: readFileSync(`${secret}.pub`, 'utf8').trim() }
  }
  const publish = (key: { secret: string }, store?: string): void => {
    const r = runCli(['publish', '--repo', repo, '--secret-key-file', key.secret, ...(store === undefined ? [] : ['--store', store]), path])
    expect(r.status, r.stderr).toBe(0)
  }
  const gateway = async (threshold: number): Promise<GatewayProcess> => {
    const g = await startGatewayProcess(['--repo', repo, ...keys.flatMap(k => ['--follow', k.pub]), ...keys.slice(0, 4).flatMap(k => ['--trust', k.pub]), '--threshold', String(threshold)])
    gateways.push(g)
    return g
  }

  beforeAll(() => {
    ;[path] = nixBuild(`${shellDerivation(`quorum-${salt}`, 'mkdir $out; echo "built at $(date +%s%N)" > $out/stamp; echo hello > $out/greeting')}`) as [string]
    const exported = execFileSync('nix-store', ['--export', path], { maxBuffer: 1 << 26 })
    const at = exported.indexOf('built at ')
    exported[at + 9]! ^= 1 // one digit of the stamp: same length, other bytes
    evilStore = tmp()
    execFileSync('nix-store', ['--store', evilStore, '--import', '--option', 'require-sigs', 'false'], { input: exported })
    expect(readFileSync(join(evilStore, path, 'stamp'), 'utf8')).not.toBe(readFileSync(join(path, 'stamp'), 'utf8'))
    for (let i = 1; i <= 4; i++) keys.push(keygen(`builder-${i}`))
    for (let i = 1; i <= 10; i++) keys.push(keygen(`sybil-${i}`))
    for (const [i, key] of keys.entries()) publish(key, i < 3 ? undefined : evilStore)
  })
  afterAll(async () => { await Promise.all(gateways.map(async g => await g.stop())) })

  it('with K=2 serves the honest output to real Nix, lists the dispute, and never serves the tampered NAR', async () => {
    const g = await gateway(2)
    const store = tmp()
    const r = nix(['copy', '--from', g.url, '--to', store, path, '--option', 'trusted-public-keys', keys[0]!.pub], { allowFail: true })
    expect(r.status, r.stderr).toBe(0)
    expect(Buffer.compare(nixDump(path), nixDump(join(store, path)))).toBe(0)
    // The narinfo carries the three honest builders' signatures and nothing else.
    const narinfo = await (await fetch(`${g.url}/${path.slice(11, 43)}.narinfo`)).text()
    expect(narinfo.match(/^Sig: /gm)).toHaveLength(3)
    expect(narinfo).not.toMatch(/Sig: (builder-4|sybil)/)

    const disputes = (await (await fetch(`${g.url}/disputes`)).json() as Array<{ kind: string, storePath: string, groups: Array<{ narHash: string, keys: string[] }> }>).filter(d => d.kind === 'quorum')
    expect(disputes).toHaveLength(1)
    expect(disputes[0]!.storePath).toBe(path)
    expect(disputes[0]!.groups.map(x => x.keys.length).sort()).toEqual([1, 3])
    expect(disputes[0]!.groups.find(x => x.keys.length === 1)!.keys[0]).toBe(keys[3]!.pub)
    const listed = runCli(['disputes', '--repo', repo])
    expect(listed.stdout).toContain(path)
    expect(listed.stdout).toMatch(/signed by builder-4\n/)

    // The tampered NAR, by its own CID, is not served.
    const evilUrl = runCli(['ls', '--repo', repo, '--cache', keys[3]!.pub]).stdout.trim().split('\t')[2]!
    const honestUrl = /^URL: (\S+)$/m.exec(narinfo)![1]!
    expect(evilUrl).not.toBe(honestUrl)
    expect((await fetch(`${g.url}/${evilUrl}`)).status).toBe(404)
  })

  it('with K=4 refuses the path with a clear message', async () => {
    const g = await gateway(4)
    const r = nix(['copy', '--from', g.url, '--to', tmp(), path, '--option', 'trusted-public-keys', keys[0]!.pub], { allowFail: true })
    expect(r.status).not.toBe(0)
    expect(await g.waitForLog(/refused/)).toMatch(new RegExp(`refused ${path}: at most 3 of the 4 trusted signatures required agree`))
  })
})
