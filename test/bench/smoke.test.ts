import { spawn, spawnSync } from 'node:child_process'
import { readFileSync, readdirSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { describe, expect, it } from 'vitest'
import { tmp } from '../helpers/cli.js'

// Every benchmark runs in its smoke mode (BENCH_SMOKE=1: a tiny corpus or N, no targets checked), so a change
// that breaks one fails here instead of when someone next runs it. npm test builds dist/ first.
const BENCH = resolve(import.meta.dirname, '../../bench')
/** The results file each benchmark writes, or what it prints when it writes none. */
const RESULTS: Record<string, string | RegExp> = {
  'p2p.mjs': 'p2p-results.md',
  'run.mjs': 'results.md',
  'index.mjs': 'index-results.md',
  'load.mjs': 'load-results.md',
  'soak.mjs': 'soak-results.md',
  'discovery.mjs': 'discovery-results.md',
  'compression.mjs': 'compression-results.md',
  'wan.mjs': 'wan-results.md',
  'chunk-overlap.mjs': /CDC storage \/ fixed storage = [0-9.]+/,
  'metrics-overhead.mjs': /median [0-9.]+ µs CPU per request/,
  'idle.mjs': /"cpuSecondsPerMinute":[0-9.]+/
}
/** What the benchmarks run besides Node: .ci/run installs them; under CI=true a missing one fails the tests. */
const TOOLS = ['nix-store', 'nginx', 'wrk', 'curl', 'python3', 'flock', 'ip', 'tc']
const missing = TOOLS.filter(t => spawnSync('sh', ['-c', `command -v ${t} || test -x /usr/sbin/${t}`], { stdio: 'ignore' }).status !== 0)
/** Slowest first: two at a time, as many as the cores. */
const SCRIPTS = Object.keys(RESULTS)
const LANES = 2

let running = 0
const waiting: Array<() => void> = []
async function inLane<T> (fn: () => Promise<T>): Promise<T> {
  if (running >= LANES) await new Promise<void>(resolve => waiting.push(resolve))
  running++
  try { return await fn() } finally { running--; waiting.shift()?.() }
}

/** Runs one benchmark in smoke mode with its output under `out`; resolves with its exit status and output. */
async function smoke (script: string, out: string): Promise<{ status: number | null, output: string }> {
  return await new Promise(resolve => {
    const child = spawn(process.execPath, [join(BENCH, script)], { env: { ...process.env, BENCH_SMOKE: '1', BENCH_OUT: out, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'], timeout: 400_000 })
    let output = ''
    child.stdout.on('data', b => { output += b })
    child.stderr.on('data', b => { output += b })
    child.on('close', status => resolve({ status, output }))
  })
}

describe.runIf(missing.length === 0 || process.env.CI === 'true')('benchmark smoke runs', () => {
  const out = tmp('nixipfs-bench-smoke-')
  const committed = Object.fromEntries(readdirSync(BENCH).filter(f => f.endsWith('.md')).map(f => [f, readFileSync(join(BENCH, f), 'utf8')]))

  it('covers every bench/*.mjs', () => {
    expect(readdirSync(BENCH).filter(f => f.endsWith('.mjs')).sort()).toEqual([...SCRIPTS].sort())
  })

  it.concurrent.each(SCRIPTS)('%s runs to the end with BENCH_SMOKE=1 and writes its results under BENCH_OUT only', async (script) => {
    expect(missing, `missing tools (.ci/run installs them): ${missing.join(', ')}`).toEqual([])
    const { status, output } = await inLane(async () => await smoke(script, out))
    expect(status, output.slice(-3000)).toBe(0)
    const results = RESULTS[script]
    if (results instanceof RegExp) expect(output).toMatch(results)
    else expect(readFileSync(join(out, results), 'utf8')).toMatch(/^# /)
    for (const [file, text] of Object.entries(committed)) expect(readFileSync(join(BENCH, file), 'utf8'), `bench/${file} was overwritten`).toBe(text)
  }, 600_000)
})
