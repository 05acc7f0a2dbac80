// The Nix side of the benchmarks: flags, the corpus, where fresh stores go.
import fs from 'node:fs'
import { join } from 'node:path'
import { ROOT } from './mode.mjs'
import { runSync } from './process.mjs'

/** Flags every `nix` command of the benchmarks takes (Nix 2.8). */
export const NIXFLAGS = ['--extra-experimental-features', 'nix-command']

/** Builds the corpus (bench/corpus.sh); returns its top store path and closure (`nix path-info --json -r`). */
export function corpusClosure () {
  const top = runSync(join(ROOT, 'bench', 'corpus.sh'), []).stdout.trim().split('\n').pop()
  const closure = JSON.parse(runSync('nix', ['path-info', ...NIXFLAGS, '--json', '-r', top, '--option', 'substituters', '']).stdout)
  return { top, closure }
}

/**
 * Where fresh Nix stores of substitution runs go: BENCH_STORE_DIR, else
 * tmpfs (/dev/shm) if it has 4 GiB free, else `work`. On the dev VMs file
 * creation on ext4 (~0.5 ms per file, 8,000+ files) swings a run from 3 s
 * to 11 s of kernel time whichever server is used; on tmpfs a run is stable.
 */
export function storeBase (work) {
  if (process.env.BENCH_STORE_DIR) return process.env.BENCH_STORE_DIR
  const shm = fs.existsSync('/dev/shm') && fs.statfsSync('/dev/shm')
  return shm && shm.bavail * shm.bsize > 4 * 2 ** 30 ? '/dev/shm' : work
}
