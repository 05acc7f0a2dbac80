import { chmodSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { nixAvailable, nixBuild, shellDerivation } from '../helpers/nix.js'
import { runCli, startGatewayProcess, tmp } from '../helpers/cli.js'

describe('nixipfs CLI', () => {
  it('explains every command with --help, including an example', () => {
    for (const cmd of ['keygen', 'publish', 'gateway', 'info', 'ls', 'republish', 'gc']) {
      const r = runCli([cmd, '--help'])
      expect(r.status).toBe(0)
      expect(r.stdout + r.stderr).toMatch(/Example: nixipfs /)
      expect(r.stdout + r.stderr).toMatch(/--repo/)
    }
  })

  it('keygen writes a 0600 secret key, prints the public key and IPNS name, and never overwrites', () => {
    const repo = tmp()
    const r = runCli(['keygen', 'builder.example.org-1', '--repo', repo])
    expect(r.status).toBe(0)
    const secret = join(repo, 'keys', 'cache.secret')
    expect(statSync(secret).mode & 0o777).toBe(0o600)
    const pub = readFileSync(join(repo, 'keys', 'cache.public'), 'utf8').trim()
    expect(pub).toMatch(/^builder\.example\.org-1:[A-Za-z0-9+/]{43}=$/)
    expect(r.stdout).toContain(pub)
    expect(r.stdout).toMatch(/IPNS name: +k51[a-z0-9]{59}/)
    const again = runCli(['keygen', 'other-1', '--repo', repo])
    expect(again.status).toBe(1)
    expect(again.stderr + again.stdout).toMatch(/already exists; refusing to overwrite a key.*\[ERR_REPO\]/)
    expect(readFileSync(join(repo, 'keys', 'cache.public'), 'utf8').trim()).toBe(pub)
  })

  it('refuses a secret key file that others can read, saying how to fix it', () => {
    const dir = tmp()
    const r = runCli(['keygen', 'k-1', '--secret-key-file', join(dir, 'k.sec')])
    expect(r.status).toBe(0)
    expect(statSync(join(dir, 'k.sec.pub')).isFile()).toBe(true)
    chmodSync(join(dir, 'k.sec'), 0o644)
    const p = runCli(['publish', '--repo', tmp(), '--secret-key-file', join(dir, 'k.sec'), '/nix/store/00000000000000000000000000000000-x'])
    expect(p.status).toBe(1)
    expect(p.stderr + p.stdout).toMatch(/chmod 600 .*k\.sec.*\[ERR_INSECURE_KEY_FILE\]/)
  })

  it('says what to do when there is nothing to publish or the arguments are wrong', () => {
    const r = runCli(['publish', '--repo', tmp()], { OUT_PATHS: '' })
    expect(r.status).toBe(1)
    expect(r.stderr + r.stdout).toMatch(/no store paths given, and \$OUT_PATHS and \$DRV_PATH are empty \[ERR_USAGE\]/)
    const g = runCli(['gateway', '--repo', tmp(), '--listen', 'nonsense'])
    expect(g.status).toBe(1)
    expect(g.stderr + g.stdout).toMatch(/--listen must be HOST:PORT/)
    const e = runCli(['gateway', '--repo', tmp()])
    expect(e.status).toBe(1)
    expect(e.stderr + e.stdout).toMatch(/has no cache yet; publish something first/)
  })

  it.runIf(nixAvailable)('publishes $OUT_PATHS as a post-build hook does', () => {
    const [out] = nixBuild(shellDerivation(`hook-${Date.now()}-${process.pid}`, 'echo built > $out')) as [string]
    const repo = tmp()
    const r = runCli(['publish', '--repo', repo], { OUT_PATHS: out })
    expect(r.status).toBe(0)
    expect(r.stdout).toContain(`${out} -> bafk`)
    const info = runCli(['info', '--repo', repo])
    expect(info.stdout).toMatch(/entries: +1\n/)
    const ls = runCli(['ls', '--repo', repo])
    expect(ls.stdout).toMatch(new RegExp(`^${out}\t\\d+\tnar/bafk[a-z0-9]+\\.nar\n$`))
  })

  it.runIf(nixAvailable)('fails clearly on a path that is not in the store', () => {
    const repo = tmp()
    const r = runCli(['publish', '--repo', repo, '/nix/store/00000000000000000000000000000000-missing'])
    expect(r.status).toBe(1)
    expect(r.stderr + r.stdout).toMatch(/ERR_NIX_COMMAND/)
  })

  it.runIf(nixAvailable)('republishes before expiry: by command, and by itself while the gateway runs', async () => {
    const [out] = nixBuild(shellDerivation(`republish-${Date.now()}-${process.pid}`, 'echo built > $out')) as [string]
    const repo = tmp()
    // A record valid for 36 s: less than half of the gateway's default lifetime remains at once.
    expect(runCli(['publish', '--repo', repo, '--lifetime-hours', '0.01', out]).status).toBe(0)
    const r = runCli(['republish', '--repo', repo, '--lifetime-hours', '0.01'])
    expect(r.status).toBe(0)
    expect(r.stdout).toMatch(/sequence: 2\n/)
    const gw = await startGatewayProcess(['--repo', repo])
    try {
      expect(await gw.waitForLog(/republished .* as sequence 3, valid until/)).toMatch(/sequence 3/)
    } finally {
      await gw.stop()
    }
    const info = runCli(['info', '--repo', repo])
    expect(info.stdout).toMatch(/sequence: 3\n/)
    const expires = Date.parse(/expires: +(\S+)/.exec(info.stdout)![1]!)
    expect(expires - Date.now()).toBeGreaterThan(47 * 3600_000)
  })
})

describe('structured logs', () => {
  it('--log-json writes one JSON object a line, one per request with its route, status, bytes and time', async () => {
    const key = join(tmp(), 'k.secret')
    runCli(['keygen', 'up-1', '--secret-key-file', key])
    // A gateway with nothing but an (unreachable) upstream: it starts without a published cache.
    const g = await startGatewayProcess(['--repo', tmp(), '--log-json', '--upstream', 'http://127.0.0.1:9', '--upstream-key', readFileSync(`${key}.pub`, 'utf8').trim()])
    try {
      expect((await fetch(`${g.url}/nix-cache-info`)).status).toBe(200)
      const out = await g.waitForLog(/"route":"cacheinfo"/)
      const lines = out.trim().split('\n').map(l => JSON.parse(l) as Record<string, unknown>)
      expect(lines.every(l => typeof l.time === 'string' && typeof l.level === 'string')).toBe(true)
      expect(lines.find(l => l.route === 'cacheinfo')).toMatchObject({ message: 'request', method: 'GET', path: '/nix-cache-info', status: 200 })
      expect((lines.find(l => l.route === 'cacheinfo')!.bytes as number)).toBeGreaterThan(0)
    } finally {
      await g.stop()
    }
  })
})
