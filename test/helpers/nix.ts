import { execFileSync, spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { runAsync, tmp } from './cli.js'
import { join } from 'node:path'

/** True when the real Nix is installed. Under CI=true tests never skip: missing Nix must fail them. */
export const hasNix = spawnSync('nix-store', ['--version']).status === 0
/** Use as `describe.runIf(nixAvailable)`: runs when Nix is there, and always under CI. */
export const nixAvailable = hasNix || process.env.CI === 'true'

/** Flags that keep test builds local and offline. */
export const NIX_OFFLINE = ['--option', 'substituters', '', '--option', 'sandbox', 'false']

/** Builds a Nix expression (text) and returns its output store paths. */
export function nixBuild (expr: string): string[] {
  const dir = tmp('nixipfs-expr-')
  const file = join(dir, 'default.nix')
  writeFileSync(file, expr)
  const out = execFileSync('nix-build', [file, '--no-out-link', ...NIX_OFFLINE], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
  return out.trim().split('\n')
}

/** A derivation running a shell script with a plain PATH (no nixpkgs needed). */
export function shellDerivation (name: string, script: string, extra = ''): string {
  return `derivation { name = ${JSON.stringify(name)}; system = builtins.currentSystem; builder = "/bin/sh"; ${extra} args = [ "-c" ${JSON.stringify('PATH=/usr/bin:/bin; set -e; ' + script)} ]; }`
}

/** Runs `nix` with the new CLI enabled; throws with stderr on failure. */
export function nix (args: string[], options: { allowFail?: boolean, env?: Record<string, string> } = {}): { status: number, stdout: string, stderr: string } {
  const r = spawnSync('nix', ['--extra-experimental-features', 'nix-command', ...args], { encoding: 'utf8', env: { ...process.env, ...options.env } })
  if (r.status !== 0 && options.allowFail !== true) throw new Error(`nix ${args.join(' ')} failed: ${r.stderr}`)
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr }
}

/** `nix-store --dump PATH`: the NAR real Nix makes. */
export function nixDump (path: string): Buffer {
  return execFileSync('nix-store', ['--dump', path], { maxBuffer: 1 << 30 })
}

/** `nix` with the new CLI enabled, without blocking this process (needed when this process also serves what Nix fetches). */
export async function nixAsync (args: string[]): Promise<{ status: number, stdout: string, stderr: string }> {
  return await runAsync('nix', ['--extra-experimental-features', 'nix-command', ...args])
}
