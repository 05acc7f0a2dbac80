import { execFileSync } from 'node:child_process'
import { afterAll, describe, expect, it } from 'vitest'
import { nixAvailable, nixBuild, shellDerivation } from '../helpers/nix.js'
import { runCli, startNodeProcess, tmp, type GatewayProcess } from '../helpers/cli.js'

/** The local addresses a process listens on (TCP), from `ss`. */
function listening (pid: number): string[] {
  const out = execFileSync('ss', ['-H', '-ltnp'], { encoding: 'utf8' })
  return out.split('\n').filter(l => l.includes(`pid=${pid},`)).map(l => l.trim().split(/\s+/)[3]!)
}

// Nothing listens beyond loopback unless asked for: the quick start's gateway, with libp2p on.
describe.runIf(nixAvailable)('exposure by default', () => {
  let gw: GatewayProcess | undefined
  afterAll(async () => { await gw?.stop() })

  it('a gateway with default flags (libp2p on) listens on loopback only', async () => {
    const repo = tmp()
    const [path] = nixBuild(shellDerivation(`exposure-${Date.now()}-${process.pid}`, 'echo x > $out'))
    expect(runCli(['publish', '--repo', repo, path!]).status).toBe(0)
    gw = await startNodeProcess('gateway', ['--repo', repo], {}, { defaultP2p: true })
    expect(gw.p2p()).toMatch(/^\/ip4\/127\.0\.0\.1\/tcp\/\d+/)
    const addresses = listening(gw.child.pid!)
    expect(addresses.length).toBeGreaterThanOrEqual(2) // HTTP and libp2p
    for (const a of addresses) expect(a, addresses.join(' ')).toMatch(/^127\.0\.0\.1:\d+$/)
  })
})
