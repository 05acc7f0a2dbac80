import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { nix, nixAvailable, nixBuild, shellDerivation } from '../helpers/nix.js'
import { runCli, startGatewayProcess, tmp, type GatewayProcess } from '../helpers/cli.js'

// Nix keeps one trusted key per name: two repos' generated keys must never share one.
describe.runIf(nixAvailable)('generated keys', () => {
  const gateways: GatewayProcess[] = []
  afterAll(async () => { for (const g of gateways) await g.stop() })

  it('two repos on one host get differently named keys, and Nix trusts both caches at once', async () => {
    const salt = `${Date.now()}-${process.pid}`
    const caches = []
    for (const i of [1, 2]) {
      const repo = tmp()
      const [path] = nixBuild(shellDerivation(`keys-${i}-${salt}`, `echo ${i} > $out`)) as [string]
      expect(runCli(['publish', '--repo', repo, path]).status).toBe(0)
      const pub = readFileSync(join(repo, 'keys', 'cache.public'), 'utf8').trim()
      const gw = await startGatewayProcess(['--repo', repo])
      gateways.push(gw)
      caches.push({ path, pub, url: gw.url })
    }
    const names = caches.map(c => c.pub.split(':')[0]!)
    expect(names[0]).toMatch(/^[^:\s]+-nixipfs-[0-9a-z]{8}$/)
    expect(names[0]).not.toBe(names[1])
    const trusted = caches.map(c => c.pub).join(' ')
    for (const c of caches) {
      const r = nix(['copy', '--from', c.url, '--to', tmp(), c.path, '--option', 'trusted-public-keys', trusted], { allowFail: true })
      expect(r.stderr).not.toMatch(/lacks a valid signature/)
      expect(r.status, r.stderr).toBe(0)
    }
  })
})
