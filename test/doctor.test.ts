import { execFileSync } from 'node:child_process'
import { appendFileSync, chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { nixAvailable, nixBuild, shellDerivation } from './helpers/nix.js'
import { BIN, runAsync, runCli, startGatewayProcess, tmp, type GatewayProcess } from './helpers/cli.js'

/** A post-build hook script running `nixipfs publish ARGS` into `repo`, as the README's recipe does. */
function hookScript (repo: string, args: string): string {
  const file = join(tmp(), 'hook.sh')
  writeFileSync(file, `#!/bin/sh\nset -eu\nexport NIXIPFS_REPO=${repo}\nexec ${BIN} publish ${args}\n`)
  chmodSync(file, 0o755)
  return file
}

// Each misconfiguration doctor claims to find, made for real (Nix reads NIX_CONFIG).
describe.runIf(nixAvailable)('nixipfs doctor', () => {
  const repo = tmp()
  let pub: string
  let gw: GatewayProcess
  let hook: string
  beforeAll(async () => {
    const [path] = nixBuild(shellDerivation(`doctor-${Date.now()}-${process.pid}`, 'mkdir $out; echo ok > $out/ok'))
    expect(runCli(['publish', '--repo', repo, path!]).status).toBe(0)
    pub = readFileSync(join(repo, 'keys', 'cache.public'), 'utf8').trim()
    gw = await startGatewayProcess(['--repo', repo])
    hook = hookScript(repo, '--hook')
  })
  afterAll(async () => { await gw?.stop() })

  const doctor = (nixConfig: string, args: string[] = [], r = repo): { status: number, out: string } => {
    const res = runCli(['doctor', '--repo', r, '--gateway', gw.url, ...args], { NIX_CONFIG: nixConfig })
    return { status: res.status, out: res.stdout + res.stderr }
  }
  const good = (postBuildHook = hook): string => `substituters = ${gw.url}\ntrusted-public-keys = ${pub}\npost-build-hook = ${postBuildHook}`

  it('finds nothing to fix in a good setup', () => {
    const r = doctor(good())
    expect(r.out).toContain(`builds are published by ${hook} (its dry run passed)`)
    expect(r.out).toContain('nothing to fix')
    expect(r.out).not.toContain('share the name')
    expect(r.status).toBe(0)
  })

  it('runs the post-build hook as a dry run: one that would fail every build is an error', () => {
    const before = runCli(['ls', '--repo', repo]).stdout
    const failing = hookScript(repo, '--hook --secret-key-file /nonexistent/cache.secret')
    const r = doctor(good(failing))
    expect(r.status).toBe(1)
    expect(r.out).toMatch(new RegExp(`${failing} fails its dry run \\(exit 1: .*secret key file /nonexistent/cache.secret does not exist.*\\); Nix fails every build while it does`))
    const packs = join(repo, 'packs')
    execFileSync('mount', ['--bind', packs, packs])
    try {
      execFileSync('mount', ['-o', 'remount,ro,bind', packs])
      expect(doctor(good()).out).toMatch(/fails its dry run \(exit 1: .*read-only file system/i)
    } finally {
      execFileSync('umount', [packs])
    }
    const missing = doctor(good('/nonexistent/hook.sh'))
    expect(missing.status).toBe(1)
    expect(missing.out).toMatch(/\/nonexistent\/hook\.sh cannot be read .*Nix fails every build/)
    const noHookFlag = doctor(good(hookScript(repo, '')))
    expect(noHookFlag.out).toMatch(/runs `nixipfs publish` without --hook: a failed publish fails the build/)
    expect(doctor(good('/bin/true')).out).toMatch(/\/bin\/true does not run nixipfs, so builds are not published/)
    expect(runCli(['ls', '--repo', repo]).stdout).toBe(before) // a dry run publishes nothing
  })

  it('warns when two keys it is given share a name (Nix would keep only one)', () => {
    const [name] = pub.split(':')
    const twin = `${name}:${Buffer.alloc(32, 7).toString('base64')}`
    const r = doctor(`${good()}\ntrusted-public-keys = ${pub} ${twin}`)
    expect(r.out).toContain(`share the name ${name}: Nix looks keys up by name and keeps one`)
    const followed = doctor(good(), ['--follow', `b-1:${Buffer.alloc(32, 1).toString('base64')}`, '--trust', `b-1:${Buffer.alloc(32, 2).toString('base64')}`])
    expect(followed.out).toContain('share the name b-1')
  })

  it('finds a gateway Nix does not use, a key it does not trust, and no post-build hook', () => {
    const r = doctor('substituters = https://cache.example\ntrusted-public-keys = other-1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=')
    expect(r.status).toBe(1)
    expect(r.out).toContain(`Nix does not use the gateway: add \`extra-substituters = ${gw.url}\``)
    expect(r.out).toContain(`Nix does not trust the repo's key: add \`extra-trusted-public-keys = ${pub}\``)
    expect(r.out).toMatch(/builds are not published automatically: set post-build-hook/)
  })

  it('finds a secret key others can read, and says how to fix it', () => {
    const key = join(repo, 'keys', 'cache.secret')
    chmodSync(key, 0o644)
    try {
      const r = doctor(good())
      expect(r.status).toBe(1)
      expect(r.out).toContain(`run: chmod 600 ${key}`)
    } finally {
      chmodSync(key, 0o600)
    }
  })

  it('finds an expired record, a gateway that does not answer, and an unreachable peer', async () => {
    const other = tmp()
    const [path] = nixBuild(shellDerivation(`doctor-exp-${Date.now()}-${process.pid}`, 'mkdir $out'))
    expect(runCli(['publish', '--repo', other, '--lifetime-hours', '0.0001', path!]).status).toBe(0)
    await new Promise(resolve => setTimeout(resolve, 800))
    const res = runCli(['doctor', '--repo', other, '--gateway', 'http://127.0.0.1:9', '--http-gateway', 'http://127.0.0.1:9'], { NIX_CONFIG: 'substituters = http://127.0.0.1:9' })
    const out = res.stdout + res.stderr
    expect(res.status).toBe(1)
    expect(out).toMatch(/the record \(sequence 1\) expired at .*; run `nixipfs republish`/)
    expect(out).toMatch(/http:\/\/127\.0\.0\.1:9 does not answer .*; start it: nixipfs gateway/)
    expect(out).toMatch(/peer http:\/\/127\.0\.0\.1:9 does not answer/)
  })

  it("finds narinfos of an earlier repo's key that Nix's narinfo disk cache keeps for the gateway's URL", async () => {
    // Real Nix caches the narinfos of this gateway's repo in a fresh cache directory of its own...
    const cache = tmp()
    const env = { XDG_CACHE_HOME: cache, NIX_CONFIG: good() }
    const [path] = nixBuild(shellDerivation(`doctor-cache-${Date.now()}-${process.pid}`, 'mkdir $out; echo cached > $out/f'))
    expect(runCli(['publish', '--repo', repo, path!]).status).toBe(0)
    const copy = await runAsync('nix', ['--extra-experimental-features', 'nix-command', 'copy', '--from', gw.url, '--to', tmp(), path!, '--option', 'trusted-public-keys', pub], env)
    expect(copy.status, copy.stderr).toBe(0)
    expect(existsSync(join(cache, 'nix', 'binary-cache-v6.sqlite'))).toBe(true)
    // ...so the repo's own key is no finding, and a new repo (a new key) later served at the same URL is.
    expect(runCli(['doctor', '--repo', repo, '--gateway', gw.url], env).stdout).not.toContain('narinfo cache')
    const next = tmp()
    expect(runCli(['publish', '--repo', next, path!]).status).toBe(0)
    const res = runCli(['doctor', '--repo', next, '--gateway', gw.url], env)
    const [oldName] = pub.split(':')
    expect(res.stdout + res.stderr).toContain(`Nix's narinfo cache ${join(cache, 'nix', 'binary-cache-v6.sqlite')} knows ${gw.url} and holds narinfos signed by ${oldName!}`)
    expect(res.stdout + res.stderr).toMatch(/remove .*binary-cache-v6\.sqlite\* \(Nix makes it again\) or serve this repo on another port/)
    // A machine that served many repos at this URL (a test suite does) has many such keys: a few are named, not all.
    const host = /^(.*)-nixipfs-[0-9a-z]{8}$/.exec(oldName!)![1]!
    appendFileSync(join(cache, 'nix', 'binary-cache-v6.sqlite'), Array.from({ length: 200 }, (_, i) => `${host}-nixipfs-${String(i).padStart(8, '0')}:`).join(' '))
    const many = runCli(['doctor', '--repo', next, '--gateway', gw.url], env)
    const finding = (many.stdout + many.stderr).split('\n').find(l => l.includes("Nix's narinfo cache"))!
    expect(finding).toMatch(/holds narinfos signed by \S+, \S+, \S+ and 198 other keys, not by/)
  })
})
