// Smoke mode of the benchmarks (BENCH_SMOKE=1): a tiny corpus or N, a few
// seconds, no targets checked. `npm test` runs every bench/*.mjs this way
// (test/bench/smoke.test.ts) so a change that breaks a benchmark fails CI.
// A smoke run writes its results and scratch files under BENCH_OUT (a new
// temporary directory when unset), never over the committed bench/*-results.md.
import { mkdirSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..')
export const SMOKE = process.env.BENCH_SMOKE === '1'
const OUT = SMOKE ? (process.env.BENCH_OUT || mkdtempSync(join(tmpdir(), 'nixipfs-bench-smoke-'))) : join(ROOT, 'bench')
if (SMOKE) mkdirSync(OUT, { recursive: true })

/** BENCH_CORPUS=large: bench/corpus.sh's second corpus (large binaries), whose results and scratch files are kept apart as NAME-large. */
export const LARGE = process.env.BENCH_CORPUS === 'large' && !SMOKE
const kept = (name) => LARGE ? name.replace(/(\.md)?$/, '-large$1') : name

/** The path a benchmark writes its results file `name` to (`x-results-large.md` for the large corpus). */
export const resultsFile = (name) => join(OUT, kept(name))

/** The scratch directory of benchmark `name` (bench/work/NAME, or under BENCH_OUT in smoke mode). */
export const workDir = (name) => join(OUT, 'work', kept(name))
