import { spawn, spawnSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { nix, nixAvailable, nixBuild, shellDerivation } from '../helpers/nix.js'
import { BIN, runCli, startGatewayProcess, tmp, type GatewayProcess } from '../helpers/cli.js'

describe('nixipfs watch arguments', () => {
  it('refuses an interval that is no number of seconds a timer can wait', () => {
    for (const bad of ['0', '-1', 'abc', 'Infinity', '1e-9', '1e9']) {
      const r = runCli(['watch', '--repo', tmp(), '--interval', bad])
      expect(r.status, `--interval ${bad}: ${r.stdout}${r.stderr}`).toBe(1)
      expect(r.stdout + r.stderr).toMatch(/--interval must be a number of seconds from 0\.1 to 3600/)
    }
  })

  it('refuses a repo that cannot be made before it watches anything', () => {
    const file = join(tmp(), 'a-file')
    writeFileSync(file, 'not a directory\n')
    const r = spawnSync(process.execPath, [BIN, 'watch', '--repo', join(file, 'repo')], { encoding: 'utf8', timeout: 15_000 })
    expect(r.signal, `still watching after 15 s: ${r.stdout}${r.stderr}`).toBeNull()
    expect(r.status).toBe(1)
    expect(r.stdout + r.stderr).toMatch(/a-file is a file, not a directory/)
    expect(r.stdout + r.stderr).not.toMatch(/watching/)
  })
})

describe.runIf(nixAvailable)('nixipfs watch', () => {
  const stops: Array<() => Promise<void>> = []
  afterAll(async () => { for (const stop of stops) await stop() })

  it('publishes what nix-build adds to the store, and a gateway serves it to Nix', async () => {
    const repo = tmp()
    const child = spawn(process.execPath, [BIN, 'watch', '--repo', repo])
    let out = ''
    child.stdout.on('data', (b: Buffer) => { out += b.toString() })
    child.stderr.on('data', (b: Buffer) => { out += b.toString() })
    const exited = new Promise(resolve => child.once('exit', resolve))
    stops.push(async () => { if (child.exitCode === null) { child.kill('SIGTERM'); await exited } })
    const waitFor = async (re: RegExp, ms: number): Promise<void> => {
      for (let i = 0; i < ms / 100 && !re.test(out); i++) await new Promise(resolve => setTimeout(resolve, 100))
      expect(out).toMatch(re)
    }
    await waitFor(/watching \/nix\/store/, 10_000)
    const salt = `${Date.now()}-${process.pid}`
    const [lib, top] = nixBuild(`let lib = ${shellDerivation(`watch-lib-${salt}`, 'echo lib > $out')}; in [ lib (${shellDerivation(`watch-top-${salt}`, 'echo ${lib} > $out')}) ]`) as [string, string]
    // Published within seconds of becoming valid (both paths, in one batch or two).
    await waitFor(new RegExp(`${top} -> bafk`), 20_000)
    await waitFor(new RegExp(`${lib} -> bafk`), 20_000)
    const ls = runCli(['ls', '--repo', repo]).stdout
    expect(ls).toContain(top)
    expect(ls).not.toMatch(/\.drv\t/) // derivations are not published
    const gw: GatewayProcess = await startGatewayProcess(['--repo', repo])
    stops.push(gw.stop)
    const pub = readFileSync(join(repo, 'keys', 'cache.public'), 'utf8').trim()
    const r = nix(['copy', '--from', gw.url, '--to', tmp(), top, '--option', 'trusted-public-keys', pub], { allowFail: true })
    expect(r.status, r.stderr).toBe(0)
  })
})
