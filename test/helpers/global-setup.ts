import { spawnSync } from 'node:child_process'

/** Fails the whole run at once, with what to do, when CI=true and the real Nix is missing (its tests must fail there, not skip). */
export default function requireNixUnderCi (): void {
  if (process.env.CI !== 'true') return
  if (spawnSync('nix-store', ['--version']).status === 0) return
  throw new Error('CI=true, but the real Nix is not installed (nix-store is not on PATH): the end-to-end tests need it. Install it with `apt-get install -y nix-bin` (.ci/run does), or run without CI=true to skip those tests.')
}
