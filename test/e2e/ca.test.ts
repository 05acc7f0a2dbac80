import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { NIX_OFFLINE, nix, nixAvailable, nixDump } from '../helpers/nix.js'
import { runCli, startGatewayProcess, tmp, type GatewayProcess } from '../helpers/cli.js'
import { execFileSync } from 'node:child_process'

// A content-addressed derivation (Nix's ca-derivations feature): builders
// publish its output with the signed realisation (derivation output → path);
// Nix, asking a gateway for the realisation, substitutes the output into a
// fresh store. Under a quorum only the realisation needs K signatures: the
// bytes certify themselves.
const salt = `${Date.now()}-${process.pid}`
const CA = ['--extra-experimental-features', 'nix-command ca-derivations']

describe.runIf(nixAvailable)('content-addressed derivations', () => {
  const expr = join(tmp(), 'ca.nix')
  let out: string
  const repo = tmp()
  const keys: Array<{ secret: string, pub: string }> = []
  const gateways: GatewayProcess[] = []
  const start = async (args: string[]): Promise<GatewayProcess> => {
    const g = await startGatewayProcess(['--repo', repo, ...args])
    gateways.push(g)
    return g
  }
  /** `nix build` of the expression into a fresh chroot store, substituting only from `url`; the store, or the failure. */
  const substitute = (url: string): { status: number, store: string, stderr: string } => {
    const store = tmp()
    const r = nix(['--extra-experimental-features', 'ca-derivations', 'build', '--store', store, '--file', expr, '--no-link', '--option', 'substituters', url, '--option', 'trusted-public-keys', keys.map(k => k.pub).join(' ')], { allowFail: true })
    return { status: r.status, store, stderr: r.stderr }
  }

  beforeAll(() => {
    writeFileSync(expr, `derivation { name = "ca-${salt}"; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" "PATH=/usr/bin:/bin; mkdir $out; echo content-addressed > $out/file" ]; __contentAddressed = true; outputHashMode = "recursive"; outputHashAlgo = "sha256"; }`)
    out = execFileSync('nix-build', [expr, '--no-out-link', ...NIX_OFFLINE, ...CA], { encoding: 'utf8' }).trim()
    for (let i = 1; i <= 2; i++) {
      const secret = join(tmp(), 'key.secret')
      expect(runCli(['keygen', `ca-builder-${i}`, '--secret-key-file', secret]).status).toBe(0)
      keys.push({ secret, pub: readFileSync(`${secret}.pub`, 'utf8').trim() })
    }
    expect(runCli(['publish', '--repo', repo, '--secret-key-file', keys[0]!.secret, out]).status).toBe(0)
  })
  afterAll(async () => { await Promise.all(gateways.map(async g => await g.stop())) })

  it('publishes the CA field and a realisation Nix accepts, and Nix substitutes the output through it', async () => {
    const g = await start(['--follow', keys[0]!.pub])
    const narinfo = await (await fetch(`${g.url}/${out.slice(11, 43)}.narinfo`)).text()
    expect(narinfo).toMatch(/^CA: fixed:r:sha256:/m)
    const r = substitute(g.url)
    expect(r.status, r.stderr).toBe(0)
    expect(existsSync(join(r.store, out, 'file'))).toBe(true)
    expect(Buffer.compare(nixDump(out), nixDump(join(r.store, out)))).toBe(0)
    expect(await g.waitForLog(/GET \/realisations\//)).toBeTruthy()
  })

  it('under a quorum, needs K signatures on the realisation only', async () => {
    const quorum = ['--follow', keys[0]!.pub, '--follow', keys[1]!.pub, '--trust', keys[0]!.pub, '--trust', keys[1]!.pub, '--threshold', '2']
    const one = await start(quorum)
    // One signer: the realisation is refused (the narinfo alone, self-certifying, is still served).
    expect((await fetch(`${one.url}/${out.slice(11, 43)}.narinfo`)).status).toBe(200)
    expect(substitute(one.url).status).not.toBe(0)
    expect(await one.waitForLog(/refused realisation/)).toMatch(/refused realisation sha256:[0-9a-f]{64}!out: at most 1 of the 2/)
    // The second builder publishes the same output: now two keys signed the realisation.
    expect(runCli(['publish', '--repo', repo, '--secret-key-file', keys[1]!.secret, out]).status).toBe(0)
    const two = await start(quorum)
    const r = substitute(two.url)
    expect(r.status, r.stderr).toBe(0)
    expect(Buffer.compare(nixDump(out), nixDump(join(r.store, out)))).toBe(0)
  })
})
