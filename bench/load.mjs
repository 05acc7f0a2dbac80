#!/usr/bin/env node
// bench/load.mjs — load on one gateway over loopback (issue "Hostile input
// and hard faults", load): wrk for BENCH_LOAD_SECONDS [60] at 64 connections
// on a narinfo/NAR mix (9 narinfo requests to 1 NAR request) over the corpus
// of bench/corpus.sh, then 25 parallel `nix copy --from` of the corpus's
// smaller paths into fresh stores. Reports requests, errors, p50/p99 and the
// gateway's resident memory; writes bench/load-results.md.
// Usage: node bench/load.mjs   (root, Nix single-user; wrk via apt-get if missing)
//   BENCH_SMOKE=1: the tiny corpus, wrk 1 s, 2 copies (see bench/lib/mode.mjs)
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { SMOKE, resultsFile, workDir } from './lib/mode.mjs'
import { NIXFLAGS, corpusClosure, storeBase } from './lib/nix.mjs'
import { installIfMissing, logger, memoryOf, rmrf, runSync } from './lib/process.mjs'
import { CLI, startGateway } from './lib/servers.mjs'
import { wrkResult, writeRoundRobinScript } from './lib/wrk.mjs'

const WORK = workDir('load')
const SECONDS = Number(process.env.BENCH_LOAD_SECONDS || (SMOKE ? 1 : 60))
const PARALLEL = SMOKE ? 2 : 25
const STORES = storeBase(WORK)
const log = logger('load')

async function main () {
  rmrf(WORK); fs.mkdirSync(WORK, { recursive: true })
  installIfMissing('wrk')
  const { top, closure } = corpusClosure()
  const repo = join(WORK, 'repo')
  runSync(process.execPath, [CLI, 'publish', '-r', '--repo', repo, top])
  const pub = fs.readFileSync(join(repo, 'keys', 'cache.public'), 'utf8').trim()
  const gw = await startGateway(repo)
  const { url } = gw
  // The mix: every narinfo nine times, every NAR once.
  const paths = []
  for (const p of closure) {
    const hash = p.path.slice(11, 43)
    const narinfo = await (await fetch(`${url}/${hash}.narinfo`)).text()
    for (let i = 0; i < 9; i++) paths.push(`/${hash}.narinfo`)
    paths.push('/' + /^URL: (\S+)$/m.exec(narinfo)[1])
  }
  fs.writeFileSync(join(WORK, 'paths.txt'), paths.join('\n') + '\n')
  writeRoundRobinScript(join(WORK, 'mix.lua'))
  log(`wrk: ${SECONDS} s, 64 connections, ${paths.length} URLs in the mix`)
  const w = runSync('wrk', ['-t2', '-c64', `-d${SECONDS}s`, '--timeout', '120s', '-s', join(WORK, 'mix.lua'), url], { env: { ...process.env, WRK_PATHS: join(WORK, 'paths.txt') } })
  const r = wrkResult(w.stdout)
  const afterWrk = memoryOf(gw.pid)
  // 25 parallel nix copy of the smaller paths (each a fresh store).
  const small = closure.filter(p => p.narSize < 40 * 2 ** 20).map(p => p.path)
  log(`${PARALLEL} parallel nix copy of ${small.length} paths`)
  const t0 = Date.now()
  const copies = await Promise.all(Array.from({ length: PARALLEL }, async (_, i) => {
    const store = fs.mkdtempSync(join(STORES, `nixipfs-load-${i}-`))
    // Each copy its own narinfo cache: concurrent Nix 2.8 clients sharing ~/.cache/nix fail on SQLite constraints.
    const cache = fs.mkdtempSync(join(WORK, `xdg-cache-${i}-`))
    const status = await new Promise(res => spawn('nix', [...NIXFLAGS, 'copy', '--from', url, '--to', store, ...small, '--option', 'trusted-public-keys', pub], { stdio: 'ignore', env: { ...process.env, XDG_CACHE_HOME: cache } }).on('close', res))
    fs.rmSync(store, { recursive: true, force: true })
    return status
  }))
  const copySeconds = (Date.now() - t0) / 1000
  const afterCopies = memoryOf(gw.pid)
  await gw.stop()
  const errors = r.status_errors + r.connect + r.read + r.write + r.timeout
  const md = `# Load on one gateway (bench/load.mjs)

Run ${new Date().toISOString()} on ${os.cpus().length} × ${os.cpus()[0]?.model}, Node ${process.version}; corpus \`${top}\` (${closure.length} paths, ${(closure.reduce((a, p) => a + p.narSize, 0) / 2 ** 20).toFixed(0)} MiB of NAR). Gateway \`--offline\`, default limits (1024 connections, 16 KiB request heads), Node's default heap.

| what | value |
| --- | ---: |
| wrk: ${SECONDS} s, 64 connections, 2 threads, 9 narinfo : 1 NAR | ${r.requests} requests, ${(r.bytes / 2 ** 30).toFixed(2)} GiB |
| errors (status, connect, read, write, timeout) | ${errors} (${r.status_errors}, ${r.connect}, ${r.read}, ${r.write}, ${r.timeout}) |
| latency p50 / p99 | ${(r.p50_us / 1000).toFixed(2)} / ${(r.p99_us / 1000).toFixed(2)} ms |
| gateway RSS after wrk (peak) | ${afterWrk.rss.toFixed(0)} MiB (${afterWrk.hwm.toFixed(0)} MiB) |
| ${PARALLEL} parallel \`nix copy --from\` of ${small.length} paths | ${copies.filter(c => c === 0).length} of ${PARALLEL} succeeded, ${copySeconds.toFixed(1)} s |
| gateway RSS after the copies (peak) | ${afterCopies.rss.toFixed(0)} MiB (${afterCopies.hwm.toFixed(0)} MiB) |
`
  fs.writeFileSync(resultsFile('load-results.md'), md)
  console.log(md)
  rmrf(WORK)
  if (errors > 0 || copies.some(c => c !== 0)) process.exit(1)
}
main().catch(err => { console.error(err); process.exit(1) })
