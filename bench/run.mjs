#!/usr/bin/env node
// bench/run.mjs — side-by-side benchmark of nixipfs against plain Nix +
// nginx, on the corpus of bench/corpus.sh, in one run on one machine.
// Measures the "Performance targets" of docs/architecture.md as ratios:
//
//   publish       `nix copy --to file://…?compression=none` (reference) vs
//                 `nixipfs publish -r` into a fresh repo (cdc)    ≤ 1.2× time
//   substitution  `nix copy --from` nginx serving that file cache vs
//                 `nix copy --from` `nixipfs gateway`            ≤ 1.15× time
//   narinfo req/s wrk (keep-alive, 32 conns, 2 threads) round-robin over
//                 every narinfo of the closure, nginx vs gateway  ≥ 0.35×
//   NAR MB/s      curl of the largest NAR, nginx vs gateway       ≥ 0.5×
//   storage       the two-version pair (bench/corpus.sh --pairs) published
//                 into one repo, --chunker cdc vs --chunker fixed ≤ 0.65×
//   gateway RSS   VmHWM of the gateway after the load steps       < 256 MiB
//
// Usage: npm run bench   (= node bench/run.mjs); run as root (Nix 2.8
// single-user, nginx). Prints a markdown table and writes it, with the
// machine, the corpus and the exact commands, to bench/results.md.
// Exit status: 0 if every step ran (whether or not targets are met),
// 1 if a step failed (the table marks it FAILED and says why).
//
// Environment knobs (defaults in brackets):
//   BENCH_RUNS [3]          timed repetitions of publish and substitution,
//                           per side (alternating A B B A …; medians)
//   BENCH_WRK_SECONDS [10]  wrk duration of one measurement
//   BENCH_WRK_ROUNDS [2]    wrk measurements per server (after a 2 s warm-up
//                           each; alternating A B B A …; median req/s)
//   BENCH_NAR_FETCHES [5]   timed NAR downloads per server (after 1 warm-up)
//   BENCH_NGINX_WORKERS [1] nginx worker_processes (1 = one process, like
//                           the gateway's one event loop; "auto" = nproc)
//   BENCH_CLI [bin/nixipfs.mjs]  the nixipfs entry point (run with this node)
//   BENCH_KEEP=1            keep the caches and repos in bench/work/run
//   BENCH_STORE_DIR [/dev/shm if it has 4 GiB free, else bench/work/run]
//                           where the fresh stores of the substitution runs go
//
// BENCH_SMOKE=1 (bench/lib/mode.mjs): the tiny corpus of corpus.sh, one run
// of everything (wrk 1 s), no build; results under BENCH_OUT.
//
// Scratch lives in bench/work/run/ (gitignored; large dirs are deleted at
// the end unless BENCH_KEEP=1). All traffic is to 127.0.0.1. nginx, wrk and
// curl are installed with apt-get if missing.
import { spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { LARGE, ROOT, SMOKE, resultsFile, workDir } from './lib/mode.mjs'
import { NIXFLAGS, storeBase } from './lib/nix.mjs'
import { LOCAL_ENV, freePort, has, loadAverage, logger, memoryOf, rmrf, sleep, stripAnsi } from './lib/process.mjs'
import { CLI, SERVING, nginxConfig } from './lib/servers.mjs'
import { median } from './lib/stats.mjs'
import { wrkResult, writeRoundRobinScript } from './lib/wrk.mjs'

const BENCH = join(ROOT, 'bench')
const WORK = workDir('run')
const RESULTS = resultsFile('results.md')

const intEnv = (name, def) => {
  const v = process.env[name]
  if (v === undefined || v === '') return def
  const n = Number(v)
  if (!Number.isInteger(n) || n < 1) { console.error(`${name} must be a positive integer, got ${v}`); process.exit(2) }
  return n
}
const RUNS = intEnv('BENCH_RUNS', SMOKE ? 1 : 3)
const WRK_SECONDS = intEnv('BENCH_WRK_SECONDS', SMOKE ? 1 : 10)
const WRK_WARMUP_SECONDS = SMOKE ? 1 : 2
const WRK_ROUNDS = intEnv('BENCH_WRK_ROUNDS', SMOKE ? 1 : 2)
const NAR_FETCHES = intEnv('BENCH_NAR_FETCHES', SMOKE ? 1 : 5)
const NGINX_WORKERS = process.env.BENCH_NGINX_WORKERS || '1'
const KEEP = process.env.BENCH_KEEP === '1'
// Fresh stores for substitution go on tmpfs by default (see storeBase).
const STORE_BASE = storeBase(WORK)
const WRK_CONNS = 32
const WRK_THREADS = 2

// ------------------------------------------------------------------ helpers
const T0 = Date.now()
const log = logger('bench')
const q = (s) => /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${String(s).replace(/'/g, `'\\''`)}'`
const fmtCmd = (cmd, args) => [cmd, ...args].map(q).join(' ')
const shortCmd = (cmd, args) => cmd === process.execPath && args[0] === CLI ? `nixipfs ${args[1]}` : `${cmd.split('/').pop()} ${args[0] ?? ''}`.trim()
const MiB = (b) => b / 1048576
const tail = (s, n = 15) => stripAnsi(s).trim().split('\n').slice(-n).join('\n')

let INTERRUPTED = null
const FG = new Set() // running foreground children (killed on SIGINT)
/** Commands as run, by label (the last instance of each kind), for results.md. */
const COMMANDS = new Map()
const record = (label, cmd, args) => { if (label) COMMANDS.set(label, fmtCmd(cmd, args)) }

class StepError extends Error {}

/**
 * Runs a command to completion (async, so the event loop stays free).
 * Returns { code, signal, stdout, stderr, seconds }. With check (default) a
 * non-zero exit throws a StepError that quotes the command and its stderr.
 */
function run (cmd, args, { cwd = ROOT, env = LOCAL_ENV, timeoutMs = 300_000, label, check = true, input } = {}) {
  record(label, cmd, args)
  if (INTERRUPTED) return Promise.reject(new StepError(`interrupted by ${INTERRUPTED}`))
  return new Promise((resolveP, rejectP) => {
    const t = process.hrtime.bigint()
    let child
    try {
      child = spawn(cmd, args, { cwd, env, stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] })
    } catch (e) { rejectP(new StepError(`cannot start ${fmtCmd(cmd, args)}: ${e.message}`)); return }
    FG.add(child)
    const out = []; const err = []
    let errLen = 0
    child.stdout.on('data', d => out.push(d))
    child.stderr.on('data', d => { err.push(d); errLen += d.length; while (errLen > 1 << 20 && err.length > 1) errLen -= err.shift().length })
    if (input !== undefined) child.stdin.end(input)
    let timedOut = false
    const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL') }, timeoutMs)
    child.on('error', e => { FG.delete(child); clearTimeout(timer); rejectP(new StepError(`cannot run ${fmtCmd(cmd, args)}: ${e.message}`)) })
    child.on('close', (code, signal) => {
      FG.delete(child)
      clearTimeout(timer)
      const seconds = Number(process.hrtime.bigint() - t) / 1e9
      const r = { code, signal, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString(), seconds }
      if (check && (code !== 0 || timedOut)) {
        const why = timedOut ? `timed out after ${timeoutMs / 1000} s` : signal ? `killed by ${signal}` : `exit status ${code}`
        const lines = stripAnsi(r.stderr + '\n' + r.stdout).split('\n').map(l => l.trim()).filter(Boolean)
        const gist = lines.findLast(l => /error|ERR_|✖|failed/i.test(l)) ?? lines.at(-1) ?? ''
        rejectP(new StepError(`${shortCmd(cmd, args)} failed (${why}): ${gist}\ncommand: ${fmtCmd(cmd, args)}\n${tail(r.stderr + '\n' + r.stdout)}`))
      } else resolveP(r)
    })
  })
}

const sync = () => spawnSync('sync')
const packBytes = (repo) => {
  const dir = join(repo, 'packs')
  if (!fs.existsSync(dir)) throw new StepError(`${dir} does not exist (did publish store anything?)`)
  let total = 0; let files = 0
  for (const f of fs.readdirSync(dir)) if (f.endsWith('.pack')) { total += fs.statSync(join(dir, f)).size; files++ }
  if (files === 0) throw new StepError(`no *.pack files in ${dir}`)
  return total
}
async function httpGet (url) {
  const r = await fetch(url, { signal: AbortSignal.timeout(10_000) })
  return { status: r.status, text: await r.text() }
}

// ------------------------------------------------- background servers
const BG = new Set() // { name, child, exited }
function startBg (name, cmd, args, logFile, label) {
  record(label, cmd, args)
  const fd = fs.openSync(logFile, 'w')
  // detached: a process group of its own, so nginx's workers die with it
  const child = spawn(cmd, args, { cwd: ROOT, env: LOCAL_ENV, stdio: ['ignore', fd, fd], detached: true })
  fs.closeSync(fd)
  const bg = { name, child, logFile, exit: null }
  bg.exited = new Promise(r => child.on('exit', (code, signal) => {
    bg.exit = { code, signal }; BG.delete(bg)
    if (!bg.stopping && !INTERRUPTED) {
      note(`${name} (pid ${child.pid}) exited unexpectedly (${signal ?? 'status ' + code}), not stopped by this harness${signal === 'SIGKILL' ? ' (SIGKILL: the kernel OOM killer or another process on the machine)' : ''}; its log ends:\n${tail(readLog(bg), 5)}`)
    }
    r(bg.exit)
  }))
  child.on('error', e => { bg.exit = { error: e.message }; BG.delete(bg) })
  BG.add(bg)
  return bg
}
const readLog = (bg) => { try { return stripAnsi(fs.readFileSync(bg.logFile, 'utf8')) } catch { return '' } }
async function stopBg (bg, signal = 'SIGTERM', graceMs = 10_000) {
  if (bg.exit) return bg.exit
  bg.stopping = true
  bg.child.kill(signal)
  const r = await Promise.race([bg.exited, sleep(graceMs).then(() => null)])
  if (r) return r
  log(`${bg.name} did not stop within ${graceMs / 1000} s of ${signal}; sending SIGKILL`)
  killGroup(bg.child)
  await bg.exited
  return { ...bg.exit, forced: true }
}
function killGroup (child) { try { process.kill(-child.pid, 'SIGKILL') } catch { try { child.kill('SIGKILL') } catch {} } }
function killAllSync () {
  for (const c of FG) { try { c.kill('SIGKILL') } catch {} }
  for (const bg of BG) { bg.stopping = true; killGroup(bg.child) }
}
process.on('exit', killAllSync)
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    if (INTERRUPTED) return
    INTERRUPTED = sig
    log(`got ${sig}; stopping servers and commands`); killAllSync()
    note(`interrupted by ${sig}: the results are partial`)
    // let the killed children go before their files are removed
    setTimeout(() => {
      try { if (ctx.storeBase && ctx.storeBase !== WORK) rmrf(ctx.storeBase) } catch (e) { log(`could not remove ${ctx.storeBase}: ${e.message}`) }
      try { report() } catch (e) { log(`could not write the report: ${e.message}`) }
      process.exit(130)
    }, 500)
  })
}

// ------------------------------------------------------------ results
const RESULT = {} // metric key -> { ref, ours, ratio, ok, error, detail }
const RAW = []    // lines for the raw-measurements section
const NOTES = []  // anything that failed or looked wrong
const note = (s) => { NOTES.push(s); log('NOTE: ' + s.split('\n')[0]) }
/** Runs one step; a failure is logged, noted, and (with key) marks that metric FAILED. */
async function step (name, fn, key) {
  if (INTERRUPTED) { if (key) RESULT[key] ??= { error: `interrupted by ${INTERRUPTED}` }; return undefined }
  log(`== ${name}`)
  try { return await fn() } catch (e) {
    if (INTERRUPTED) { if (key) RESULT[key] ??= { error: `interrupted by ${INTERRUPTED}` }; return undefined }
    const msg = e instanceof StepError ? e.message : (e?.stack ?? String(e))
    log(`step "${name}" FAILED: ${msg}`)
    note(`step "${name}" failed: ${msg}`)
    if (key) RESULT[key] = { error: msg }
    return undefined
  }
}
const fail = (key, why) => { RESULT[key] ??= { error: INTERRUPTED ? `interrupted by ${INTERRUPTED}` : why } }

// ================================================================== main
const ctx = {}
async function main () {
  rmrf(WORK); fs.mkdirSync(WORK, { recursive: true })
  ctx.loadStart = loadAverage()

  // ---- 0. tools and build
  await step('tools', async () => {
    const missing = []
    if (!has('nginx') && !fs.existsSync('/usr/sbin/nginx')) missing.push('nginx-light')
    if (!has('wrk')) missing.push('wrk')
    if (!has('curl')) missing.push('curl')
    if (missing.length) {
      log(`installing ${missing.join(' ')} with apt-get`)
      const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
      const r = await run('apt-get', ['install', '-y', ...missing], { env, check: false, timeoutMs: 600_000 })
      if (r.code !== 0) {
        await run('apt-get', ['update'], { env, timeoutMs: 600_000 })
        await run('apt-get', ['install', '-y', ...missing], { env, timeoutMs: 600_000 })
      }
    }
    ctx.nginx = has('nginx') ? 'nginx' : '/usr/sbin/nginx'
  })
  ctx.machine = machineInfo()
  ctx.built = SMOKE || await step('build (npm run build)', async () => {
    await run('npm', ['run', 'build'], { env: process.env, label: 'build', timeoutMs: 300_000 })
    return true
  })
  if (!ctx.built) note('`npm run build` failed: the nixipfs steps below use whatever dist/ holds (possibly stale or missing)')

  // ---- 1. corpus
  const corpusOk = await step('corpus (bench/corpus.sh)', async () => {
    const sh = join(BENCH, 'corpus.sh')
    const r1 = await run(sh, [], { env: process.env, label: 'corpus', timeoutMs: 600_000 })
    ctx.top = r1.stdout.trim().split('\n').pop()
    const r2 = await run(sh, ['--pairs'], { env: process.env, label: 'corpus --pairs', timeoutMs: 600_000 })
    ;[ctx.old, ctx.new] = r2.stdout.trim().split('\n')
    if (!ctx.top?.startsWith('/nix/store/') || !ctx.old?.startsWith('/nix/store/') || !ctx.new?.startsWith('/nix/store/')) {
      throw new StepError(`unexpected output from bench/corpus.sh: ${JSON.stringify(r1.stdout)} / ${JSON.stringify(r2.stdout)}`)
    }
    const info = await run('nix', ['path-info', ...NIXFLAGS, '--json', '-r', ctx.top], { label: 'closure' })
    ctx.closure = JSON.parse(info.stdout).map(p => ({ path: p.path, narSize: p.narSize }))
    ctx.closureBytes = ctx.closure.reduce((a, p) => a + p.narSize, 0)
    const pinfo = JSON.parse((await run('nix', ['path-info', ...NIXFLAGS, '--json', ctx.old, ctx.new])).stdout)
    ctx.pairNar = Object.fromEntries(pinfo.map(p => [p.path, p.narSize]))
    log(`TOP ${ctx.top}: ${ctx.closure.length} paths, ${MiB(ctx.closureBytes).toFixed(1)} MiB of NAR`)
    return true
  })
  if (!corpusOk) {
    for (const k of ['publish', 'subst', 'narinfo', 'nar', 'storage', 'rss']) fail(k, 'no corpus (bench/corpus.sh failed)')
    return
  }
  const N = ctx.closure.length

  // ---- 2. publish: nix copy --to file:// vs nixipfs publish -r
  await step('publish', async () => {
    const key = join(WORK, 'ref-key')
    await run('nix-store', ['--generate-binary-cache-key', 'nixipfs-bench-ref-1', `${key}.secret`, `${key}.public`], { label: 'reference key' })
    ctx.refPub = fs.readFileSync(`${key}.public`, 'utf8').trim()
    const times = { nix: [], ours: [] }
    const errors = { nix: [], ours: [] }
    const doNix = async (i) => {
      const dir = join(WORK, `filecache-${i}`)
      rmrf(dir); sync()
      const r = await run('nix', ['copy', ...NIXFLAGS, '--to', `file://${dir}?compression=none&secret-key=${key}.secret`, ctx.top], { label: 'publish: nix copy --to file://' })
      const n = fs.readdirSync(dir).filter(f => f.endsWith('.narinfo')).length
      if (n !== N) throw new StepError(`nix copy --to file:// wrote ${n} narinfos, expected ${N}`)
      times.nix.push(r.seconds); RAW.push(`publish nix copy --to file:// run ${i}: ${r.seconds.toFixed(2)} s`)
      if (ctx.fileCache) rmrf(ctx.fileCache)
      ctx.fileCache = dir
    }
    const doOurs = async (i) => {
      const repo = join(WORK, `repo-${i}`)
      rmrf(repo); sync()
      const r = await run(process.execPath, [CLI, 'publish', '-r', '--repo', repo, ctx.top], { label: 'publish: nixipfs publish -r' })
      const out = stripAnsi(r.stdout + r.stderr)
      const m = /published (\d+) path\(s\)/.exec(out)
      if (!m) throw new StepError(`nixipfs publish printed no "published N path(s)":\n${tail(out)}`)
      if (Number(m[1]) !== N) throw new StepError(`nixipfs publish published ${m[1]} paths, the closure has ${N}:\n${tail(out)}`)
      const bytes = packBytes(repo)
      times.ours.push(r.seconds)
      RAW.push(`publish nixipfs publish -r run ${i}: ${r.seconds.toFixed(2)} s (packs ${MiB(bytes).toFixed(1)} MiB for ${MiB(ctx.closureBytes).toFixed(1)} MiB of NAR)`)
      if (ctx.repo) rmrf(ctx.repo)
      ctx.repo = repo
      ctx.repoPackBytes = bytes
    }
    const wrap = (who, f) => async (i) => {
      try { await f(i) } catch (e) { errors[who].push(e.message); log(`publish run ${i} (${who}) failed: ${e.message}`) }
    }
    const A = wrap('nix', doNix); const B = wrap('ours', doOurs)
    for (let i = 0; i < RUNS; i++) {
      if (i % 2 === 0) { await A(i); await B(i) } else { await B(i); await A(i) }
    }
    for (const who of ['nix', 'ours']) {
      if (errors[who].length) note(`publish (${who === 'nix' ? 'nix copy --to file://' : 'nixipfs publish -r'}) failed in ${errors[who].length} of ${RUNS} runs: ${errors[who][0]}`)
    }
    if (times.nix.length === 0 || times.ours.length === 0) {
      fail('publish', errors.nix[0] ?? errors.ours[0]); return
    }
    const ref = median(times.nix); const ours = median(times.ours)
    RESULT.publish = { ref, ours, ratio: ours / ref, runs: `${times.nix.length}+${times.ours.length}` }
    if (ctx.repo) ctx.repoPub = fs.readFileSync(join(ctx.repo, 'keys', 'cache.public'), 'utf8').trim()
  }, 'publish')

  // ---- 3. servers
  const servers = {}
  await step('start nginx', async () => {
    if (!ctx.fileCache) throw new StepError('no file:// cache to serve (the nix copy --to file:// runs failed)')
    const prefix = join(WORK, 'nginx')
    fs.mkdirSync(join(prefix, 'tmp'), { recursive: true })
    const port = await freePort()
    const conf = join(prefix, 'nginx.conf')
    fs.writeFileSync(conf, nginxConfig({ prefix, port, root: ctx.fileCache, workers: NGINX_WORKERS }))
    ctx.nginxConf = conf
    const base = ['-c', conf, '-p', prefix + '/', '-e', join(prefix, 'error.log')]
    await run(ctx.nginx, [...base, '-t', '-q'], { label: 'nginx -t' })
    const bg = startBg('nginx', ctx.nginx, base, join(prefix, 'stdout.log'), 'nginx')
    const url = `http://127.0.0.1:${port}`
    for (let t = 0; ; t++) {
      if (bg.exit) throw new StepError(`nginx exited (${JSON.stringify(bg.exit)}):\n${readLog(bg)}\n${fs.readFileSync(join(prefix, 'error.log'), 'utf8')}`)
      try { if ((await httpGet(`${url}/nix-cache-info`)).status === 200) break } catch {}
      if (t > 100) throw new StepError('nginx did not answer /nix-cache-info within 10 s')
      await sleep(100)
    }
    servers.nginx = { url, bg, key: ctx.refPub, name: 'nginx' }
    log(`nginx (worker_processes ${NGINX_WORKERS}) serving ${ctx.fileCache} at ${url}`)
  })
  /** Starts a gateway on the published repo (servers.gateway), resolving once it serves; again on the port of the last. */
  const startGateway = async () => {
    const listen = servers.gateway === undefined ? '127.0.0.1:0' : new URL(servers.gateway.url).host
    const bg = startBg('gateway', process.execPath, [CLI, 'gateway', '--repo', ctx.repo, '--listen', listen, '--offline'], join(WORK, 'gateway.log'), 'gateway')
    let url
    for (let t = 0; ; t++) {
      const m = SERVING.exec(readLog(bg))
      if (m) { url = m[1]; break }
      if (bg.exit) throw new StepError(`the gateway exited before it was ready (${JSON.stringify(bg.exit)}):\n${tail(readLog(bg))}`)
      if (t > 300) throw new StepError(`the gateway printed no "serving … at http://…" line within 30 s:\n${tail(readLog(bg))}`)
      await sleep(100)
    }
    servers.gateway = { ...servers.gateway, url, bg, key: ctx.repoPub, name: 'gateway' }
    try { RAW.push(`gateway pid ${bg.child.pid} right after start: VmRSS ${memoryOf(bg.child.pid).rss.toFixed(1)} MiB`) } catch {}
    log(`gateway pid ${bg.child.pid} serving ${ctx.repo} at ${url}`)
  }
  await step('start nixipfs gateway', async () => {
    if (!ctx.repo) throw new StepError('no published repo to serve (the nixipfs publish runs failed)')
    await startGateway()
  })

  // Both must serve every narinfo of the closure (and agree on the paths).
  ctx.narUrl = {}
  for (const s of Object.values(servers)) {
    await step(`check ${s.name} serves the closure`, async () => {
      for (const p of ctx.closure) {
        const h = p.path.slice('/nix/store/'.length, '/nix/store/'.length + 32)
        const r = await httpGet(`${s.url}/${h}.narinfo`)
        if (r.status !== 200) throw new StepError(`GET ${s.url}/${h}.narinfo → ${r.status}: ${r.text.slice(0, 300)}`)
        if (!r.text.includes(`StorePath: ${p.path}\n`)) throw new StepError(`GET ${s.url}/${h}.narinfo does not name ${p.path}:\n${r.text.slice(0, 500)}`)
        const m = /^URL: (\S+)$/m.exec(r.text)
        if (!m) throw new StepError(`${s.url}/${h}.narinfo has no URL line`)
        ;(ctx.narUrl[s.name] ??= {})[p.path] = `${s.url}/${m[1]}`
        const size = /^NarSize: (\d+)$/m.exec(r.text)?.[1]
        if (Number(size) !== p.narSize) note(`${s.name}: ${h}.narinfo says NarSize ${size}, Nix says ${p.narSize}`)
      }
      s.checked = true
    })
  }
  const both = () => servers.nginx?.checked && servers.gateway?.checked
  const whyNot = () => !servers.nginx ? 'nginx is not running (see notes)' : !servers.gateway ? 'the gateway is not running (see notes)' : 'a server does not serve the closure (see notes)'

  // ---- 4. substitution
  if (!both()) fail('subst', whyNot())
  else {
    await step('substitution (nix copy --from)', async () => {
      ctx.storeBase = STORE_BASE === WORK ? WORK : fs.mkdtempSync(join(STORE_BASE, 'nixipfs-bench-'))
      const times = { nginx: [], gateway: [] }
      const once = async (s, i) => {
        const store = join(ctx.storeBase, `store-${s.name}-${i}`)
        rmrf(store); sync()
        const r = await run('nix', ['copy', ...NIXFLAGS, '--from', s.url, '--to', store, ctx.top,
          '--option', 'trusted-public-keys', s.key,
          '--option', 'narinfo-cache-positive-ttl', '0', '--option', 'narinfo-cache-negative-ttl', '0'],
        { label: `substitution: nix copy --from ${s.name}` })
        const got = await run('nix', ['path-info', ...NIXFLAGS, '--store', store, '-r', ctx.top], { label: 'substitution check' })
        const n = got.stdout.trim().split('\n').filter(Boolean).length
        rmrf(store)
        if (n !== N) throw new StepError(`after nix copy --from ${s.name}, the fresh store holds ${n} of ${N} closure paths`)
        if (typeof i === 'number') times[s.name].push(r.seconds)
        RAW.push(`substitution from ${s.name} run ${i}: ${r.seconds.toFixed(2)} s`)
      }
      // One untimed warm-up each (the first nix copy after the publish step is slow whichever server). Each timed
      // gateway run is in a gateway process of its own, after an untimed copy of its own (its first reads check
      // NarHashes): on the VMs this was written on, one gateway process used 2–3× the CPU of another for the same
      // copies, for its whole life, so runs in one process measure one draw.
      await once(servers.nginx, 'warmup')
      const freshGateway = async (i) => {
        await stopBg(servers.gateway.bg)
        await startGateway()
        await once(servers.gateway, `warmup-${i}`)
      }
      for (let i = 0; i < RUNS; i++) {
        if (i % 2 === 0) await once(servers.nginx, i)
        await freshGateway(i)
        await once(servers.gateway, i)
        if (i % 2 === 1) await once(servers.nginx, i)
      }
      RAW.push('(the substitution runs above marked warmup are not counted; each timed gateway run is in a fresh gateway process)')
      const ref = median(times.nginx); const ours = median(times.gateway)
      RESULT.subst = { ref, ours, ratio: ours / ref }
    }, 'subst')
  }

  // ---- 5. narinfo requests/s with wrk
  if (!both()) fail('narinfo', whyNot())
  else {
    await step('narinfo req/s (wrk)', async () => {
      const list = join(WORK, 'narinfo-paths.txt')
      fs.writeFileSync(list, ctx.closure.map(p => `/${p.path.slice(11, 43)}.narinfo`).join('\n') + '\n')
      const lua = join(WORK, 'narinfo-rr.lua')
      writeRoundRobinScript(lua)
      const env = { ...LOCAL_ENV, WRK_PATHS: list }
      const wrk = async (s, seconds, label) => {
        const r = await run('wrk', ['-t', String(WRK_THREADS), '-c', String(WRK_CONNS), '-d', `${seconds}s`, '--latency', '-s', lua, s.url], { env, label, timeoutMs: (seconds + 30) * 1000 })
        const v = wrkResult(r.stdout)
        if (!v) throw new StepError(`wrk printed no RESULT line:\n${tail(r.stdout + r.stderr)}`)
        v.rps = v.requests / (v.duration_us / 1e6)
        return v
      }
      const rps = { nginx: [], gateway: [] }
      for (const s of [servers.nginx, servers.gateway]) await wrk(s, WRK_WARMUP_SECONDS) // warm-up, not counted
      const rounds = []
      for (let i = 0; i < WRK_ROUNDS; i++) rounds.push(...(i % 2 === 0 ? [servers.nginx, servers.gateway] : [servers.gateway, servers.nginx]))
      for (const s of rounds) {
        const v = await wrk(s, WRK_SECONDS, `narinfo req/s: wrk against ${s.name}`)
        rps[s.name].push(v.rps)
        RAW.push(`wrk ${s.name} (load average before: ${loadAverage()}): ${v.requests} requests in ${(v.duration_us / 1e6).toFixed(2)} s = ${v.rps.toFixed(0)} req/s, p50 ${(v.p50_us / 1000).toFixed(2)} ms, p99 ${(v.p99_us / 1000).toFixed(2)} ms, errors status=${v.status_errors} connect=${v.connect} read=${v.read} write=${v.write} timeout=${v.timeout}`)
        const errs = v.status_errors + v.connect + v.read + v.write + v.timeout
        if (v.requests === 0) throw new StepError(`wrk against ${s.name} completed no request`)
        const what = `${errs} errors (HTTP status > 399: ${v.status_errors}, connect ${v.connect}, read ${v.read}, write ${v.write}, timeout ${v.timeout}) in ${v.requests} requests`
        if (errs > v.requests / 100) throw new StepError(`wrk against ${s.name}: ${what}; the req/s would be meaningless`)
        if (errs > 0) note(`wrk against ${s.name}: ${what}`)
      }
      const ref = median(rps.nginx); const ours = median(rps.gateway)
      RESULT.narinfo = { ref, ours, ratio: ours / ref }
    }, 'narinfo')
  }

  // ---- 6. NAR streaming
  if (!both()) fail('nar', whyNot())
  else {
    await step('NAR streaming (curl)', async () => {
      const big = ctx.closure.reduce((a, b) => (b.narSize > a.narSize ? b : a))
      ctx.bigNar = big
      const mbps = { nginx: [], gateway: [] }
      const once = async (s, counted) => {
        const url = ctx.narUrl[s.name][big.path]
        const r = await run('curl', ['-sS', '--noproxy', '*', '-o', '/dev/null', '-w', '%{http_code} %{size_download} %{time_total}', url],
          { label: `NAR streaming: curl from ${s.name}`, timeoutMs: 120_000, check: false })
        const [code, size, secs] = r.stdout.trim().split(' ').map(Number)
        if (r.code !== 0 || code !== 200 || size !== big.narSize) {
          throw new StepError(`curl ${url}: exit ${r.code}, HTTP ${code}, ${size} of ${big.narSize} bytes in ${secs} s: ${tail(r.stderr, 3)}`)
        }
        if (counted) { mbps[s.name].push(size / secs / 1e6); RAW.push(`NAR ${s.name}: ${size} bytes in ${secs.toFixed(3)} s = ${(size / secs / 1e6).toFixed(0)} MB/s`) }
      }
      await once(servers.nginx, false); await once(servers.gateway, false)
      for (let i = 0; i < NAR_FETCHES; i++) {
        const order = i % 2 === 0 ? [servers.nginx, servers.gateway] : [servers.gateway, servers.nginx]
        for (const s of order) await once(s, true)
      }
      const ref = median(mbps.nginx); const ours = median(mbps.gateway)
      RESULT.nar = { ref, ours, ratio: ours / ref }
    }, 'nar')
  }

  // ---- 7. gateway peak RSS, then stop the servers
  if (!servers.gateway) fail('rss', 'the gateway is not running (see notes)')
  else {
    await step('gateway peak RSS', async () => {
      const pid = servers.gateway.bg.child.pid
      if (servers.gateway.bg.exit) throw new StepError(`the gateway had exited (${JSON.stringify(servers.gateway.bg.exit)}) before the end of the load steps:\n${tail(readLog(servers.gateway.bg))}`)
      const { rss, hwm } = memoryOf(pid)
      RESULT.rss = { ours: hwm }
      RAW.push(`gateway pid ${pid}: VmHWM ${hwm.toFixed(1)} MiB, VmRSS ${rss.toFixed(1)} MiB at the end of the load steps`)
    }, 'rss')
  }
  await stopServers(servers)

  // ---- 8. storage of the two-version pair
  await step('storage of the two-version pair', async () => {
    const bytes = {}
    for (const chunker of ['cdc', 'fixed']) {
      const repo = join(WORK, `pair-${chunker}`)
      rmrf(repo)
      const after = []
      for (const p of [ctx.old, ctx.new]) {
        const r = await run(process.execPath, [CLI, 'publish', '--repo', repo, '--chunker', chunker, p], { label: `storage: nixipfs publish --chunker ${chunker}` })
        const out = stripAnsi(r.stdout + r.stderr)
        if (!/published 1 path\(s\)/.test(out)) throw new StepError(`nixipfs publish --chunker ${chunker} ${p} did not print "published 1 path(s)":\n${tail(out)}`)
        after.push(packBytes(repo))
        RAW.push(`storage --chunker ${chunker}: publish ${p.slice(44)} took ${r.seconds.toFixed(2)} s; packs now ${after.at(-1)} bytes (${MiB(after.at(-1)).toFixed(1)} MiB)`)
      }
      bytes[chunker] = after[1]
      RAW.push(`storage --chunker ${chunker}: second version added ${MiB(after[1] - after[0]).toFixed(1)} MiB (${(100 * (after[1] - after[0]) / ctx.pairNar[ctx.new]).toFixed(1)}% of its NAR)`)
      if (!KEEP) rmrf(repo)
    }
    const nars = ctx.pairNar[ctx.old] + ctx.pairNar[ctx.new]
    RAW.push(`storage: NAR sizes ${ctx.pairNar[ctx.old]} + ${ctx.pairNar[ctx.new]} = ${nars} bytes (${MiB(nars).toFixed(1)} MiB)`)
    RESULT.storage = { ref: MiB(bytes.fixed), ours: MiB(bytes.cdc), ratio: bytes.cdc / bytes.fixed, narSum: MiB(nars) }
  }, 'storage')
}

async function stopServers (servers) {
  for (const s of Object.values(servers)) {
    if (!s?.bg) continue
    const wasDead = s.bg.exit
    const r = await stopBg(s.bg, s.name === 'nginx' ? 'SIGQUIT' : 'SIGTERM')
    if (wasDead || INTERRUPTED) continue
    if (r.forced) note(`${s.name} did not exit within 10 s of ${s.name === 'nginx' ? 'SIGQUIT' : 'SIGTERM'} and was killed`)
    else if (r.code !== 0 && s.name === 'gateway') note(`the gateway exited with ${r.signal ?? 'status ' + r.code} on SIGTERM:\n${tail(readLog(s.bg))}`)
  }
  if (servers.gateway) {
    const glog = readLog(servers.gateway.bg)
    const odd = glog.split('\n').filter(l => /error|warn|✖|fail/i.test(l))
    if (odd.length) note(`the gateway log (${servers.gateway.bg.logFile}) has ${odd.length} error/warning line(s), e.g.:\n${odd.slice(0, 5).join('\n')}`)
  }
}

function machineInfo () {
  // (wrk -v exits 1 after printing its version)
  const out = (cmd, args) => { const r = spawnSync(cmd, args, { encoding: 'utf8' }); return r.error ? `(${cmd} unavailable)` : ((r.stdout || '') + (r.stderr || '')).trim().split('\n')[0] }
  const cpu = (/model name\s*:\s*(.*)/.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '?').trim()
  const git = spawnSync('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).stdout.trim()
  const dirty = spawnSync('git', ['-C', ROOT, 'status', '--porcelain', '--', 'src', 'bin', 'package.json'], { encoding: 'utf8' }).stdout.trim() ? ' + uncommitted changes in src/bin/package.json' : ''
  return {
    nproc: os.availableParallelism?.() ?? os.cpus().length,
    cpu,
    mem: `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`,
    kernel: os.release(),
    node: process.version,
    nix: out('nix', ['--version']),
    nginx: out(ctx.nginx ?? 'nginx', ['-v']),
    wrk: out('wrk', ['-v']).replace(/ Copyright.*/, ''),
    curl: out('curl', ['--version']),
    commit: `${git || '?'}${dirty}`
  }
}

// ================================================================ report
const ROWS = [
  { key: 'publish', metric: 'publish of the closure (s)', ref: 'nix copy --to file://…?compression=none', ratio: 'nixipfs/nix', target: '≤ 1.2', ok: r => r.ratio <= 1.2, fmt: x => x.toFixed(2) },
  { key: 'subst', metric: 'substitution `nix copy --from` of the closure (s)', ref: 'nginx, file:// cache', ratio: 'gateway/nginx', target: '≤ 1.15', ok: r => r.ratio <= 1.15, fmt: x => x.toFixed(2) },
  { key: 'narinfo', metric: 'narinfo req/s (wrk, 32 conns, 2 threads)', ref: 'nginx, same files', ratio: 'gateway/nginx', target: '≥ 0.35', ok: r => r.ratio >= 0.35, fmt: x => x.toFixed(0) },
  { key: 'nar', metric: 'NAR streaming (MB/s, largest NAR)', ref: 'nginx', ratio: 'gateway/nginx', target: '≥ 0.5', ok: r => r.ratio >= 0.5, fmt: x => x.toFixed(0) },
  // The target is the Inkscape pair's: the large corpus's LibreOffice pair changes throughout (bench/corpus.sh), so it has none.
  LARGE
    ? { key: 'storage', metric: 'storage of the two-version pair (MiB of packs)', ref: '--chunker fixed (256 KiB)', ratio: 'cdc/fixed', target: '— (none for this pair)', ok: () => undefined, fmt: x => x.toFixed(1) }
    : { key: 'storage', metric: 'storage of the two-version pair (MiB of packs)', ref: '--chunker fixed (256 KiB)', ratio: 'cdc/fixed', target: '≤ 0.65', ok: r => r.ratio <= 0.65, fmt: x => x.toFixed(1) },
  { key: 'rss', metric: 'gateway peak RSS after load (VmHWM, MiB)', ref: '—', ratio: '—', target: '< 256 MiB', ok: r => r.ours < 256, fmt: x => x.toFixed(1) },
  { key: 'lookup1m', metric: 'narinfo lookup in a 1,000,000-entry index', ref: '—', ratio: '—', target: '≤ 4 block reads, p99 < 5 ms', na: 'not measured by this harness' }
]

function table () {
  const lines = [
    '| metric | reference | reference value | nixipfs value | ratio | target | met |',
    '| --- | --- | ---: | ---: | ---: | --- | --- |'
  ]
  for (const row of ROWS) {
    const r = RESULT[row.key]
    if (row.na) { lines.push(`| ${row.metric} | ${row.ref} | — | — | — | ${row.target} | n/a (${row.na}) |`); continue }
    if (!r || r.error) { lines.push(`| ${row.metric} | ${row.ref} | — | — | — | ${row.target} | **FAILED**: ${(r?.error ?? 'not run').split('\n')[0].replace(/\|/g, '\\|').slice(0, 160)} |`); continue }
    const ok = row.ok(r)
    const met = ok === undefined ? '—' : ok ? 'yes' : '**no**'
    const ratio = r.ratio === undefined ? '—' : `${r.ratio.toFixed(3)} (${row.ratio})`
    lines.push(`| ${row.metric} | ${row.ref} | ${r.ref === undefined ? '—' : row.fmt(r.ref)} | ${row.fmt(r.ours)} | ${ratio} | ${row.target} | ${met} |`)
  }
  return lines.join('\n')
}

function report () {
  const m = ctx.machine ?? {}
  const tbl = table()
  const when = new Date().toISOString()
  const md = [
    '# nixipfs benchmark results',
    '',
    `Written by \`bench/run.mjs\` (\`npm run bench\`) at ${when}; the run took ${((Date.now() - T0) / 1000).toFixed(0)} s.`,
    'Every row is measured in this one run, side by side on this machine; the targets are the "Performance targets" of `docs/architecture.md`.',
    '',
    tbl,
    '',
    RESULT.storage?.narSum ? `Storage: the two NARs of the pair are ${RESULT.storage.narSum.toFixed(1)} MiB together (cdc keeps ${(100 * RESULT.storage.ours / RESULT.storage.narSum).toFixed(1)}% of that, fixed ${(100 * RESULT.storage.ref / RESULT.storage.narSum).toFixed(1)}%).` : '',
    ctx.repoPackBytes ? `The published corpus repo holds ${MiB(ctx.repoPackBytes).toFixed(1)} MiB of packs for ${MiB(ctx.closureBytes).toFixed(1)} MiB of NAR.` : '',
    '',
    '## Machine',
    '',
    `- nproc ${m.nproc}; CPU ${m.cpu}; RAM ${m.mem}; kernel ${m.kernel}`,
    `- node ${m.node}; ${m.nix}; ${m.nginx}; ${m.wrk}; ${m.curl}`,
    `- nixipfs at commit ${m.commit}; commands run in ${ROOT}`,
    `- load average at start: ${ctx.loadStart}; at end: ${loadAverage()} (other processes on the machine skew absolute numbers; the ratios are side by side)`,
    `- settings: BENCH_RUNS=${RUNS} (publish and substitution: per side, alternating A B B A…, medians), wrk ${WRK_ROUNDS} × ${WRK_SECONDS} s per server after a ${WRK_WARMUP_SECONDS} s warm-up each (alternating, median req/s), ${NAR_FETCHES} NAR downloads per server after 1 warm-up (median MB/s, MB = 10^6 bytes), nginx worker_processes ${NGINX_WORKERS}, sendfile on, keep-alive on; \`sync\` before each timed publish/substitution run; Nix narinfo disk cache TTLs set to 0 for substitution; fresh substitution stores under ${ctx.storeBase ?? STORE_BASE} (tmpfs unless BENCH_STORE_DIR says otherwise)`,
    '',
    '## Corpus',
    '',
    ctx.top ? `Top path \`${ctx.top}\`, closure of ${ctx.closure.length} paths, ${MiB(ctx.closureBytes).toFixed(1)} MiB of NAR:` : 'bench/corpus.sh failed: no corpus.',
    '',
    ...(ctx.closure ?? []).slice().sort((a, b) => b.narSize - a.narSize).map(p => `- \`${p.path}\` — ${MiB(p.narSize).toFixed(1)} MiB NAR`),
    '',
    ctx.old ? `Two-version pair (\`bench/corpus.sh --pairs\`): \`${ctx.old}\` → \`${ctx.new}\`.` : '',
    ctx.bigNar ? `Largest NAR (streaming test): \`${ctx.bigNar.path}\`, ${ctx.bigNar.narSize} bytes.` : '',
    '',
    '## Commands (as run; the last instance of each)',
    '',
    ...[...COMMANDS].map(([k, v]) => `- ${k}:\n  \`${v}\``),
    ...(ctx.nginxConf && fs.existsSync(ctx.nginxConf) ? ['', 'nginx.conf:', '', '```nginx', fs.readFileSync(ctx.nginxConf, 'utf8').trim(), '```'] : []),
    '',
    '## Raw measurements',
    '',
    ...RAW.map(l => `- ${l}`),
    '',
    '## Notes (failures and anything odd)',
    '',
    ...(NOTES.length ? NOTES.map(n => `- ${n.replace(/\n/g, '\n  ')}`) : ['- none']),
    ''
  ].join('\n')
  fs.writeFileSync(RESULTS, md)
  console.log(tbl)
  if (NOTES.length) console.log('\nNotes:\n' + NOTES.map(n => '- ' + n).join('\n'))
  console.log(`\n(written to ${RESULTS.replace(ROOT + '/', '')})`)
}

let crashed
try { await main() } catch (e) { crashed = e; note(`the harness crashed: ${e?.stack ?? e}`) } finally {
  killAllSync()
  try {
    if (ctx.storeBase && ctx.storeBase !== WORK) rmrf(ctx.storeBase)
    if (!KEEP) for (const f of fs.existsSync(WORK) ? fs.readdirSync(WORK) : []) if (/^(filecache|repo|store|pair)-/.test(f)) rmrf(join(WORK, f))
  } catch (e) { note(`cleaning up scratch failed: ${e.message}`) }
}
report()
const anyFailed = crashed || ROWS.some(r => !r.na && (!RESULT[r.key] || RESULT[r.key].error))
process.exit(anyFailed ? 1 : 0)
