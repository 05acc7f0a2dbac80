import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { nixAvailable, nixBuild, shellDerivation } from '../helpers/nix.js'
import { runCli, startGatewayProcess, tmp, type GatewayProcess } from '../helpers/cli.js'

// A builder publishes two paths: one that builds bit for bit, one that embeds
// the build time (not reproducible). A verifier rebuilds both with real Nix
// (nix-store --realise --check): it co-signs the first and publishes a signed
// dispute over the second, which a follower of both then sees.
const salt = `${Date.now()}-${process.pid}`

describe.runIf(nixAvailable)('nixipfs verify', () => {
  let steady: string
  let flaky: string
  const builderRepo = tmp()
  const verifierRepo = tmp()
  const gateways: GatewayProcess[] = []
  const start = async (args: string[]): Promise<GatewayProcess> => {
    const g = await startGatewayProcess(args)
    gateways.push(g)
    return g
  }
  const pubOf = (repo: string): string => readFileSync(join(repo, 'keys', 'cache.public'), 'utf8').trim()

  beforeAll(() => {
    ;[steady, flaky] = nixBuild(`[ (${shellDerivation(`steady-${salt}`, 'mkdir $out; echo same > $out/file')}) (${shellDerivation(`flaky-${salt}`, 'mkdir $out; date +%s%N > $out/stamp')}) ]`) as [string, string]
    expect(runCli(['publish', '--repo', builderRepo, steady, flaky]).status).toBe(0)
  })
  afterAll(async () => { await Promise.all(gateways.map(async g => await g.stop())) })

  it('co-signs what rebuilds the same, publishes a signed dispute over what does not, and a follower sees it', async () => {
    const builder = await start(['--repo', builderRepo])
    const v = runCli(['verify', steady, flaky, '--repo', verifierRepo, '--follow', pubOf(builderRepo), '--http-gateway', builder.url, '--offline', '--cosign'])
    const out = v.stdout + v.stderr
    expect(v.status).toBe(1)
    expect(out).toMatch(new RegExp(`${steady}: rebuilt bit for bit as 1 builder\\(s\\) signed`))
    expect(out).toMatch(new RegExp(`${flaky}: rebuilt as sha256:\\S+, but \\S+ signed sha256:`))
    expect(out).toContain('[ERR_NOT_REPRODUCIBLE]')
    // The co-signature: the verifier's own cache now has the steady path, signed by its key.
    const ls = runCli(['ls', '--repo', verifierRepo]).stdout
    expect(ls).toContain(steady)
    expect(ls).not.toContain(flaky)

    // A follower of both builders sees the verifier's dispute statement, checked against its key.
    const verifier = await start(['--repo', verifierRepo])
    const follower = await start(['--repo', tmp(), '--follow', pubOf(builderRepo), '--follow', pubOf(verifierRepo), '--http-gateway', builder.url, '--http-gateway', verifier.url, '--follow-interval', '1'])
    const log = await follower.waitForLog(/indexed root[^\n]*\n[^]*indexed root/, 20_000)
    expect(log.match(/indexed root/g)).toHaveLength(2)
    const disputes = await (await fetch(`${follower.url}/disputes`)).json() as Array<{ kind: string, storePath: string, by: string, rebuilt: { narHash: string }, signed: Array<{ narHash: string }> }>
    const published = disputes.filter(d => d.kind === 'rebuild')
    expect(published).toHaveLength(1)
    expect(published[0]!.storePath).toBe(flaky)
    expect(published[0]!.by).toBe(pubOf(verifierRepo))
    expect(published[0]!.rebuilt.narHash).not.toBe(published[0]!.signed[0]!.narHash)
  })
})
