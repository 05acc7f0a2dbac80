import { execFileSync, spawnSync } from 'node:child_process'
import { chmodSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { nix, nixAvailable, nixBuild, nixDump, NIX_OFFLINE, shellDerivation } from '../helpers/nix.js'
import { BIN, runAsync, runCli, startGatewayProcess, tmp, type GatewayProcess } from '../helpers/cli.js'

const README = readFileSync(resolve(import.meta.dirname, '../../README.md'), 'utf8')
const salt = `${Date.now()}-${process.pid}`

/** The README's post-build hook script, pointed at `repo` and this checkout. */
function readmeHook (repo: string): string {
  const section = README.slice(README.indexOf('### As a Nix post-build-hook'))
  const script = /```sh\n(#!\/bin\/sh\n[\s\S]*?)```/.exec(section)?.[1]
  if (script === undefined) throw new Error('the README has no post-build hook script')
  const file = join(tmp(), 'nixipfs-hook.sh')
  writeFileSync(file, script.replace('/var/lib/nixipfs', repo).replace('/path/to/nixipfs/bin/nixipfs.mjs', BIN))
  chmodSync(file, 0o755)
  return file
}

/** `nix-build` of a derivation writing `bytes` bytes, with `hook` as post-build-hook; without blocking this process. */
async function buildWithHook (hook: string, name: string, bytes = 1000): Promise<{ status: number, out: string, log: string }> {
  const file = join(tmp('nixipfs-expr-'), 'default.nix')
  writeFileSync(file, shellDerivation(`${name}-${salt}`, `head -c ${bytes} /dev/zero > $out`))
  const r = await runAsync('nix-build', [file, '--no-out-link', ...NIX_OFFLINE, '--option', 'post-build-hook', hook])
  return { status: r.status, out: r.stdout.trim(), log: r.stderr }
}

/** Runs `fn` while `<repo>/packs` is mounted read-only: any publish into the repo fails. */
async function withReadOnlyPacks<T> (repo: string, fn: () => Promise<T>): Promise<T> {
  const packs = join(repo, 'packs')
  execFileSync('mount', ['--bind', packs, packs])
  try {
    execFileSync('mount', ['-o', 'remount,ro,bind', packs])
    return await fn()
  } finally {
    execFileSync('umount', [packs])
  }
}

const queued = (repo: string): string[] => readdirSync(join(repo, 'queue'), { withFileTypes: true }).filter(e => e.name.endsWith('.json')).map(e => e.name)
const hashOf = (path: string): string => path.slice('/nix/store/'.length, '/nix/store/'.length + 32)

/** `nix copy --from URL` of `path` into a fresh store, trusting `keys` only. */
function copy (url: string, path: string, keys: string): { status: number, stderr: string, store: string } {
  const store = tmp()
  const r = nix(['copy', '--from', url, '--to', store, path, '--option', 'trusted-public-keys', keys, '--option', 'narinfo-cache-negative-ttl', '0'], { allowFail: true })
  return { status: r.status, stderr: r.stderr, store }
}

describe.runIf(nixAvailable)('the README post-build hook with real nix-build (Nix 2.8 passes $OUT_PATHS empty)', () => {
  const repo = tmp()
  let pub: string
  let hook: string
  let gw: GatewayProcess

  beforeAll(async () => {
    const [seed] = nixBuild(shellDerivation(`hook-seed-${salt}`, 'echo seed > $out'))
    expect(runCli(['publish', '--repo', repo, seed!]).status).toBe(0)
    pub = readFileSync(join(repo, 'keys', 'cache.public'), 'utf8').trim()
    hook = readmeHook(repo)
    gw = await startGatewayProcess(['--repo', repo])
  })
  afterAll(async () => { await gw?.stop() })

  it('publishes the build; the gateway started before it serves the path, which Nix takes only with the key', async () => {
    const b = await buildWithHook(hook, 'hook-built')
    expect(b.log).toContain('running post-build-hook')
    expect(b.status, b.log).toBe(0)
    expect(b.log).toContain(`${b.out} -> bafk`)
    // A built (input-addressed) path: Nix needs a trusted signature for it.
    const untrusted = copy(gw.url, b.out, 'other-1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=')
    expect(untrusted.status).not.toBe(0)
    expect(untrusted.stderr).toMatch(/lacks a valid signature/)
    const trusted = copy(gw.url, b.out, pub)
    expect(trusted.status, trusted.stderr).toBe(0)
    expect(Buffer.compare(nixDump(join(trusted.store, b.out)), nixDump(b.out))).toBe(0)
  })

  it('a publish that fails does not fail the build: it is queued, and the running gateway publishes it', async () => {
    const b = await withReadOnlyPacks(repo, async () => {
      const b = await buildWithHook(hook, 'hook-queued')
      expect(b.status, b.log).toBe(0)
      expect(b.log).toMatch(/nixipfs publish --hook: .*read-only/i)
      expect(b.log).toMatch(/queued in .*\/queue\/.*\.json; the next publish or a running gateway retries it/)
      expect(queued(repo)).toHaveLength(1)
      return b
    })
    // Served within the gateway's retry period (30 s) once the repo is writable again.
    let status = 0
    for (let i = 0; i < 450 && status !== 200; i++) {
      status = (await fetch(`${gw.url}/${hashOf(b.out)}.narinfo`)).status
      if (status !== 200) await new Promise(resolve => setTimeout(resolve, 100))
    }
    expect(status, gw.output()).toBe(200)
    // The gateway serves the path once the record moved, and dequeues and logs just after: wait for its line.
    for (let i = 0; i < 50 && !/published a queued request/.test(gw.output()); i++) await new Promise(resolve => setTimeout(resolve, 100))
    expect(gw.output()).toMatch(/published a queued request/)
    expect(queued(repo)).toHaveLength(0)
    const trusted = copy(gw.url, b.out, pub)
    expect(trusted.status, trusted.stderr).toBe(0)
  })
})

describe.runIf(nixAvailable)('the publish queue without a gateway', () => {
  it('the next publish retries what a failed hook queued', async () => {
    const repo = tmp()
    const [seed] = nixBuild(shellDerivation(`queue-seed-${salt}`, 'echo seed > $out'))
    expect(runCli(['publish', '--repo', repo, seed!]).status).toBe(0)
    const hook = readmeHook(repo)
    const failed = await withReadOnlyPacks(repo, async () => await buildWithHook(hook, 'queue-failed'))
    expect(failed.status, failed.log).toBe(0)
    expect(queued(repo)).toHaveLength(1)
    const next = await buildWithHook(hook, 'queue-next')
    expect(next.status, next.log).toBe(0)
    expect(next.log).toMatch(/published a queued request/)
    expect(queued(repo)).toHaveLength(0)
    const ls = runCli(['ls', '--repo', repo]).stdout
    expect(ls).toContain(failed.out)
    expect(ls).toContain(next.out)
  })

  it('drops a queued publish whose paths left the store, and a hook with nothing to publish exits 0', () => {
    const repo = tmp()
    const file = join(repo, 'queue', 'x.json')
    execFileSync('mkdir', ['-p', join(repo, 'queue')])
    writeFileSync(file, JSON.stringify({ request: { paths: ['/nix/store/00000000000000000000000000000000-gone'], recursive: false, chunker: 'cdc' }, reason: 'test', queuedAt: new Date().toISOString() }))
    const [path] = nixBuild(shellDerivation(`queue-drop-${salt}`, 'echo x > $out'))
    const r = runCli(['publish', '--repo', repo, path!])
    expect(r.status, r.stderr).toBe(0)
    expect(r.stderr + r.stdout).toMatch(/dropped a queued publish of \/nix\/store\/0+-gone: no longer in the Nix store/)
    expect(queued(repo)).toHaveLength(0)
    const empty = spawnSync(process.execPath, [BIN, 'publish', '--hook', '--repo', repo], { encoding: 'utf8', env: { ...process.env, OUT_PATHS: '', DRV_PATH: '' } })
    expect(empty.status).toBe(0)
    expect(empty.stderr + empty.stdout).toMatch(/\$OUT_PATHS and \$DRV_PATH are empty; nothing to publish/)
  })
})
