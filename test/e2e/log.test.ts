import { execFileSync } from 'node:child_process'
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildLogFile, nixLogDir } from '../../src/nix/build-log.js'
import { repoKeyPaths } from '../../src/repo.js'
import { runAsync, runCli, startGatewayProcess, tmp, type GatewayProcess } from '../helpers/cli.js'
import { rawGet } from '../helpers/http.js'
import { NIX_OFFLINE, nixAvailable, shellDerivation } from '../helpers/nix.js'

// `nix log` against the gateway: publish takes the build log Nix kept for each
// published path's derivation into the cache (log/<drv>, bzip2 as Nix stores
// it), and the gateway serves it as Nix's binary cache stores do. The local
// log files are deleted after publishing, so Nix can only read them from the
// gateway.
const salt = `${Date.now()}-${process.pid}`

interface Built { out: string, drv: string, file: string, text: string, bz2: Buffer }

/** Builds a derivation and reads the log Nix kept for it (`nix log` on the local store). */
function build (name: string, script: string): Built {
  const expr = join(tmp(), 'default.nix')
  writeFileSync(expr, shellDerivation(`${name}-${salt}`, script))
  // Its output on stderr would overflow a pipe: it is read back from the log.
  const out = execFileSync('nix-build', [expr, '--no-out-link', ...NIX_OFFLINE], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
  const drv = execFileSync('nix-store', ['--query', '--deriver', out], { encoding: 'utf8' }).trim()
  const file = buildLogFile(nixLogDir(), basename(drv))
  const text = execFileSync('nix', ['--extra-experimental-features', 'nix-command', 'log', out, ...NIX_OFFLINE], { encoding: 'utf8', maxBuffer: 1 << 26, stdio: ['ignore', 'pipe', 'ignore'] })
  return { out, drv, file, text, bz2: readFileSync(file) }
}

/** `nix ARGS` with a fresh narinfo cache (Nix remembers misses per URL), never asking a default substituter. */
async function nix (args: string[]): Promise<{ status: number, stdout: string, stderr: string }> {
  return await runAsync('nix', ['--extra-experimental-features', 'nix-command', ...args], { XDG_CACHE_HOME: tmp() })
}

describe.runIf(nixAvailable)('build logs', () => {
  const repo = tmp()
  const gateways: GatewayProcess[] = []
  let big: Built
  let small: Built
  let none: Built
  let gw: GatewayProcess

  beforeAll(async () => {
    // About 2 MB of text that bzip2 cannot shrink much: its log spans several chunks (a chunk is at most 1 MiB).
    big = build('log-big', `echo "first line ${salt}"; head -c 1500000 /dev/urandom | base64 -w 76; echo "last line ${salt}"; echo x > $out`)
    small = build('log-small', `echo "a small log ${salt}"; echo "on stderr too" >&2; echo y > $out`)
    none = build('log-none', `echo "never published ${salt}"; echo z > $out`)
    rmSync(none.file) // a path whose log is gone (as for one substituted, not built)
    const published = runCli(['publish', '--repo', repo, big.out, small.out, none.out])
    expect(published.status, published.stderr).toBe(0)
    rmSync(big.file)
    rmSync(small.file)
    gw = await startGatewayProcess(['--repo', repo])
    gateways.push(gw)
  })
  afterAll(async () => { await Promise.all(gateways.map(async g => await g.stop())) })

  it('nix log reads the exact build log from the gateway, by output path and by .drv (a log of several chunks too)', async () => {
    expect(big.bz2.length).toBeGreaterThan(1024 * 1024)
    expect(big.text.startsWith(`first line ${salt}\n`)).toBe(true)
    expect(big.text.endsWith(`last line ${salt}\n`)).toBe(true)
    expect(small.text).toBe(`a small log ${salt}\non stderr too\n`)
    for (const b of [big, small]) {
      // The gateway as the store: Nix reads the narinfo's Deriver, then log/<drv>.
      const byOut = await nix(['log', '--store', gw.url, b.out, '--option', 'substituters', ''])
      expect(byOut.stderr).toMatch(`got build log for '${b.out}' from '${gw.url}'`)
      expect(byOut.status).toBe(0)
      expect(byOut.stdout).toBe(b.text)
      // The gateway as a substituter of the local store (which has the .drv, no longer its log).
      const byDrv = await nix(['log', b.drv, '--option', 'substituters', gw.url])
      expect(byDrv.stderr).toMatch(`got build log for '${b.drv}' from '${gw.url}'`)
      expect(byDrv.status).toBe(0)
      expect(byDrv.stdout).toBe(b.text)
      const readLog = await runAsync('nix-store', ['--store', gw.url, '--read-log', b.drv, '--option', 'substituters', ''], { XDG_CACHE_HOME: tmp() })
      expect(readLog.status, readLog.stderr).toBe(0)
      expect(readLog.stdout).toBe(b.text)
    }
  })

  it('serves the bzip2 bytes as Nix stored them with Content-Encoding: bzip2, plain text to a client that does not take bzip2', async () => {
    const url = `${gw.url}/log/${basename(big.drv)}`
    for (const headers of [{}, { 'accept-encoding': 'bzip2' }, { 'accept-encoding': 'gzip, bzip2;q=0.5' }, { 'accept-encoding': '*' }]) {
      const r = await rawGet(url, headers)
      expect(r.status).toBe(200)
      expect(r.headers['content-encoding']).toBe('bzip2')
      expect(r.headers['content-length']).toBe(String(big.bz2.length))
      expect(Buffer.compare(r.body, big.bz2)).toBe(0)
    }
    for (const headers of [{ 'accept-encoding': 'gzip, deflate, br' }, { 'accept-encoding': 'bzip2;q=0' }]) {
      const r = await rawGet(url, headers)
      expect(r.status).toBe(200)
      expect(r.headers['content-encoding']).toBeUndefined()
      expect(r.headers['content-type']).toBe('text/plain; charset=utf-8')
      expect(r.body.toString()).toBe(big.text)
    }
    const head = await rawGet(url, {}, 'HEAD')
    expect(head.status).toBe(200)
    expect(head.headers['content-length']).toBe(String(big.bz2.length))
    expect(head.body.length).toBe(0)
  })

  it('a path without a log publishes all the same; its log is a 404 and nix log says it is not available', async () => {
    const narinfo = await rawGet(`${gw.url}/${none.out.slice(11, 43)}.narinfo`)
    expect(narinfo.status).toBe(200)
    expect(narinfo.body.toString()).toMatch(`Deriver: ${basename(none.drv)}`)
    expect((await rawGet(`${gw.url}/log/${basename(none.drv)}`)).status).toBe(404)
    expect((await rawGet(`${gw.url}/log/not-a-derivation`)).status).toBe(404)
    const r = await nix(['log', '--store', gw.url, none.out, '--option', 'substituters', ''])
    expect(r.status).not.toBe(0)
    expect(r.stderr).toMatch(`build log of '${none.out}' is not available`)
  })

  it('publish --store DIR takes the log from that chroot store\'s own log directory, where Nix looks for it', async () => {
    // A chroot store cannot run /bin/sh builders here: the path is copied in, and its log put where this code says Nix keeps it.
    const store = tmp()
    execFileSync('nix', ['--extra-experimental-features', 'nix-command', 'copy', '--no-check-sigs', '--to', store, none.out, ...NIX_OFFLINE])
    const file = buildLogFile(nixLogDir(store), basename(none.drv))
    expect(file.startsWith(`${store}/nix/var/log/nix/drvs/`)).toBe(true)
    mkdirSync(dirname(file), { recursive: true })
    writeFileSync(file, execFileSync('bzip2', ['-c'], { input: `kept in a chroot store ${salt}\n` }))
    // Real Nix finds it there.
    const local = await nix(['log', '--store', store, none.out, '--option', 'substituters', ''])
    expect(local.stdout).toBe(`kept in a chroot store ${salt}\n`)
    const other = tmp()
    const published = runCli(['publish', '--repo', other, '--store', store, none.out])
    expect(published.status, published.stderr).toBe(0)
    const g = await startGatewayProcess(['--repo', other])
    gateways.push(g)
    const r = await nix(['log', '--store', g.url, none.out, '--option', 'substituters', ''])
    expect(r.status, r.stderr).toBe(0)
    expect(r.stdout).toBe(`kept in a chroot store ${salt}\n`)
  })

  it.each([
    ['following', []],
    ['under --trust (a log is informational: the first followed cache that has it serves it)', ['--trust']]
  ] as const)('a gateway %s the cache serves its logs, fetched when asked for', async (_, trust) => {
    const pub = readFileSync(repoKeyPaths(repo).public, 'utf8').trim()
    const follower = await startGatewayProcess(['--repo', tmp(), '--follow', pub, ...trust.flatMap(f => [f, pub]), '--http-gateway', gw.url])
    gateways.push(follower)
    expect(await follower.waitForLog(/indexed root/, 20_000)).toMatch(/indexed root/)
    const r = await nix(['log', '--store', follower.url, big.out, '--option', 'substituters', ''])
    expect(r.status, r.stderr).toBe(0)
    expect(r.stdout).toBe(big.text)
  })
})
