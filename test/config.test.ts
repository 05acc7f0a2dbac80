import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { homedir } from 'node:os'
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

  // Found by an outside test: "repo": "~/nixipfs" made a directory named ~ in the working directory.
  it('puts ~/ in a file\'s values under the home directory', () => {
    const r = layerArgs('gateway', [], FLAGS, { '*': { repo: '~/caches/r' }, gateway: { follow: ['~/a', 'b'] } }, {})
    expect(r.origins.repo).toEqual({ origin: 'file', value: join(homedir(), 'caches/r') })
    expect(r.origins.follow).toEqual({ origin: 'file', value: [join(homedir(), 'a'), 'b'] })
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
    await expect(loadConfig({ path: join(dir, 'bad.json'), given: true })).rejects.toThrow(/bad\.json is not valid JSON/)
    await expect(loadConfig({ path: join(dir, 'flat.json'), given: true })).rejects.toBeInstanceOf(UsageError)
    expect(await loadConfig({ path: join(dir, 'missing.json'), given: false })).toEqual({})
  })

  // Found by an outside test: a default config file that could not be read was a usage error, with "see --help".
  it('a config file that is there but cannot be read is ERR_FILE_ACCESS naming it, not a usage error', () => {
    const home = tmp()
    mkdirSync(join(home, 'nixipfs', 'config.json'), { recursive: true })
    const r = runCli(['info', '--repo', tmp()], { XDG_CONFIG_HOME: home })
    expect(r.status).toBe(1)
    expect(r.stderr).toMatch(/cannot read the config file .*nixipfs\/config\.json \(EISDIR\): it is a directory; fix it, or name another with --config or \$NIXIPFS_CONFIG \[ERR_FILE_ACCESS\]/)
    expect(r.stderr).not.toMatch(/--help/)
  })

  // Found by an outside test: a misspelt --config or $NIXIPFS_CONFIG was ignored (and with it a --threshold the
  // file set), and `--config FILE` with a space gave FILE to the command as an argument as well.
  it('refuses a config file the user named that does not exist, and takes --config FILE as one flag', () => {
    const dir = tmp()
    const missing = join(dir, 'missing.json')
    for (const [args, env] of [[['ls', '--config', missing], {}], [['ls', `--config=${missing}`], {}], [['ls'], { NIXIPFS_CONFIG: missing }]] as const) {
      const r = runCli([...args], env)
      expect(r.status).toBe(1)
      expect(r.stderr + r.stdout).toMatch(/cannot read the config file .*missing\.json: ENOENT.*\[ERR_USAGE\]/)
    }
    const cfg = join(dir, 'config.json')
    for (const args of [['keygen', '--config', cfg, 'named-key'], ['--config', cfg, 'keygen', 'named-key-2']]) {
      writeFileSync(cfg, JSON.stringify({ '*': { repo: tmp() } }))
      const r = runCli(args)
      expect(r.status, r.stderr).toBe(0)
      expect(r.stdout + r.stderr).toMatch(new RegExp(`public key: ${args.at(-1)!}:`))
      expect(r.stdout + r.stderr).not.toContain(`${cfg}:`)
    }
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

  it('refuses unknown keys in the config file and unknown NIXIPFS_ variables, naming the nearest', () => {
    const dir = tmp()
    const cases: Array<[object, Record<string, string>, RegExp]> = [
      [{ gateway: { treshold: 2 } }, {}, /sets "treshold" for gateway, which is no flag of nixipfs gateway; did you mean "threshold"\?/],
      [{ gatewy: { listen: '127.0.0.1:1' } }, {}, /has a section "gatewy", which is no command; did you mean "gateway"\?/],
      [{ '*': { lissten: '127.0.0.1:1' } }, {}, /sets "lissten" for every command \("\*"\), which is no flag of any command; did you mean "listen"\?/],
      [{}, { NIXIPFS_TRESHOLD: '2' }, /unknown environment variable NIXIPFS_TRESHOLD.*did you mean NIXIPFS_THRESHOLD\?/]
    ]
    for (const [config, env, message] of cases) {
      const cfg = join(dir, 'config.json')
      writeFileSync(cfg, JSON.stringify(config))
      // `config gateway` checks what `gateway` would (and, unlike a gateway that ignored the typo, ends).
      const r = runCli(['config', 'gateway', '--config', cfg], env)
      expect(r.status, JSON.stringify(config)).toBe(1)
      expect(r.stderr + r.stdout).toMatch(message)
      expect(r.stderr + r.stdout).toMatch(/\[ERR_USAGE\]/)
    }
    // Every command checks them, not only the one the section is for.
    writeFileSync(join(dir, 'typo.json'), JSON.stringify({ '*': { lissten: '127.0.0.1:1' } }))
    expect(runCli(['info', '--repo', tmp(), '--config', join(dir, 'typo.json')]).stderr).toMatch(/"lissten".*\[ERR_USAGE\]/)
    // A key for every command ("*") that only some commands take, and a variable of another command's flag, are fine.
    const repo = tmp()
    mkdirSync(join(repo, 'packs'))
    writeFileSync(join(dir, 'ok.json'), JSON.stringify({ '*': { listen: '127.0.0.1:1', repo } }))
    expect(runCli(['info', '--config', join(dir, 'ok.json')], { NIXIPFS_THRESHOLD: '1' }).status).toBe(0)
  })

  // Found by an outside test: "repo": 5 became the repo "5" in the working directory; "offline": "yes" passed "yes" on.
  it('refuses config file values of the wrong type: a number for a path, a string for a switch, an object anywhere', () => {
    const dir = tmp()
    const cfg = join(dir, 'config.json')
    const cases: Array<[object, RegExp]> = [
      [{ '*': { repo: 5 } }, /sets "repo" for every command to 5: it takes one value, a string \(DIR\)/],
      // Found by the outside test of that: a list for a flag that takes one value, whose last element won.
      [{ '*': { repo: ['/tmp/a', '/tmp/b'] } }, /sets "repo" for every command to \["\/tmp\/a","\/tmp\/b"\]: it takes one value, a string \(DIR\)/],
      [{ gateway: { 'lifetime-hours': [48, 12] } }, /sets "lifetime-hours" for gateway to \[48,12\]: it takes one value, a string or a number/],
      [{ gateway: { offline: 'yes' } }, /sets "offline" for gateway to "yes": a switch takes true or false/],
      [{ gateway: { listen: { host: 'x' } } }, /sets "listen" for gateway to \{"host":"x"\}: it takes one value, a string or a number/],
      [{ gateway: { follow: ['k-1:x', true] } }, /sets "follow" for gateway to \["k-1:x",true\]: it takes a string \(KEY\|NAME\), or a list of them/]
    ]
    for (const [config, message] of cases) {
      writeFileSync(cfg, JSON.stringify(config))
      const r = runCli(['config', 'gateway', '--config', cfg])
      expect(r.status, JSON.stringify(config)).toBe(1)
      expect(r.stderr).toMatch(message)
      expect(r.stderr).toMatch(/\[ERR_USAGE\]/)
    }
    expect(existsSync('5')).toBe(false)
    // Numbers where a flag takes one, and lists, are fine.
    writeFileSync(cfg, JSON.stringify({ gateway: { 'follow-interval': 5, offline: true, follow: ['a-1:x', 'b-1:y'] } }))
    expect(runCli(['config', 'gateway', '--config', cfg]).status).toBe(0)
  })

  it('nixipfs config COMMAND shows what COMMAND would use with the flags given, defaults resolved', () => {
    const repo = tmp()
    const empty = join(tmp(), 'empty.json')
    writeFileSync(empty, '{}')
    const shown = JSON.parse(runCli(['config', 'gateway', '--listen', '127.0.0.1:5', '--follow', 'a-1:x', '--follow', 'b-1:y', '--config', empty], { NIXIPFS_REPO: repo }).stdout)
    expect(shown.commands.gateway.listen).toEqual({ value: '127.0.0.1:5', from: 'command line' })
    expect(shown.commands.gateway.follow).toEqual({ value: ['a-1:x', 'b-1:y'], from: 'command line' })
    expect(shown.commands.gateway.repo).toEqual({ value: repo, from: 'NIXIPFS_REPO' })
    expect(shown.commands.gateway['listen-p2p'].value).toMatch(/^\/ip[46]\//)
    expect(shown.commands.gateway.offline).toEqual({ value: false, from: 'default' })
    const xdg = tmp()
    const resolved = JSON.parse(runCli(['config', 'publish', '--config', empty], { XDG_DATA_HOME: xdg, NIXIPFS_REPO: '' }).stdout)
    expect(resolved.commands.publish.repo).toEqual({ value: join(xdg, 'nixipfs'), from: 'default' })
  })
})
