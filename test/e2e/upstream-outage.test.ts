import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { nix, nixAsync, nixAvailable, nixBuild, nixDump, shellDerivation } from '../helpers/nix.js'
import { startGatewayProcess, tmp, type GatewayProcess } from '../helpers/cli.js'
import { pythonHttpServer } from '../helpers/http.js'

// An --upstream that fails (connection refused, HTTP 500) is an outage, not
// a miss: the gateway answers 503 with the reason (Nix does not remember a
// 503, where it remembers a 404 for an hour), and asks again next time, so
// the path is served as soon as the upstream is back. Only upstreams that
// all answer 404 (python3 -m http.server over an empty directory, and the
// healed upstream) make a 404.
const salt = `${Date.now()}-${process.pid}`

/** The upstream under test: refuses connections until listening, answers 500 while `failing`, else serves `root`. */
function flakyUpstream (root: string): { failing: boolean, listen: (port: number) => Promise<void>, server: Server } {
  const state = {
    failing: true,
    server: createServer((req, res) => {
      if (state.failing) { res.writeHead(500); res.end('upstream broke\n'); return }
      let body: Buffer
      try { body = readFileSync(join(root, (req.url ?? '/').split('?')[0]!.replace(/\.\./g, ''))) } catch { res.writeHead(404); res.end(); return }
      res.writeHead(200, { 'content-length': body.length })
      res.end(body)
    }),
    listen: async (port: number) => { await new Promise<void>(resolve => state.server.listen(port, '127.0.0.1', resolve)) }
  }
  return state
}

/** A port nothing listens on now. */
async function freePort (): Promise<number> {
  const s = createServer()
  await new Promise<void>(resolve => s.listen(0, '127.0.0.1', resolve))
  const { port } = s.address() as AddressInfo
  await new Promise(resolve => s.close(resolve))
  return port
}

describe.runIf(nixAvailable)('gateway --upstream during an upstream outage', () => {
  let path: string
  let hash: string
  let pub: string
  let gw: GatewayProcess | undefined
  let empty: { url: string, close: () => Promise<void> } | undefined
  let upstream: ReturnType<typeof flakyUpstream> | undefined

  beforeAll(async () => {
    ;[path] = nixBuild(shellDerivation(`outage-${salt}`, 'mkdir $out; echo outage > $out/f')) as [string]
    hash = path.slice('/nix/store/'.length, '/nix/store/'.length + 32)
    const dir = tmp()
    execFileSync('nix-store', ['--generate-binary-cache-key', 'outage-1', join(dir, 'k.secret'), join(dir, 'k.public')])
    pub = readFileSync(join(dir, 'k.public'), 'utf8').trim()
    const cache = tmp()
    nix(['copy', '--to', `file://${cache}?compression=xz&secret-key=${join(dir, 'k.secret')}`, path])
    empty = await pythonHttpServer(tmp())
    upstream = flakyUpstream(cache)
  })
  afterAll(async () => {
    await gw?.stop()
    await empty?.close()
    upstream?.server.close()
    upstream?.server.closeAllConnections()
  })

  it('answers 503 with the reason while an upstream is refused or fails, 404 only when all answer 404, and serves the path once it is back', async () => {
    const port = await freePort()
    gw = await startGatewayProcess(['--repo', tmp(), '--upstream', empty!.url, '--upstream', `http://127.0.0.1:${port}`, '--upstream-key', pub])
    const narinfo = async (h: string): Promise<{ status: number, text: string }> => {
      const res = await fetch(`${gw!.url}/${h}.narinfo`)
      return { status: res.status, text: await res.text() }
    }

    // Connection refused.
    const refused = await narinfo(hash)
    expect(refused.status, refused.text).toBe(503)
    expect(refused.text).toMatch(/ECONNREFUSED/)

    // HTTP 500, asked again at once: the refusal was not remembered as a miss.
    await upstream!.listen(port)
    const broken = await narinfo(hash)
    expect(broken.status, broken.text).toBe(503)
    expect(broken.text).toMatch(/HTTP 500/)

    // Back: served at once (not a remembered miss), and real Nix substitutes it.
    upstream!.failing = false
    expect((await narinfo(hash)).status).toBe(200)
    const store = tmp()
    const r = await nixAsync(['copy', '--from', gw.url, '--to', store, path, '--option', 'trusted-public-keys', pub])
    expect(r.status, r.stderr).toBe(0)
    expect(Buffer.compare(nixDump(path), nixDump(join(store, path)))).toBe(0)

    // A path no upstream has: every one answered 404, so it is a miss.
    const missing = await narinfo('0'.repeat(32))
    expect(missing.status, missing.text).toBe(404)
  })
})
