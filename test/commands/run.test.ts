import { connect } from 'node:net'
import { describe, expect, it } from 'vitest'
import { runCli, startGatewayProcess, tmp } from '../helpers/cli.js'
import { nixAvailable, nixBuild, shellDerivation } from '../helpers/nix.js'

describe.runIf(nixAvailable)('stopping a gateway', () => {
  // Found by an outside test: a second Ctrl-C during the drain (up to 10 s for slow readers) did nothing.
  it('finishes responses in flight on the first signal, and stops at once on a second', async () => {
    const [path] = nixBuild(shellDerivation(`stop-${Date.now()}-${process.pid}`, `head -c ${16 * 1024 * 1024} /dev/urandom > $out`)) as [string]
    const repo = tmp()
    expect(runCli(['publish', '--repo', repo, path]).status).toBe(0)
    const gw = await startGatewayProcess(['--repo', repo])
    const url = /^URL: (.*)$/m.exec(await (await fetch(`${gw.url}/${path.slice(11, 43)}.narinfo`)).text())![1]!
    // A client that asks for the NAR and never reads it: the drain waits for it.
    const { port } = new URL(gw.url)
    const stalled = connect({ port: Number(port), host: '127.0.0.1' })
    stalled.on('error', () => {})
    stalled.pause()
    await new Promise<void>(resolve => stalled.once('connect', () => { stalled.write(`GET /${url} HTTP/1.1\r\nHost: x\r\n\r\n`); resolve() }))
    await new Promise(resolve => setTimeout(resolve, 500))
    const exited = new Promise<number | null>(resolve => gw.child.once('exit', code => resolve(code)))
    gw.child.kill('SIGINT')
    await gw.waitForLog(/shutting down/)
    const stillRunning = await Promise.race([exited.then(() => false), new Promise(resolve => setTimeout(() => resolve(true), 1000))])
    expect(stillRunning).toBe(true)
    const asked = Date.now()
    gw.child.kill('SIGINT')
    expect(await exited).toBe(130)
    expect(Date.now() - asked).toBeLessThan(3000)
    expect(gw.output()).toMatch(/SIGINT again: stopping without finishing the requests in flight/)
    stalled.destroy()
  }, 60_000)
})
