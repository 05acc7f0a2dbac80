import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { layerArgs, loadConfig } from '../src/config.js'
import { UsageError } from '../src/errors.js'
import { runCli, tmp } from './helpers/cli.js'

const FLAGS = { listen: { type: 'string' }, follow: { type: 'string' }, offline: { type: 'boolean' }, repo: { type: 'string' }, path: { type: 'positional' } }

describe('configuration: flags > environment > file > defaults', () => {
  const file = { gateway: { listen: '10.0.0.1:80', follow: ['a:1', 'b:2'], offline: true }, '*': { repo: '/srv/r' } }

  it('fills in from the file what neither the command line nor the environment sets', () => {
    const r = layerArgs('gateway', [], FLAGS, file, {})
    expect(r.rawArgs).toEqual(['--listen', '10.0.0.1:80', '--follow', 'a:1', '--follow', 'b:2', '--offline', '--repo', '/srv/r'])
    expect(r.origins.repo).toEqual({ origin: 'file', value: '/srv/r' })
  })

  it('lets the environment override the file, and the command line both', () => {
    const r = layerArgs('gateway', ['--listen', '127.0.0.1:1'], FLAGS, file, { NIXIPFS_FOLLOW: 'c:3 d:4', NIXIPFS_LISTEN: '1.1.1.1:1', NIXIPFS_OFFLINE: 'false' })
    expect(r.origins.listen).toEqual({ origin: 'flag', value: '127.0.0.1:1' })
    expect(r.origins.follow).toEqual({ origin: 'environment', value: ['c:3', 'd:4'] })
    expect(r.origins.offline).toEqual({ origin: 'environment', value: false })
    expect(r.rawArgs).toEqual(['--listen', '127.0.0.1:1', '--follow', 'c:3', '--follow', 'd:4', '--repo', '/srv/r'])
  })

  it('refuses a config file that is not JSON or not shaped as commands of flags, naming it', async () => {
    const dir = tmp()
    writeFileSync(join(dir, 'bad.json'), '{ "gateway": ')
    writeFileSync(join(dir, 'flat.json'), '{ "listen": "x" }')
    await expect(loadConfig(join(dir, 'bad.json'))).rejects.toThrow(/bad\.json is not valid JSON/)
    await expect(loadConfig(join(dir, 'flat.json'))).rejects.toBeInstanceOf(UsageError)
    expect(await loadConfig(join(dir, 'missing.json'))).toEqual({})
  })

  it('nixipfs config prints the effective values and their origins; commands use them', () => {
    const dir = tmp()
    const repo = tmp()
    const cfg = join(dir, 'config.json')
    writeFileSync(cfg, JSON.stringify({ gateway: { listen: '127.0.0.1:9', 'follow-interval': 5 }, '*': { repo } }))
    const shown = JSON.parse(runCli(['config', 'gateway', '--config', cfg], { NIXIPFS_LISTEN: '127.0.0.1:7' }).stdout)
    expect(shown.file).toBe(cfg)
    expect(shown.commands.gateway.listen).toEqual({ value: '127.0.0.1:7', from: 'NIXIPFS_LISTEN' })
    expect(shown.commands.gateway['follow-interval']).toEqual({ value: '5', from: cfg })
    expect(shown.commands.gateway.repo).toEqual({ value: repo, from: cfg })
    expect(shown.commands.gateway['expired-grace-hours']).toEqual({ value: '24', from: 'default' })
    // The repo from the file is the one a command works on.
    const info = runCli(['info', '--config', cfg])
    expect(info.stderr + info.stdout).toContain(repo)
  })
})
