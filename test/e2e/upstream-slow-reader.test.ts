import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import type { Server } from 'node:http'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { nix, nixAvailable, nixBuild, nixDump, shellDerivation } from '../helpers/nix.js'
import { runAsync, startGatewayProcess, tmp, type GatewayProcess } from '../helpers/cli.js'
import { serveFiles } from '../helpers/http.js'

// A big NAR streamed through --upstream to a client slower than the upstream
// (curl --limit-rate): the gateway waits for the client to drain on most of
// its chunks, and must not add listeners to the response for every wait
// (before: MaxListenersExceededWarning, a listener leak per wait).
const salt = `${Date.now()}-${process.pid}`
const NAR_MIB = 16

describe.runIf(nixAvailable)('gateway --upstream to a slow reader', () => {
  let path: string
  let pub: string
  let upstream: { url: string, server: Server } | undefined
  let gw: GatewayProcess | undefined

  beforeAll(async () => {
    ;[path] = nixBuild(shellDerivation(`up-slow-${salt}`, `mkdir $out; head -c ${NAR_MIB * 1024 * 1024} /dev/urandom > $out/blob`)) as [string]
    const dir = tmp()
    execFileSync('nix-store', ['--generate-binary-cache-key', 'up-slow-1', join(dir, 'k.secret'), join(dir, 'k.public')])
    pub = readFileSync(join(dir, 'k.public'), 'utf8').trim()
    const cache = tmp()
    nix(['copy', '--to', `file://${cache}?compression=none&secret-key=${join(dir, 'k.secret')}`, path])
    upstream = await serveFiles(cache, new Map())
  })
  afterAll(async () => { await gw?.stop(); upstream?.server.closeAllConnections(); upstream?.server.close() })

  it(`streams a ${NAR_MIB} MiB NAR to a client reading at 8 MB/s without leaking a listener per drain wait`, async () => {
    gw = await startGatewayProcess(['--repo', tmp(), '--upstream', upstream!.url, '--upstream-key', pub])
    const hash = path.slice('/nix/store/'.length, '/nix/store/'.length + 32)
    const narinfo = await (await fetch(`${gw.url}/${hash}.narinfo`)).text()
    const url = /^URL: (.*)$/m.exec(narinfo)![1]!
    expect(url).toBe(`nar/upstream/${hash}.nar`)
    const out = join(tmp(), 'nar')
    const r = await runAsync('curl', ['-sS', '--fail', '--limit-rate', '8M', '-o', out, `${gw.url}/${url}`])
    expect(r.status, r.stderr).toBe(0)
    expect(Buffer.compare(readFileSync(out), nixDump(path))).toBe(0)
    expect(gw.output()).not.toMatch(/MaxListenersExceededWarning/)
    expect(gw.child.exitCode, gw.output()).toBe(null)
  })
})
