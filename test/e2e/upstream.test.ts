import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import type { Server } from 'node:http'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { nix, nixAsync, nixAvailable, nixBuild, nixDump, shellDerivation } from '../helpers/nix.js'
import { runCli, startGatewayProcess, tmp, type GatewayProcess } from '../helpers/cli.js'
import { serveFiles } from '../helpers/http.js'

// A gateway with nothing of its own falls back to an upstream binary cache
// made by real Nix: the first substitution streams through it and imports
// (write-through), the second is served from the gateway's own cache, also
// with the upstream down.
const salt = `${Date.now()}-${process.pid}`

describe.runIf(nixAvailable)('gateway --upstream', () => {
  let top: string
  let closure: string[]
  let pub: string
  let upstream: { url: string, server: Server }
  let gw: GatewayProcess
  const repo = tmp()

  beforeAll(async () => {
    ;[top] = nixBuild(`let lib = ${shellDerivation(`up-lib-${salt}`, 'mkdir $out; i=0; while [ $i -lt 20000 ]; do echo "row $i ' + salt + '"; i=$((i+1)); done > $out/rows')}; in ${shellDerivation(`up-top-${salt}`, 'mkdir $out; echo ${lib} > $out/ref')}`) as [string]
    closure = execFileSync('nix-store', ['--query', '--requisites', top], { encoding: 'utf8' }).trim().split('\n')
    const dir = tmp()
    execFileSync('nix-store', ['--generate-binary-cache-key', 'upstream-2', join(dir, 'k.secret'), join(dir, 'k.public')])
    pub = readFileSync(join(dir, 'k.public'), 'utf8').trim()
    const cache = tmp()
    nix(['copy', '--to', `file://${cache}?compression=xz&secret-key=${join(dir, 'k.secret')}`, top])
    upstream = await serveFiles(cache, new Map())
    gw = await startGatewayProcess(['--repo', repo, '--upstream', upstream.url, '--upstream-key', pub], { NIXIPFS_LOG_LEVEL: '4' })
  })
  afterAll(async () => { await gw?.stop(); upstream?.server.close() })

  const copy = async (): Promise<void> => {
    const store = tmp()
    // Nix's own narinfo cache is bypassed, so every copy asks the gateway again.
    const r = await nixAsync(['copy', '--from', gw.url, '--to', store, top, '--option', 'trusted-public-keys', pub, '--option', 'narinfo-cache-positive-ttl', '0', '--option', 'narinfo-cache-negative-ttl', '0'])
    expect(r.status, r.stderr.split('\n').filter(l => !l.includes('cache.nixos.org')).join('\n') + gw.output()).toBe(0)
    for (const p of closure) expect(Buffer.compare(nixDump(p), nixDump(join(store, p)))).toBe(0)
  }
  const stats = async (): Promise<{ blocks: { local: number }, upstream: { narInfoHits: number, narInfoMisses: number, imported: number } }> => await (await fetch(`${gw.url}/stats`)).json() as never

  // First, while the upstream is up: a miss is its 404 (an upstream that is down is no miss: upstream-outage.test.ts).
  it('caches a miss briefly', async () => {
    const hash = '0'.repeat(32)
    expect((await fetch(`${gw.url}/${hash}.narinfo`)).status).toBe(404)
    const before = (await stats()).upstream.narInfoMisses
    expect((await fetch(`${gw.url}/${hash}.narinfo`)).status).toBe(404)
    expect((await stats()).upstream.narInfoMisses).toBe(before + 1)
  })

  it('serves a path only upstream has to real Nix, importing it on the way; the second time it is local', async () => {
    await copy()
    const first = await stats()
    expect(first.upstream.imported).toBe(2)
    expect(first.upstream.narInfoHits).toBeGreaterThanOrEqual(2)
    expect(runCli(['ls', '--repo', repo]).stdout).toContain(top)
    // In /metrics: the NARs' bytes fetched from upstream, their blocks served from it.
    const metrics = await (await fetch(`${gw.url}/metrics`)).text()
    const narBytes = closure.reduce((a, p) => a + nixDump(p).length, 0)
    expect(Number(/^nixipfs_fetched_bytes_total\{source="upstream"\} (\d+)$/m.exec(metrics)?.[1])).toBe(narBytes)
    expect(Number(/^nixipfs_blocks_served_total\{source="upstream"\} (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThanOrEqual(closure.length)

    await copy()
    const second = await stats()
    expect(second.upstream.imported).toBe(2)
    expect(second.upstream.narInfoHits).toBe(first.upstream.narInfoHits)
    expect(second.blocks.local).toBeGreaterThan(first.blocks.local) // the NARs came from the own cache's blocks

    // Upstream down: what is local is still served, and at once.
    upstream.server.close()
    upstream.server.closeAllConnections()
    const started = Date.now()
    await copy()
    expect(Date.now() - started).toBeLessThan(5_000)
  })

})
