import { execFileSync, spawn, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { nixAvailable, nixBuild, shellDerivation } from '../helpers/nix.js'
import { BIN, runCli, runCliAsync, startGatewayProcess, startNodeProcess, tmp } from '../helpers/cli.js'


/** A repo with nothing in it yet (its packs folder, as any command that writes one makes first). */
function emptyRepo (): string {
  const repo = tmp()
  mkdirSync(join(repo, 'packs'))
  return repo
}

describe('nixipfs CLI', () => {
  it('explains every command with --help, including an example', () => {
    for (const cmd of ['keygen', 'publish', 'gateway', 'info', 'ls', 'republish', 'gc', 'mirror', 'pin-remote']) {
      const r = runCli([cmd, '--help'])
      expect(r.status).toBe(0)
      expect(r.stdout + r.stderr).toMatch(/Example: nixipfs /)
      expect(r.stdout + r.stderr).toMatch(/--repo/)
    }
  })

  it('keygen writes a 0600 secret key, prints the public key and IPNS name, and never overwrites', () => {
    const repo = tmp()
    const r = runCli(['keygen', 'builder.example.org-1', '--repo', repo])
    expect(r.status).toBe(0)
    const secret = join(repo, 'keys', 'cache.secret')
    expect(statSync(secret).mode & 0o777).toBe(0o600)
    const pub = readFileSync(join(repo, 'keys', 'cache.public'), 'utf8').trim()
    expect(pub).toMatch(/^builder\.example\.org-1:[A-Za-z0-9+/]{43}=$/)
    expect(r.stdout).toContain(pub)
    expect(r.stdout).toMatch(/IPNS name: +k51[a-z0-9]{59}/)
    const again = runCli(['keygen', 'other-1', '--repo', repo])
    expect(again.status).toBe(1)
    expect(again.stderr + again.stdout).toMatch(/already exists; refusing to overwrite a key.*\[ERR_REPO\]/)
    expect(readFileSync(join(repo, 'keys', 'cache.public'), 'utf8').trim()).toBe(pub)
  })

  it('refuses a secret key file that others can read, saying how to fix it', () => {
    const dir = tmp()
    const r = runCli(['keygen', 'k-1', '--secret-key-file', join(dir, 'k.sec')])
    expect(r.status).toBe(0)
    expect(statSync(join(dir, 'k.sec.pub')).isFile()).toBe(true)
    chmodSync(join(dir, 'k.sec'), 0o644)
    const p = runCli(['publish', '--repo', tmp(), '--secret-key-file', join(dir, 'k.sec'), '/nix/store/00000000000000000000000000000000-x'])
    expect(p.status).toBe(1)
    expect(p.stderr + p.stdout).toMatch(/chmod 600 .*k\.sec.*\[ERR_INSECURE_KEY_FILE\]/)
  })

  // Found by an outside test: both gave Node's stack traces.
  it.runIf(process.getuid?.() === 0 && existsSync('/dev/full'))('a repo this user may not read is ERR_FILE_ACCESS, and output that cannot be written ERR_OUTPUT, in a line each', () => {
    const repo = tmp()
    expect(runCli(['keygen', '--repo', repo, 'access-test']).status).toBe(0)
    // Another user's repo that others may look into: the secret key stays the owner's.
    chmodSync(repo, 0o755)
    chmodSync(join(repo, 'keys'), 0o755)
    const home = tmp()
    chmodSync(home, 0o777)
    const asNobody = spawnSync('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, BIN, 'republish', '--repo', repo], { encoding: 'utf8', env: { ...process.env, HOME: home, XDG_CONFIG_HOME: home } })
    expect(asNobody.status).toBe(1)
    expect(asNobody.stderr + asNobody.stdout).toMatch(new RegExp(`cannot open ${repo}/keys/cache\\.secret: permission denied \\(EACCES\\); run nixipfs as the user that owns it.*\\[ERR_FILE_ACCESS\\]`))
    expect(asNobody.stderr + asNobody.stdout).not.toMatch(/\n\s+at /)
    const full = openSync('/dev/full', 'w')
    try {
      const r = spawnSync(process.execPath, [BIN, 'use', '--repo', repo], { encoding: 'utf8', stdio: ['ignore', full, 'pipe'] })
      expect(r.status).toBe(1)
      expect(r.stderr).toBe('nixipfs: writing the output failed (ENOSPC) [ERR_OUTPUT]\n')
    } finally {
      closeSync(full)
    }
  })

  it('says what to do when there is nothing to publish or the arguments are wrong', () => {
    const r = runCli(['publish', '--repo', tmp()], { OUT_PATHS: '' })
    expect(r.status).toBe(1)
    expect(r.stderr + r.stdout).toMatch(/no store paths given, and \$OUT_PATHS and \$DRV_PATH are empty \[ERR_USAGE\]/)
    const g = runCli(['gateway', '--repo', tmp(), '--listen', 'nonsense'])
    expect(g.status).toBe(1)
    expect(g.stderr + g.stdout).toMatch(/--listen must be HOST:PORT/)
    const e = runCli(['gateway', '--repo', tmp()])
    expect(e.status).toBe(1)
    expect(e.stderr + e.stdout).toMatch(/has no cache yet; publish something first/)
    // Found by an outside test: a repo that is no directory was told to publish something first, an empty --repo used the default.
    const file = join(tmp(), 'a-file')
    writeFileSync(file, '')
    for (const repo of [file, join(file, 'repo')]) {
      for (const command of ['gateway', 'ls']) {
        const r = runCli([command, '--repo', repo])
        expect(r.status).toBe(1)
        expect(r.stderr + r.stdout).toMatch(new RegExp(`the repo ${repo} is not a directory; choose another --repo`))
      }
    }
    // Found by an outside test: a lifetime of 1e15 hours failed inside the record's date (a stack trace, after publish stored the NAR).
    for (const hours of ['1e15', 'Infinity', '87601']) {
      for (const command of ['republish', 'publish']) {
        const r = runCli([command, '--repo', tmp(), '--lifetime-hours', hours, ...(command === 'publish' ? ['/nix/store/00000000000000000000000000000000-x'] : [])])
        expect(r.status).toBe(1)
        expect(r.stderr + r.stdout).toMatch(new RegExp(`--lifetime-hours must be a positive number of hours up to 87600 \\(ten years\\), got ${hours} \\[ERR_USAGE\\]`))
      }
    }
    // Found by an outside test: a mistyped --repo was made into an empty repo, in which fsck found "no damage".
    for (const command of ['fsck', 'gc', 'disputes', 'export-car', 'info', 'precompress']) {
      const typo = join(tmp(), 'typo')
      const r = runCli([command, '--repo', typo])
      expect(r.status, command).toBe(1)
      expect(r.stderr + r.stdout).toMatch(/there is no repo at .*typo; check --repo .*\[ERR_REPO\]/)
      expect(existsSync(typo), command).toBe(false)
      // Found by the outside test of that: a directory that is no repo (empty, or a repo's keys folder) was written into.
      const other = tmp()
      const o = runCli([command, '--repo', other])
      expect(o.status, command).toBe(1)
      expect(o.stderr).toMatch(/is a directory but no repo \(it has no packs folder\); check --repo .*\[ERR_REPO\]/)
      expect(readdirSync(other), command).toEqual([])
    }
    const missing = runCli(['ls', '--repo', join(tmp(), 'none')])
    expect(missing.stderr + missing.stdout).toMatch(/there is no repo at .*none; run `nixipfs publish` first/)
    const empty = runCli(['ls', '--repo', ''])
    expect(empty.status).toBe(1)
    expect(empty.stderr + empty.stdout).toMatch(/--repo is empty \(given on the command line or as "repo" in the config file\): give the repo's directory, or leave it out for the default, .*nixipfs \[ERR_USAGE\]/)
  })

  it.runIf(nixAvailable)('publishes $OUT_PATHS as a post-build hook does', () => {
    const [out] = nixBuild(shellDerivation(`hook-${Date.now()}-${process.pid}`, 'echo built > $out')) as [string]
    const repo = tmp()
    const r = runCli(['publish', '--repo', repo], { OUT_PATHS: out })
    expect(r.status).toBe(0)
    expect(r.stdout).toContain(`${out} -> bafk`)
    const info = runCli(['info', '--repo', repo])
    expect(info.stdout).toMatch(/entries: +1\n/)
    const ls = runCli(['ls', '--repo', repo])
    expect(ls.stdout).toMatch(new RegExp(`^${out}\t\\d+\tnar/bafk[a-z0-9]+\\.nar\n$`))
  })

  it.runIf(nixAvailable)('publish --dry-run says when the repo cannot be made (under a file)', () => {
    const file = join(tmp(), 'a-file')
    writeFileSync(file, 'not a directory\n')
    const r = runCli(['publish', '--dry-run', '--repo', join(file, 'repo'), '/nix/store/00000000000000000000000000000000-any'])
    expect(r.status).toBe(1)
    expect(r.stderr + r.stdout).toMatch(/a-file is a file, not a directory; choose another --repo/)
  })

  // Found by an outside test: `--repo /proc/x` hung for good (Node 20's recursive mkdir never returns there).
  it.runIf(nixAvailable && existsSync('/proc/self'))('publish fails at once, saying so, for a repo that cannot be made', () => {
    const r = spawnSync(process.execPath, [BIN, 'publish', '--repo', '/proc/nixipfs-test/repo', '/nix/store/00000000000000000000000000000000-any'], { encoding: 'utf8', timeout: 20_000 })
    expect(r.signal).toBe(null) // not killed at the timeout
    expect(r.status).toBe(1)
    expect(r.stderr + r.stdout).toMatch(/cannot make the directory \/proc\/nixipfs-test\S* \(ENOENT[^)]*\); choose another place for it \(--repo\)/)
    expect(r.stderr + r.stdout).not.toMatch(/\n\s+at /)
  })

  it.runIf(nixAvailable)('fails clearly on a path that is not in the store', () => {
    const repo = tmp()
    const r = runCli(['publish', '--repo', repo, '/nix/store/00000000000000000000000000000000-missing'])
    expect(r.status).toBe(1)
    expect(r.stderr + r.stdout).toMatch(/ERR_NIX_COMMAND/)
  })

  it.runIf(nixAvailable)('republishes before expiry: by command, and by itself while the gateway runs', async () => {
    const [out] = nixBuild(shellDerivation(`republish-${Date.now()}-${process.pid}`, 'echo built > $out')) as [string]
    const repo = tmp()
    // A record valid for 36 s: less than half of the gateway's default lifetime remains at once.
    expect(runCli(['publish', '--repo', repo, '--lifetime-hours', '0.01', out]).status).toBe(0)
    const r = runCli(['republish', '--repo', repo, '--lifetime-hours', '0.01'])
    expect(r.status).toBe(0)
    expect(r.stdout).toMatch(/sequence: 2\n/)
    const gw = await startGatewayProcess(['--repo', repo])
    try {
      expect(await gw.waitForLog(/republished .* as sequence 3, valid until/)).toMatch(/sequence 3/)
    } finally {
      await gw.stop()
    }
    const info = runCli(['info', '--repo', repo])
    expect(info.stdout).toMatch(/sequence: 3\n/)
    const expires = Date.parse(/expires: +(\S+)/.exec(info.stdout)![1]!)
    expect(expires - Date.now()).toBeGreaterThan(47 * 3600_000)
  })
})

describe('first contact: typos, usage errors, help', () => {
  it('refuses an unknown or misspelled flag on every command, naming the nearest known one, in a line or two', () => {
    const cases: Array<[string[], RegExp]> = [
      [['gateway', '--trust', 'a-1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=', '--treshold', '2'], /unknown flag --treshold .*did you mean --threshold\?/],
      [['gateway', '--lissten', '127.0.0.1:0'], /unknown flag --lissten .*did you mean --listen\?/],
      [['mirror', '--folow', 'k51x'], /unknown flag --folow .*did you mean --follow\?/],
      [['publish', '--bogus-flag', '/nix/store/00000000000000000000000000000000-x'], /unknown flag --bogus-flag/],
      [['info', '--lifetimeHours', '1'], /unknown flag --lifetimeHours/],
      [['ls', '-x'], /unknown flag -x/],
      [['config', 'gateway', '--treshold', '2'], /unknown flag --treshold .*did you mean --threshold\?/],
      [['publsh', '/nix/store/x'], /no command "publsh".*did you mean publish\?/]
    ]
    for (const [args, message] of cases) {
      const r = runCli([...args, '--repo', tmp()])
      const out = r.stdout + r.stderr
      expect(r.status, args.join(' ')).toBe(1)
      expect(out).toMatch(message)
      expect(out).toMatch(/\[ERR_USAGE\]/)
      expect(out).toMatch(/--help/)
      expect(out.trim().split('\n').filter(l => l.trim() !== '').length, out).toBeLessThanOrEqual(3)
    }
    // Declared flags, their aliases, --no-FLAG and the global ones pass.
    const empty = join(tmp(), 'empty.json')
    writeFileSync(empty, '{}')
    expect(runCli(['info', '--repo', emptyRepo(), '--log-json', '--config', empty]).status).toBe(0)
  })

  it('pin-remote and a pinning mirror say what they need', () => {
    const dir = tmp()
    writeFileSync(join(dir, 'empty'), '# no token yet\n')
    const cases: Array<[string[], RegExp]> = [
      [['pin-remote', '--token-file', join(dir, 'empty')], /--service takes the http\(s\) URL of a pinning service endpoint/],
      [['pin-remote', '--service', 'http://127.0.0.1:1/psa'], /--token-file FILE is needed/],
      [['pin-remote', '--service', 'http://127.0.0.1:1/psa', '--token-file', join(dir, 'empty')], /--token-file .*empty holds no token/],
      [['pin-remote', '--service', 'http://127.0.0.1:1/psa', '--token-file', join(dir, 'none')], /--token-file .*none cannot be read \(ENOENT\)/],
      [['mirror', '--offline'], /a mirror needs at least one --follow KEY, or --pin-token-file FILE/],
      [['mirror', '--offline', '--pin-token-file', join(dir, 'empty')], /--pin-token-file .*empty holds no token/]
    ]
    for (const [args, message] of cases) {
      const r = runCli([...args, '--repo', tmp()])
      expect(r.status, args.join(' ')).toBe(1)
      expect(r.stdout + r.stderr, args.join(' ')).toMatch(message)
      expect(r.stdout + r.stderr).toMatch(/\[ERR_USAGE\]/)
    }
    // A token is a password: a file others can read is named, with the fix.
    writeFileSync(join(dir, 'token'), 'tok\n', { mode: 0o644 })
    chmodSync(join(dir, 'token'), 0o644)
    const open = runCli(['pin-remote', '--service', 'http://127.0.0.1:1/psa', '--token-file', join(dir, 'token'), '--repo', tmp()])
    expect(open.stdout + open.stderr).toMatch(/--token-file .*token can be read by others \(mode 0644\); chmod 600 /)
    expect(open.stdout + open.stderr).toMatch(/has no cache yet; publish something first/)
  })

  it('a gateway with --pin-token-file starts on an empty repo and serves the Pinning Service API', async () => {
    const dir = tmp()
    writeFileSync(join(dir, 'tokens'), 'gw-token\n', { mode: 0o600 })
    const gw = await startGatewayProcess(['--repo', tmp(), '--pin-token-file', join(dir, 'tokens')])
    try {
      expect((await fetch(`${gw.url}/psa/pins`)).status).toBe(401)
      const r = await fetch(`${gw.url}/psa/pins`, { headers: { authorization: 'Bearer gw-token' } })
      expect(r.status).toBe(200)
      expect(await r.json()).toEqual({ count: 0, results: [] })
    } finally {
      await gw.stop()
    }
  })

  it('--help in a pipe is plain text of at most 100 columns, and names the options of every command', () => {
    const top = runCli(['--help'])
    expect(top.status).toBe(0)
    expect(top.stdout).toMatch(/^ {2}disputes +List the store paths builders disagree on: [^]*\(nixipfs\s+verify\)[^]*announced on\s+the network\.$/m)
    for (const args of [['--help'], ...['keygen', 'publish', 'gateway', 'mirror', 'import', 'config', 'doctor', 'pin-remote'].map(c => [c, '--help'])]) {
      const r = runCli(args)
      expect(r.status).toBe(0)
      // eslint-disable-next-line no-control-regex
      expect(r.stdout + r.stderr, args.join(' ')).not.toMatch(/\x1b\[/)
      for (const line of r.stdout.split('\n')) expect(line.length, line).toBeLessThanOrEqual(100)
      expect(r.stdout).toMatch(/--config FILE/)
      expect(r.stdout).toMatch(/--log-json/)
      expect(r.stdout).not.toMatch(/\S.*v0\.1\.0/) // the version is not glued to the example
    }
  })

  it('turns a busy or foreign --listen address into ERR_LISTEN saying what to do', async () => {
    const busy = createServer()
    await new Promise<void>(resolve => busy.listen(0, '127.0.0.1', resolve))
    try {
      const port = (busy.address() as { port: number }).port
      const r = runCli(['gateway', '--offline', '--upstream', 'http://127.0.0.1:9', '--upstream-key', 'u-1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=', '--repo', tmp(), '--listen', `127.0.0.1:${port}`])
      expect(r.status).toBe(1)
      expect(r.stderr + r.stdout).toMatch(new RegExp(`127\\.0\\.0\\.1:${port} is in use.*--listen.*\\[ERR_LISTEN\\]`))
      expect(r.stderr + r.stdout).not.toMatch(/\n\s+at /) // no stack trace
      const foreign = runCli(['gateway', '--offline', '--upstream', 'http://127.0.0.1:9', '--upstream-key', 'u-1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=', '--repo', tmp(), '--listen', '192.0.2.1:8080'])
      expect(foreign.status).toBe(1)
      expect(foreign.stderr + foreign.stdout).toMatch(/192\.0\.2\.1 is no address of this machine.*\[ERR_LISTEN\]/)
    } finally {
      await new Promise(resolve => busy.close(resolve))
    }
  })

  it('falls back to a free libp2p port, with a one-line warning, only from the default address', async () => {
    const upstream = ['--upstream', 'http://127.0.0.1:9', '--upstream-key', 'u-1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=']
    // The default port held (by this test, or by anyone): the node takes a free one.
    const busy = createServer()
    await new Promise<void>(resolve => busy.once('error', () => resolve()).listen(4001, '127.0.0.1', resolve))
    const gw = await startNodeProcess('gateway', ['--repo', tmp(), ...upstream], {}, { defaultP2p: true })
    try {
      expect(gw.output()).toMatch(/cannot listen on \/ip4\/127\.0\.0\.1\/tcp\/4001 \(EADDRINUSE: address already in use [^\n]*\); listening on a free port instead/)
      expect(gw.output()).not.toMatch(/\n\s+at /)
      expect(gw.p2p()).toMatch(/^\/ip4\/127\.0\.0\.1\/tcp\/\d+/)
    } finally {
      await gw.stop()
      await new Promise(resolve => busy.close(resolve))
    }
    // An address the user chose is not moved (found by an outside test), and a malformed one is a usage error.
    const taken = createServer()
    await new Promise<void>(resolve => taken.listen(0, '127.0.0.1', resolve))
    const port = (taken.address() as { port: number }).port
    try {
      const r = await runCliAsync(['gateway', '--repo', tmp(), '--listen', '127.0.0.1:0', ...upstream, '--listen-p2p', `/ip4/127.0.0.1/tcp/${port}`])
      expect(r.status).toBe(1)
      expect(r.stderr + r.stdout).toMatch(new RegExp(`cannot listen for libp2p on /ip4/127\\.0\\.0\\.1/tcp/${port} \\(EADDRINUSE[^)]*\\); choose another --listen-p2p .*\\[ERR_LISTEN\\]`))
      expect(r.stderr + r.stdout).not.toMatch(/\n\s+at /)
    } finally {
      await new Promise(resolve => taken.close(resolve))
    }
    const bad = runCli(['gateway', '--repo', tmp(), ...upstream, '--listen-p2p', 'foo'])
    expect(bad.stderr + bad.stdout).toMatch(/--listen-p2p takes a TCP multiaddr such as \/ip4\/0\.0\.0\.0\/tcp\/4001, got "foo" \[ERR_USAGE\]/)
  })

  it('logs the effective trust policy and what it listens on at start', async () => {
    const gw = await startGatewayProcess(['--repo', tmp(), '--upstream', 'http://127.0.0.1:9', '--trust', 'a-1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=', '--trust', 'b-1:BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBA=', '--threshold', '2'])
    try {
      expect(gw.output()).toMatch(/trust: .*2 of these 2 keys.*a-1:A+=, b-1:B+A=/)
      expect(gw.output()).toMatch(/p2p: off/)
      expect(gw.output()).toContain(gw.url)
    } finally {
      await gw.stop()
    }
    // One key: not "1 of these 1 keys".
    const one = await startGatewayProcess(['--repo', tmp(), '--upstream', 'http://127.0.0.1:9', '--trust', 'a-1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA='])
    try {
      expect(one.output()).toMatch(/trust: a path is served only when this key signed it: a-1:A+=/)
    } finally {
      await one.stop()
    }
  })

  it('says a file outside the store is not a store path, and how to add it', () => {
    const file = join(tmp(), 'hostname')
    writeFileSync(file, 'x\n')
    const r = runCli(['publish', '--repo', tmp(), file])
    expect(r.status).toBe(1)
    expect(r.stderr + r.stdout).toMatch(new RegExp(`${file} is not a store path; add it with nix-store --add ${file}.*\\[ERR_INVALID_STORE_PATH\\]`))
    expect(r.stderr + r.stdout).not.toMatch(/flake/)
  })

  it.runIf(nixAvailable)('publishes from a chroot store given as DIR or as local?root=DIR', () => {
    const store = tmp()
    const file = join(tmp(), 'chroot-file.txt')
    writeFileSync(file, `chroot ${Date.now()}\n`)
    const path = execFileSync('nix-store', ['--store', store, '--add', file], { encoding: 'utf8' }).trim()
    for (const flag of [`local?root=${store}`, store]) {
      const r = runCli(['publish', '--repo', tmp(), '--store', flag, path])
      expect(r.stderr + r.stdout, flag).toContain(`${path} -> bafk`)
      expect(r.status).toBe(0)
    }
    const other = runCli(['publish', '--repo', tmp(), '--store', 'daemon', path])
    expect(other.status).toBe(1)
    expect(other.stderr + other.stdout).toMatch(/--store takes .*\[ERR_USAGE\]/)
  })

  it.runIf(nixAvailable)('shows publish progress (done of total, rate, time left) redrawn in place on a terminal, and no control codes in a pipe', () => {
    const dir = tmp()
    const file = join(dir, 'big')
    writeFileSync(file, randomBytes(64 * 2 ** 20))
    const path = execFileSync('nix-store', ['--add', file], { encoding: 'utf8' }).trim()
    try {
      // script(1) runs the CLI on a pseudo-terminal.
      const onTty = execFileSync('script', ['-qfec', `${process.execPath} ${BIN} publish --repo ${join(dir, 'repo')} ${path}`, '/dev/null'], { encoding: 'utf8' })
      expect(onTty).toMatch(/\r\x1b\[Kpublishing: [\d.]+ (B|KiB|MiB) of 64\.0 MiB \(\d+%\), [\d.]+ (B|KiB|MiB)\/s, \d+s left/)
      expect(onTty).toMatch(/published 1 path\(s\), 0 already there; NAR 64\.0 MiB of 64\.0 MiB \(100%\)/)
      const piped = runCli(['publish', '--repo', join(dir, 'repo2'), path])
      expect(piped.status).toBe(0)
      expect(piped.stdout + piped.stderr).not.toMatch(/\r|\x1b/)
    } finally {
      execFileSync('nix-store', ['--delete', path], { stdio: 'ignore' })
    }
  })

  it('ends quietly when the reader of its output goes away (nixipfs info | head -1)', async () => {
    const child = spawn(process.execPath, [BIN, 'info', '--repo', emptyRepo()], { stdio: ['ignore', 'pipe', 'pipe'] })
    child.stdout.destroy() // the reader is gone before the first line is written
    let stderr = ''
    child.stderr.on('data', (b: Buffer) => { stderr += b.toString() })
    const status = await new Promise<number | null>(resolve => child.on('close', resolve))
    expect(stderr).not.toMatch(/EPIPE|Error/)
    expect(status).toBe(0)
  })
})

describe('structured logs', () => {
  it('--log-json writes one JSON object a line, one per request with its route, status, bytes and time', async () => {
    const key = join(tmp(), 'k.secret')
    runCli(['keygen', 'up-1', '--secret-key-file', key])
    // A gateway with nothing but an (unreachable) upstream: it starts without a published cache.
    const g = await startGatewayProcess(['--repo', tmp(), '--log-json', '--upstream', 'http://127.0.0.1:9', '--upstream-key', readFileSync(`${key}.pub`, 'utf8').trim()])
    try {
      expect((await fetch(`${g.url}/nix-cache-info`)).status).toBe(200)
      const out = await g.waitForLog(/"route":"cacheinfo"/)
      const lines = out.trim().split('\n').map(l => JSON.parse(l) as Record<string, unknown>)
      expect(lines.every(l => typeof l.time === 'string' && typeof l.level === 'string')).toBe(true)
      expect(lines.find(l => l.route === 'cacheinfo')).toMatchObject({ message: 'request', method: 'GET', path: '/nix-cache-info', status: 200 })
      expect((lines.find(l => l.route === 'cacheinfo')!.bytes as number)).toBeGreaterThan(0)
    } finally {
      await g.stop()
    }
  })

  it('--log-json logs every request, also many alike in a second (none collapsed as repeats)', async () => {
    const key = join(tmp(), 'k.secret')
    runCli(['keygen', 'up-1', '--secret-key-file', key])
    const g = await startGatewayProcess(['--repo', tmp(), '--log-json', '--upstream', 'http://127.0.0.1:9', '--upstream-key', readFileSync(`${key}.pub`, 'utf8').trim()])
    try {
      for (let i = 0; i < 20; i++) await (await fetch(`${g.url}/nix-cache-info`)).text()
      await (await fetch(`${g.url}/healthz`)).text()
      const out = await g.waitForLog(/"route":"health"/)
      expect(out.split('\n').filter(l => l.includes('"route":"cacheinfo"'))).toHaveLength(20)
      expect(out).not.toMatch(/repeated/)
    } finally {
      await g.stop()
    }
  })
})
