#!/usr/bin/env node
// bench/soak.mjs — the long run of the hostile-input and hard-fault tests
// (issue "Hostile input and hard faults"): ROUNDS rounds of the parser fuzz
// at SOAK_FUZZ_RUNS cases per property, of SIGKILL at random points of
// publish, import and mirror (SOAK_CRASH_RUNS kills each) and of the tamper
// matrix with real Nix. Every round is the same vitest files `npm test` runs,
// with larger counts; the figures are what those tests print. Writes
// bench/soak-results.md.
// Usage: node bench/soak.mjs   (SOAK_ROUNDS [6], SOAK_FUZZ_RUNS [20000], SOAK_CRASH_RUNS [25])
//   BENCH_SMOKE=1: one round of the parser fuzz alone at 50 cases, no build (`npm test` runs the
//   crash and tamper files itself; see bench/lib/mode.mjs)
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import { join } from 'node:path'
import { ROOT, SMOKE, resultsFile, workDir } from './lib/mode.mjs'
import { logger, stripAnsi } from './lib/process.mjs'

const WORK = workDir('soak')
const ROUNDS = Number(process.env.SOAK_ROUNDS || (SMOKE ? 1 : 6))
const FUZZ_RUNS = Number(process.env.SOAK_FUZZ_RUNS || (SMOKE ? 50 : 20_000))
const CRASH_RUNS = Number(process.env.SOAK_CRASH_RUNS || 25)
const FILES = SMOKE ? ['test/fuzz/parsers.test.ts'] : ['test/fuzz/parsers.test.ts', 'test/e2e/crash.test.ts', 'test/e2e/tamper.test.ts']
const log = logger('soak')

/** Runs the test files once; resolves with their output and exit code. */
function round () {
  return new Promise(resolveRound => {
    const child = spawn('npx', ['vitest', 'run', '--reporter=verbose', ...FILES], {
      cwd: ROOT,
      env: { ...process.env, NIXIPFS_FUZZ_RUNS: String(FUZZ_RUNS), NIXIPFS_CRASH_RUNS: String(CRASH_RUNS), NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe']
    })
    let out = ''
    child.stdout.on('data', b => { out += b })
    child.stderr.on('data', b => { out += b })
    child.on('close', code => resolveRound({ code, out: stripAnsi(out) }))
  })
}

const sum = (outs, re) => outs.reduce((n, out) => n + [...out.matchAll(re)].reduce((m, x) => m + Number(x[1]), 0), 0)

async function main () {
  fs.mkdirSync(WORK, { recursive: true })
  if (!SMOKE) await new Promise((res, rej) => spawn('npm', ['run', 'build'], { cwd: ROOT, stdio: 'inherit' }).on('close', c => c === 0 ? res() : rej(new Error('build failed'))))
  const started = Date.now()
  const outs = []
  let failed = 0
  for (let i = 1; i <= ROUNDS; i++) {
    const t = Date.now()
    const { code, out } = await round()
    outs.push(out)
    if (code !== 0) failed++
    fs.writeFileSync(join(WORK, `soak-round-${i}.log`), out)
    log(`round ${i}/${ROUNDS}: exit ${code} in ${((Date.now() - t) / 1000).toFixed(0)} s`)
  }
  const minutes = ((Date.now() - started) / 60_000).toFixed(1)
  const crashLines = outs.flatMap(o => o.split('\n').filter(l => l.startsWith('crash: ')))
  const tests = sum(outs, /Tests\s+(?:\d+ failed \| )?(\d+) passed/g)
  const failedTests = sum(outs, /Tests\s+(\d+) failed/g)
  const matrix = outs.at(-1).split('\n').filter(l => l.startsWith('|')).join('\n')
  const md = `# Soak: fuzzing, crashes and tampering (bench/soak.mjs)

Run ${new Date().toISOString()} on ${process.version}, ${ROUNDS} rounds, ${minutes} min; each round runs
${FILES.map(f => `\`${f}\``).join(', ')} with NIXIPFS_FUZZ_RUNS=${FUZZ_RUNS} and NIXIPFS_CRASH_RUNS=${CRASH_RUNS}.

- rounds that failed: ${failed} of ${ROUNDS}; tests passed: ${tests}, failed: ${failedTests}
- parser fuzz cases run: ${sum(outs, /fuzz: (\d+) cases/g).toLocaleString('en')}
- processes killed with SIGKILL at random points: ${sum(outs, /crash: \w+ killed (\d+) times/g)}
- tamper faults injected end to end with real Nix: ${sum(outs, /tamper matrix: (\d+) faults injected/g)}; wrong bytes that reached Nix: 0 (every round asserts it)

Kill runs, as the tests report them:

${crashLines.map(l => `- ${l}`).join('\n')}

The tamper matrix of the last round:

${matrix}
`
  fs.writeFileSync(resultsFile('soak-results.md'), md)
  log(`wrote ${resultsFile('soak-results.md')} (${failed} failed rounds)`)
  if (failed > 0) process.exitCode = 1
}

main().catch(err => { console.error(err); process.exit(1) })
