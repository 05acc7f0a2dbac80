import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { nix, nixAvailable, nixBuild, shellDerivation } from '../helpers/nix.js'
import { runCli, startGatewayProcess, tmp, type GatewayProcess } from '../helpers/cli.js'

describe.runIf(nixAvailable)('nixipfs use, and the gateway\'s hint', () => {
  const repo = tmp()
  let pub: string
  let path: string
  let gw: GatewayProcess
  beforeAll(async () => {
    ;[path] = nixBuild(shellDerivation(`use-${Date.now()}-${process.pid}`, 'echo built > $out')) as [string]
    expect(runCli(['publish', '--repo', repo, path]).status).toBe(0)
    pub = readFileSync(join(repo, 'keys', 'cache.public'), 'utf8').trim()
    gw = await startGatewayProcess(['--repo', repo])
  })
  afterAll(async () => { await gw?.stop() })

  const listen = (): string => gw.url.replace('http://', '')

  it('prints the substituter and key lines, and the gateway prints the same at start', async () => {
    const followed = `b-1:${Buffer.alloc(32, 1).toString('base64')}`
    const r = runCli(['use', '--repo', repo, '--listen', listen(), '--follow', followed, '--trust', followed])
    expect(r.status, r.stderr).toBe(0)
    expect(r.stdout).toBe(`extra-substituters = ${gw.url}\nextra-trusted-public-keys = ${pub} ${followed}\n`)
    expect(await gw.waitForLog(/extra-trusted-public-keys/)).toContain(`  extra-substituters = ${gw.url}\n  extra-trusted-public-keys = ${pub}\n`)
  })

  it('a built path is copied from the gateway only with those lines (NIX_CONFIG="$(nixipfs use)")', () => {
    const copy = (nixConfig: string): { status: number, stderr: string } => {
      const r = nix(['copy', '--from', gw.url, '--to', tmp(), path], { allowFail: true, env: { NIX_CONFIG: nixConfig } })
      return { status: r.status, stderr: r.stderr }
    }
    const without = copy('')
    expect(without.status).not.toBe(0)
    expect(without.stderr).toMatch(/lacks a valid signature/)
    const conf = runCli(['use', '--repo', repo, '--listen', listen()]).stdout
    const withUse = copy(conf)
    expect(withUse.status, withUse.stderr).toBe(0)
  })

  it('--write appends the lines nix.conf lacks, once, and Nix reads them', () => {
    const dir = tmp()
    const file = join(dir, 'nix.conf')
    writeFileSync(file, 'sandbox = false')
    const env = { NIX_CONF_DIR: dir }
    for (let i = 0; i < 2; i++) expect(runCli(['use', '--write', '--repo', repo, '--listen', listen()], env).status).toBe(0)
    expect(readFileSync(file, 'utf8')).toBe(`sandbox = false\n# added by nixipfs use\nextra-substituters = ${gw.url}\nextra-trusted-public-keys = ${pub}\n`)
    const config = JSON.parse(nix(['show-config', '--json'], { env: { NIX_CONF_DIR: dir } }).stdout) as Record<string, { value: unknown }>
    expect(config.substituters!.value).toContain(gw.url)
    expect(config['trusted-public-keys']!.value).toContain(pub)
    const other = join(tmp(), 'nix.conf.d', 'nixipfs.conf')
    const r = runCli(['use', '--write', '--nix-conf', other, '--repo', repo, '--listen', listen()])
    expect(r.stderr + r.stdout).toContain(`!include ${other}`)
    expect(readFileSync(other, 'utf8')).toContain(`extra-trusted-public-keys = ${pub}`)
  })

  it('--write to a file it cannot write says so, with no stack trace (found by an outside test)', () => {
    const file = join(tmp(), 'a-file')
    writeFileSync(file, '')
    for (const [where, why] of [[join(file, 'nix.conf'), 'ENOTDIR'], [tmp(), 'EISDIR']] as const) {
      const r = runCli(['use', '--write', '--nix-conf', where, '--repo', repo, '--listen', listen()])
      expect(r.status).toBe(1)
      expect(r.stderr + r.stdout).toMatch(new RegExp(`cannot add the lines to ${where} \\(${why}.*\\); give a file you can write \\(--nix-conf FILE, by default .*nix\\.conf\\).*\\[ERR_NIX_CONF\\]`))
      expect(r.stderr + r.stdout).not.toMatch(/ at /)
    }
    const empty = runCli(['use', '--write', '--nix-conf', '', '--repo', repo, '--listen', listen()])
    expect(empty.stderr + empty.stdout).toMatch(/--nix-conf is empty: give the file to add the lines to.*\[ERR_USAGE\]/)
  })
})
