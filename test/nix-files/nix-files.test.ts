import { execFileSync } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { describe, expect, it } from 'vitest'
import { nixAvailable } from '../helpers/nix.js'
import { runCli, startGatewayProcess, tmp } from '../helpers/cli.js'

const ROOT = resolve(import.meta.dirname, '../..')
const nixFilesUnder = (dir: string): string[] => readdirSync(join(ROOT, dir), { recursive: true, encoding: 'utf8' }).filter(f => f.endsWith('.nix')).map(f => `${dir}/${f}`)
const NIX_FILES = ['flake.nix', ...nixFilesUnder('nix'), ...nixFilesUnder('test/nix-files')]

/** The module's config for `settings`, evaluated against the stub option system. */
function evalModule (settings: string): any {
  return JSON.parse(execFileSync('nix-instantiate', ['--eval', '--strict', '--json', join(ROOT, 'test/nix-files/stub-eval.nix'), '--arg', 'settings', settings], { encoding: 'utf8' }))
}

/** The words of a command line that lib.escapeShellArgs made (every word single-quoted). */
const words = (line: string): string[] => [...line.matchAll(/'((?:[^']|'\\'')*)'/g)].map(m => m[1]!.replace(/'\\''/g, "'"))

describe.runIf(nixAvailable)('Nix files', () => {
  it.each(NIX_FILES)('%s parses', (file) => {
    expect(() => execFileSync('nix-instantiate', ['--parse', join(ROOT, file)], { stdio: 'pipe' })).not.toThrow()
  })

  it('the package takes its npm dependencies from package-lock.json (importNpmLock), with no hash to keep in step', () => {
    const p = JSON.parse(execFileSync('nix-instantiate', ['--eval', '--strict', '--json', join(ROOT, 'test/nix-files/package-eval.nix')], { encoding: 'utf8' }))
    expect(p).toEqual({
      hasNpmDepsHash: false,
      npmDeps: { from: 'importNpmLock', lockFileFound: true },
      npmConfigHook: 'importNpmLock.npmConfigHook',
      nodejs: 'nodejs_24',
      npmBuildScript: 'build'
    })
  })

  it('the flake has the NixOS VM test as a check on Linux', () => {
    expect(NIX_FILES).toContain('nix/tests/substitute.nix')
    const flake = readFileSync(join(ROOT, 'flake.nix'), 'utf8')
    expect(flake).toMatch(/checks = nixpkgs\.lib\.genAttrs \[ "x86_64-linux" "aarch64-linux" \]/)
    expect(flake).toContain('substitute = import ./nix/tests/substitute.nix')
  })

  it('the NixOS module does nothing unless enabled', () => {
    expect(evalModule('{ }')).toEqual({})
  })

  it('the NixOS module wires a gateway as substituter, a mirror, the post-build hook and the firewall', () => {
    const c = evalModule('{ enable = true; gateway.follow = [ "b-1:x" ]; gateway.trust = [ "b-1:x" "b-2:y" ]; gateway.threshold = 2; gateway.maxCache = "20G"; publishHook.enable = true; openFirewall = true; mirror.enable = true; mirror.follow = [ "b-1:x" ]; }')
    expect(c.nix.settings.substituters).toEqual(['http://127.0.0.1:8080'])
    expect(c.nix.settings['trusted-public-keys']).toEqual(['b-1:x', 'b-2:y'])
    expect(c.nix.settings['post-build-hook'].text).toMatch(/runuser -u nixipfs -- \S+\/bin\/nixipfs publish --hook/)
    expect(c.networking.firewall.allowedTCPPorts).toEqual([4001, 8081])
    const gw = c.systemd.services['nixipfs-gateway'].serviceConfig
    expect(words(gw.ExecStart).slice(1)).toEqual(['gateway', '--repo', '/var/lib/nixipfs', '--listen', '127.0.0.1:8080', '--listen-p2p', '/ip4/0.0.0.0/tcp/4001', '--follow', 'b-1:x', '--trust', 'b-1:x', '--trust', 'b-2:y', '--threshold', '2', '--max-cache', '20G'])
    expect(gw).toMatchObject({ User: 'nixipfs', ProtectSystem: 'strict', NoNewPrivileges: true, StateDirectory: 'nixipfs' })
    expect(words(c.systemd.services['nixipfs-mirror'].serviceConfig.ExecStart).slice(1, 8)).toEqual(['mirror', '--repo', '/var/lib/nixipfs-mirror', '--listen', '0.0.0.0:8081', '--listen-p2p', '/ip4/0.0.0.0/tcp/4001'])
    // Open files for the default --max-connections: the mirror listens on 0.0.0.0.
    for (const service of ['nixipfs-gateway', 'nixipfs-mirror']) expect(c.systemd.services[service].serviceConfig.LimitNOFILE).toBe(65536)
    expect(c.users.users.nixipfs.isSystemUser).toBe(true)
  })

  it('the NixOS module listens on loopback only unless the firewall is opened', () => {
    const c = evalModule('{ enable = true; mirror.enable = true; mirror.follow = [ "b-1:x" ]; }')
    const gw = words(c.systemd.services['nixipfs-gateway'].serviceConfig.ExecStart)
    expect(gw[gw.indexOf('--listen-p2p') + 1]).toBe('/ip4/127.0.0.1/tcp/4001')
    const mirror = words(c.systemd.services['nixipfs-mirror'].serviceConfig.ExecStart)
    expect(mirror[mirror.indexOf('--listen') + 1]).toBe('127.0.0.1:8081')
    expect(mirror[mirror.indexOf('--listen-p2p') + 1]).toBe('/ip4/127.0.0.1/tcp/4001')
    expect(c.networking.firewall.allowedTCPPorts).toEqual([])
  })

  it('the gateway command line the module writes is one nixipfs accepts', async () => {
    const keys = [1, 2].map(i => {
      const secret = join(tmp(), 'k.secret')
      runCli(['keygen', `b-${i}`, '--secret-key-file', secret])
      return execFileSync('cat', [`${secret}.pub`], { encoding: 'utf8' }).trim()
    })
    const c = evalModule(`{ enable = true; gateway.follow = [ "${keys[0]}" ]; gateway.trust = [ "${keys[0]}" "${keys[1]}" ]; gateway.threshold = 2; gateway.maxCache = "20G"; }`)
    const args = words(c.systemd.services['nixipfs-gateway'].serviceConfig.ExecStart).slice(2)
      .map(a => a === '/var/lib/nixipfs' ? tmp() : a === '127.0.0.1:8080' ? '127.0.0.1:0' : a)
    const g = await startGatewayProcess([...args, '--offline'])
    expect(g.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
    await g.stop()
  })
})
