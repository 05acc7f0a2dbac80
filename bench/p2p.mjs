#!/usr/bin/env node
// bench/p2p.mjs — substitution through a client gateway C that fetches every
// block from a mirror M over loopback, side by side with nginx serving the
// same closure as a file:// binary cache (target: ≤ 2× nginx's time).
//
//   B  nixipfs gateway over a repo the corpus was published into (the builder)
//   M  nixipfs mirror --follow B's key, pins everything, then B is stopped
//   C  nixipfs gateway --follow B's key with a fresh, empty repo each run,
//      fetching from M over HTTP (CAR streams) or over libp2p (bitswap)
//
// Each run: start a fresh C, wait until it has B's index (timed apart), then
// `nix copy --from` C into a fresh store (timed); nginx runs alternate with
// C runs. Medians go to bench/p2p-results.md.
//
// Usage: node bench/p2p.mjs   (root; Nix single-user; nginx via apt-get if
// missing). Knobs: BENCH_RUNS [3], BENCH_BITSWAP [1] (0 skips the bitswap
// row), BENCH_KEEP=1 keeps bench/work/p2p. All traffic is to 127.0.0.1.
// BENCH_SMOKE=1: the tiny corpus, one run per side (see bench/lib/mode.mjs).
import { spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { SMOKE, resultsFile, workDir } from './lib/mode.mjs'
import { NIXFLAGS, corpusClosure, storeBase } from './lib/nix.mjs'
import { LOCAL_ENV as ENV, freePort, installIfMissing, logger, memoryOf, rmrf, runSync as run, sleep } from './lib/process.mjs'
import { CLI, SERVING, nginxConfig } from './lib/servers.mjs'
import { median } from './lib/stats.mjs'

const WORK = workDir('p2p')
const RUNS = Number(process.env.BENCH_RUNS || (SMOKE ? 1 : 3))
const BITSWAP = process.env.BENCH_BITSWAP !== '0'
const STORES = storeBase(WORK)
const log = logger('p2p')

const children = new Set()
process.on('exit', () => { for (const c of children) try { process.kill(-c.pid, 'SIGKILL') } catch {} })
/** Starts a background process; resolves with it once its log matches `ready`. */
async function startBg (name, cmd, args, ready, timeoutMs = 600_000) {
  const logFile = join(WORK, `${name}.log`)
  const fd = fs.openSync(logFile, 'w')
  const child = spawn(cmd, args, { env: ENV, stdio: ['ignore', fd, fd], detached: true })
  fs.closeSync(fd)
  children.add(child)
  child.on('exit', () => children.delete(child))
  const bg = { child, log: () => fs.readFileSync(logFile, 'utf8'), match: null }
  const start = Date.now()
  while (!(bg.match = ready.exec(bg.log()))) {
    if (child.exitCode !== null) throw new Error(`${name} exited:\n${bg.log().slice(-2000)}`)
    if (Date.now() - start > timeoutMs) throw new Error(`${name} not ready after ${timeoutMs / 1000} s:\n${bg.log().slice(-2000)}`)
    await sleep(50)
  }
  bg.readyAfter = (Date.now() - start) / 1000
  return bg
}
async function stopBg (bg) {
  if (bg.child.exitCode !== null) return
  const exited = new Promise(r => bg.child.once('exit', r))
  bg.child.kill('SIGTERM')
  await Promise.race([exited, sleep(10_000).then(() => process.kill(-bg.child.pid, 'SIGKILL'))])
}
/** CPU seconds (user + system) a process has used so far: fields 14 and 15 of /proc/PID/stat. */
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout) || 100
const cpuOf = pid => { const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' '); return (Number(f[11]) + Number(f[12])) / CLK_TCK }
const node = (name, args, ready) => startBg(name, process.execPath, [CLI, ...args], ready)

async function main () {
  rmrf(WORK); fs.mkdirSync(WORK, { recursive: true })
  installIfMissing('nginx', 'nginx-light')
  log('building the corpus (bench/corpus.sh)')
  const { top, closure } = corpusClosure()
  const bytes = closure.reduce((a, p) => a + p.narSize, 0)
  log(`corpus ${top}: ${closure.length} paths, ${(bytes / 2 ** 20).toFixed(1)} MiB of NAR`)

  // Reference: the same closure as a file:// cache behind nginx.
  const key = join(WORK, 'ref')
  run('nix-store', ['--generate-binary-cache-key', 'bench-ref-1', `${key}.secret`, `${key}.public`])
  const refPub = fs.readFileSync(`${key}.public`, 'utf8').trim()
  const fileCache = join(WORK, 'filecache')
  run('nix', ['copy', ...NIXFLAGS, '--to', `file://${fileCache}?compression=none&secret-key=${key}.secret`, top])
  const nginxPort = await freePort()
  const nginxPrefix = join(WORK, 'nginx')
  fs.mkdirSync(join(nginxPrefix, 'tmp'), { recursive: true })
  fs.writeFileSync(join(WORK, 'nginx.conf'), nginxConfig({ prefix: nginxPrefix, port: nginxPort, root: fileCache }))
  const nginx = spawn('nginx', ['-c', join(WORK, 'nginx.conf'), '-p', nginxPrefix + '/', '-e', join(nginxPrefix, 'error.log')], { detached: true, stdio: 'ignore' })
  children.add(nginx)
  const nginxUrl = `http://127.0.0.1:${nginxPort}`
  for (let i = 0; i < 100; i++) { try { if ((await fetch(`${nginxUrl}/nix-cache-info`)).ok) break } catch {} await sleep(100) }

  // B publishes and serves; M mirrors B; B stops.
  const repoB = join(WORK, 'repo-b')
  const pub = run(process.execPath, [CLI, 'publish', '-r', '--repo', repoB, top])
  log(`B published in ${pub.seconds.toFixed(1)} s`)
  const pubKey = fs.readFileSync(join(repoB, 'keys', 'cache.public'), 'utf8').trim()
  const P2P = ['--listen-p2p', '/ip4/127.0.0.1/tcp/0']
  const b = await node('builder', ['gateway', '--repo', repoB, '--listen', '127.0.0.1:0', ...P2P], SERVING)
  const bAddr = /p2p: listening on (\S+)/.exec(b.log())[1]
  const mirrorStart = Date.now()
  const m = await node('mirror', ['mirror', '--repo', join(WORK, 'repo-m'), '--listen', '127.0.0.1:0', ...P2P, '--follow', pubKey, '--http-gateway', /http:\S+/.exec(b.match[1])[0], '--peer', bAddr, '--follow-interval', '5'], SERVING)
  await startBgWait(m, /pinned root/)
  const mirrorSeconds = (Date.now() - mirrorStart) / 1000
  log(`M pinned the closure in ${mirrorSeconds.toFixed(1)} s`)
  await stopBg(b)
  const mUrl = m.match[1]
  const mAddr = /p2p: listening on (\S+)/.exec(m.log())[1]

  const copy = (url, pubk, label) => {
    const store = fs.mkdtempSync(join(STORES, 'nixipfs-p2p-'))
    try {
      const r = run('nix', ['copy', ...NIXFLAGS, '--from', url, '--to', store, top, '--option', 'trusted-public-keys', pubk,
        '--option', 'narinfo-cache-positive-ttl', '0', '--option', 'narinfo-cache-negative-ttl', '0'])
      const n = run('nix', ['path-info', ...NIXFLAGS, '--store', store, '-r', top]).stdout.trim().split('\n').length
      if (n !== closure.length) throw new Error(`${label}: the fresh store holds ${n} of ${closure.length} paths`)
      return r.seconds
    } finally { rmrf(store) }
  }
  const viaClient = async (transport, i) => {
    const repo = join(WORK, `repo-c-${transport}-${i}`)
    const args = transport === 'http' ? ['--offline', '--http-gateway', mUrl] : [...P2P, '--peer', mAddr]
    const c = await node(`client-${transport}-${i}`, ['gateway', '--repo', repo, '--listen', '127.0.0.1:0', '--follow', pubKey, ...args], SERVING)
    await startBgWait(c, /indexed root/)
    const cpu0 = { c: cpuOf(c.child.pid), m: cpuOf(m.child.pid) }
    const seconds = copy(c.match[1], pubKey, `C (${transport})`)
    cpu[transport].push({ c: cpuOf(c.child.pid) - cpu0.c, m: cpuOf(m.child.pid) - cpu0.m })
    const rss = memoryOf(c.child.pid).hwm
    await stopBg(c)
    rmrf(repo)
    return { seconds, rss }
  }

  copy(nginxUrl, refPub, 'nginx warm-up')
  const times = { nginx: [], http: [], bitswap: [] }
  const rss = { http: [], bitswap: [] }
  const cpu = { http: [], bitswap: [] }
  for (let i = 0; i < RUNS; i++) {
    const order = i % 2 === 0 ? ['nginx', 'http'] : ['http', 'nginx']
    if (BITSWAP) order.push('bitswap')
    for (const what of order) {
      if (what === 'nginx') times.nginx.push(copy(nginxUrl, refPub, 'nginx'))
      else { const r = await viaClient(what, i); times[what].push(r.seconds); rss[what].push(r.rss) }
      log(`run ${i} ${what}: ${times[what].at(-1).toFixed(2)} s`)
    }
  }
  await stopBg(m)
  nginx.kill()

  const ref = median(times.nginx)
  const row = (what, target) => {
    if (times[what].length === 0) return `| C ← M over ${what} | — | — | — | ${target} | skipped |`
    const t = median(times[what]); const ratio = t / ref
    return `| C ← M over ${what} | ${ref.toFixed(2)} s | ${t.toFixed(2)} s | ${ratio.toFixed(2)}× | ${target} | ${target === '—' ? 'n/a' : ratio <= 2 ? 'yes' : 'no'} |`
  }
  const md = `# Peer-to-peer substitution (bench/p2p.mjs)

Run ${new Date().toISOString()} on ${os.cpus().length} × ${os.cpus()[0]?.model}, Node ${process.version}, ${run('nix', ['--version']).stdout.trim()}.
Corpus: \`${top}\`, ${closure.length} paths, ${(bytes / 2 ** 20).toFixed(1)} MiB of NAR (bench/corpus.sh).
Each C run starts with an empty repo and fetches every block from M over loopback; B is stopped before. ${RUNS} runs per side, alternating; medians.

| what | nginx (file:// cache) | nixipfs | ratio | target | met |
| --- | --- | --- | --- | --- | --- |
${row('http', '≤ 2×')}
${row('bitswap', '—')}

- M pinned the whole closure from B in ${mirrorSeconds.toFixed(1)} s (HTTP CAR streams + verification + pack store writes).
- C's peak RSS (VmHWM): HTTP ${rss.http.map(x => x.toFixed(0)).join(', ')} MiB; bitswap ${rss.bitswap.map(x => x.toFixed(0)).join(', ') || '—'} MiB.
- CPU used during the copies (user + system, s): C ${cpu.http.map(x => x.c.toFixed(2)).join(', ')} and M ${cpu.http.map(x => x.m.toFixed(2)).join(', ')} over HTTP; C ${cpu.bitswap.map(x => x.c.toFixed(2)).join(', ') || '—'} and M ${cpu.bitswap.map(x => x.m.toFixed(2)).join(', ') || '—'} over bitswap. (Nix runs beside them; nginx needs almost none: sendfile.)
- Raw times (s): nginx ${times.nginx.map(x => x.toFixed(2)).join(', ')}; C over HTTP ${times.http.map(x => x.toFixed(2)).join(', ')}; C over bitswap ${times.bitswap.map(x => x.toFixed(2)).join(', ') || '—'}.
`
  fs.writeFileSync(resultsFile('p2p-results.md'), md)
  console.log(md)
  if (process.env.BENCH_KEEP !== '1') rmrf(WORK)
}
async function startBgWait (bg, re, timeoutMs = 900_000) {
  const start = Date.now()
  while (!re.test(bg.log())) {
    if (bg.child.exitCode !== null) throw new Error(`exited:\n${bg.log().slice(-2000)}`)
    if (Date.now() - start > timeoutMs) throw new Error(`no ${re} after ${timeoutMs / 1000} s:\n${bg.log().slice(-2000)}`)
    await sleep(50)
  }
}
main().catch(err => { console.error(err); process.exit(1) })
