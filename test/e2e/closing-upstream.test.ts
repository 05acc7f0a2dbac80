import { execFileSync } from 'node:child_process'
import { readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { nix, nixAsync, nixAvailable, nixBuild, nixDump, shellDerivation } from '../helpers/nix.js'
import { runCliAsync, startGatewayProcess, tmp } from '../helpers/cli.js'
import { pythonHttpServer, serveFiles, type Fault } from '../helpers/http.js'

// An upstream binary cache served the obvious way, `python3 -m http.server`
// (HTTP/1.0: each connection closed after one answer), or by a server that
// answers `Connection: close`. Two paths of about 200 KB each (random, so
// xz leaves them that size): a body the reader cannot take at once, whose
// connection ends right after it. That once threw inside undici (#5360) and
// ended the process.
const salt = `${Date.now()}-${process.pid}`
const blob = (name: string, refs = ''): string => shellDerivation(name, `mkdir $out; ${refs}head -c 200000 /dev/urandom > $out/blob`)

describe.runIf(nixAvailable)('an upstream that closes its connections', () => {
  let top: string
  let closure: string[]
  let pub: string
  let cache: string
  const servers: Array<() => Promise<void>> = []

  beforeAll(async () => {
    ;[top] = nixBuild(`let lib = ${blob(`closing-lib-${salt}`)}; in ${blob(`closing-top-${salt}`, 'echo ${lib} > $out/ref; ')}`) as [string]
    closure = execFileSync('nix-store', ['--query', '--requisites', top], { encoding: 'utf8' }).trim().split('\n')
    const dir = tmp()
    execFileSync('nix-store', ['--generate-binary-cache-key', 'closing-1', join(dir, 'k.secret'), join(dir, 'k.public')])
    pub = readFileSync(join(dir, 'k.public'), 'utf8').trim()
    cache = tmp()
    nix(['copy', '--to', `file://${cache}?compression=xz&secret-key=${join(dir, 'k.secret')}`, top])
  })
  afterAll(async () => { for (const close of servers) await close() })

  const kinds: Record<string, () => Promise<string>> = {
    'python3 -m http.server': async () => {
      const s = await pythonHttpServer(cache)
      servers.push(s.close)
      return s.url
    },
    'Connection: close': async () => {
      const s = await serveFiles(cache, new Map(), { close: true })
      servers.push(async () => { s.server.close() })
      return s.url
    }
  }

  for (const [kind, start] of Object.entries(kinds)) {
    it(`import --from ${kind} imports the closure`, async () => {
      const url = await start()
      const r = await runCliAsync(['import', '--repo', tmp(), '--from', url, '--trust', pub, '-r', top])
      expect(r.status, r.stderr).toBe(0)
      expect(r.stdout + r.stderr).toContain('imported 2 path(s), 0 already there')
    })

    it(`gateway --upstream ${kind} serves the closure to real Nix and keeps running`, async () => {
      const url = await start()
      const gw = await startGatewayProcess(['--repo', tmp(), '--upstream', url, '--upstream-key', pub])
      try {
        const store = tmp()
        const r = await nixAsync(['copy', '--from', gw.url, '--to', store, top, '--option', 'trusted-public-keys', pub, '--option', 'narinfo-cache-negative-ttl', '0'])
        expect(r.status, r.stderr + gw.output()).toBe(0)
        for (const p of closure) expect(Buffer.compare(nixDump(p), nixDump(join(store, p)))).toBe(0)
        expect(gw.child.exitCode, gw.output()).toBe(null)
        expect((await fetch(`${gw.url}/nix-cache-info`)).status).toBe(200)
      } finally {
        await gw.stop()
      }
    })
  }

  it('a gateway whose upstream breaks off or stalls mid-NAR fails that download and keeps serving', async () => {
    const nars = readdirSync(join(cache, 'nar'))
    const faults = new Map<string, Fault>([[`/nar/${nars[0]!}`, 'truncate'], [`/nar/${nars[1]!}`, 'hang']])
    const s = await serveFiles(cache, faults, { close: true })
    servers.push(async () => { s.server.closeAllConnections(); s.server.close() })
    const gw = await startGatewayProcess(['--repo', tmp(), '--upstream', s.url, '--upstream-key', pub, '--peer-timeout', '1'])
    try {
      for (const p of closure) {
        const hash = p.slice('/nix/store/'.length, '/nix/store/'.length + 32)
        expect((await fetch(`${gw.url}/${hash}.narinfo`)).status).toBe(200)
        const nar = await fetch(`${gw.url}/nar/upstream/${hash}.nar`).then(async r => Buffer.from(await r.arrayBuffer())).catch((err: Error) => err)
        expect(nar).toBeInstanceOf(Error) // cut off, never a short or wrong NAR
      }
      expect(gw.child.exitCode, gw.output()).toBe(null)
      expect((await fetch(`${gw.url}/nix-cache-info`)).status).toBe(200)
    } finally {
      await gw.stop()
    }
  })
})
