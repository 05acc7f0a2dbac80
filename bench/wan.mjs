#!/usr/bin/env node
// bench/wan.mjs — substitution over shaped links: mirrors on the far side of
// a 100 Mbit/s or 1 Gbit/s link with a round trip of 40 or 5 ms, against
// nginx serving the same closure as a cache.nixos.org-shaped file:// cache
// (compression=zstd; also xz) over the same link. Issue 18, part 4.
//
//   root namespace   Nix, the client gateway C (fresh repo, --follow the
//                    mirrors' key, --http-gateway each mirror through its
//                    delay proxy), the delay proxies
//   nxwan0..2        one namespace per link, joined to the root one by a
//                    veth pair (10.231.i.1/30 ↔ 10.231.i.2/30) with tbf at
//                    the link's rate on both ends; a mirror (nixipfs gateway
//                    over a repo the corpus was published into) in each,
//                    and nginx (zstd and xz caches) in nxwan0
//
// Round-trip delay comes from bench/lib/delay-proxy.mjs (netem is not in
// these kernels): one per link and case, listening on the root side's
// address (not loopback, so C's --peer-compression auto asks for
// compression) and adding RTT/2 each way plus one RTT per new connection.
//
// Cases (each a ratio to nginx+zstd over the same link shape in this run):
// one mirror at 100 Mbit/s, 40 ms (≤ 1.0×); three mirrors at 100 Mbit/s
// each (≤ 0.5×); one mirror at 1 Gbit/s, 5 ms (≤ 1.3×); an upgrade: C
// already holds the first Inkscape build of bench/corpus.sh and fetches the
// second from one mirror at 100 Mbit/s (≤ 0.5×). Each `nix copy` goes into
// a fresh store and every path it gives is hashed (`nix hash path`) and
// compared with the source's NarHash. Reported besides: bytes on the wire
// (the root-side veth counters, both ways, while `nix copy` ran) per NAR
// byte, and C's CPU seconds over the copy.
//
// Usage: node bench/wan.mjs   (root: namespaces, veths, tc). Knobs:
// BENCH_WAN_CORPUS=subset (default: the second Inkscape build and LLVM, two
// large real packages, so a run fits in minutes on 2 cores) or full (the
// whole corpus), BENCH_RUNS [1], BENCH_KEEP=1 keeps bench/work/wan,
// BENCH_WAN_PROFILE=DIR profiles each client gateway and mirror (node
// --cpu-prof, into DIR/client and DIR/mirror),
// BENCH_WAN_PEER_COMPRESSION=never|always sets C's --peer-compression (auto),
// BENCH_WAN_PRECOMPRESS=0 leaves out \`nixipfs precompress\` of the mirrors' repo.
// Everything it creates is named nxwan*; it deletes leftovers of a killed
// run at start and its own at exit (also on failure and SIGINT/SIGTERM).
// BENCH_SMOKE=1: the tiny corpus, one link shape (100 Mbit/s, 40 ms), the
// one-mirror and upgrade cases only (see bench/lib/mode.mjs); with
// BENCH_WAN_ALL_CASES=1 every case, on the tiny corpus. BENCH_WAN_CASES
// picks cases by name (comma-separated): xz, one, three, upgrade, 1g
// (default: all); each runs with its nginx reference.
import fs from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { SMOKE, ROOT, resultsFile, workDir } from './lib/mode.mjs'
import { addLink, cleanupNetns, inNs, linkBytes, netnsAvailable, shapeLink } from './lib/netns.mjs'
import { NIXFLAGS, corpusClosure, storeBase } from './lib/nix.mjs'
import { cpuSeconds, installIfMissing, logger, rmrf, runAsync, runSync as run, sleep, startBackground, stopBackground, waitForLog } from './lib/process.mjs'
import { CLI, nginxConfig } from './lib/servers.mjs'
import { median } from './lib/stats.mjs'

const PREFIX = 'nxwan'
const WORK = workDir('wan')
const RUNS = Number(process.env.BENCH_RUNS || 1)
const CORPUS = SMOKE ? 'smoke' : (process.env.BENCH_WAN_CORPUS || 'subset')
const STORES = storeBase(WORK)
/** C's --peer-compression: BENCH_WAN_PEER_COMPRESSION=never measures what compression on the wire gives. */
const PEER_COMPRESSION = process.env.BENCH_WAN_PEER_COMPRESSION || 'auto'
/** Whether the mirrors' repo is compressed ahead (`nixipfs precompress`); BENCH_WAN_PRECOMPRESS=0 has each response compressed as it is sent. */
const PRECOMPRESS = process.env.BENCH_WAN_PRECOMPRESS !== '0'
/** Node flags of C and of the mirrors: BENCH_WAN_PROFILE=DIR writes a V8 CPU profile of each into DIR/client or DIR/mirror (times then include the profiler). */
const profile = (who) => process.env.BENCH_WAN_PROFILE ? ['--cpu-prof', '--cpu-prof-dir', join(process.env.BENCH_WAN_PROFILE, who)] : []
/** Every case, as a real run has them (BENCH_WAN_ALL_CASES=1 keeps them in smoke mode, to try them on the tiny corpus). */
const ALL_CASES = !SMOKE || process.env.BENCH_WAN_ALL_CASES === '1'
const CASES = (process.env.BENCH_WAN_CASES || 'xz,one,three,upgrade,1g').split(',')
/** Whether case `name` runs (the smoke run has only `one` and `upgrade`, unless BENCH_WAN_ALL_CASES=1). */
const runs = (name) => CASES.includes(name) && (ALL_CASES || name === 'one' || name === 'upgrade')
const MIRROR_PORT = 8080
const NGINX_PORT = { zstd: 8081, xz: 8082 }
const PROXY = join(ROOT, 'bench', 'lib', 'delay-proxy.mjs')
const log = logger('wan')
/** The line a gateway prints once it serves, on any address: its URL in group 1. */
const SERVING_ANY = /serving .*at (http:\/\/[0-9.]+:\d+)/

// Every process started here, killed (whole group) at exit whatever happens.
// Their pids also go to PIDS, so a run after one killed with SIGKILL (no exit
// handler ran) can stop the proxies and client gateways it left in the root
// namespace; those in the namespaces go with them (cleanupNetns).
const children = new Set()
const PIDS = `/run/${PREFIX}.pids`
const track = (child) => {
  children.add(child); child.on('exit', () => children.delete(child))
  fs.appendFileSync(PIDS, `${child.pid}\n`)
}
/** Kills the process groups listed in PIDS by a run that could not clean up, if they are still ours (node, nginx, ip). */
function killLeftovers () {
  let pids = []
  try { pids = fs.readFileSync(PIDS, 'utf8').split('\n').filter(Boolean).map(Number) } catch { return }
  for (const pid of pids) {
    let cmd = ''
    try { cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8') } catch { continue }
    if (/delay-proxy\.mjs|nixipfs|nginx/.test(cmd)) try { process.kill(-pid, 'SIGKILL') } catch { try { process.kill(pid, 'SIGKILL') } catch {} }
  }
  fs.rmSync(PIDS, { force: true })
}
let cleaned = false
/** Kills what this run started and deletes its namespaces, veths (and so their qdiscs). Synchronous, idempotent. */
function cleanup () {
  if (cleaned) return
  cleaned = true
  for (const c of children) try { process.kill(-c.pid, 'SIGKILL') } catch {}
  cleanupNetns(PREFIX)
  fs.rmSync(PIDS, { force: true })
}
process.on('exit', cleanup)
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => { log(`${signal}: tearing down`); cleanup(); process.exit(128 + (signal === 'SIGINT' ? 2 : signal === 'SIGTERM' ? 15 : 1)) })

/** Starts a background process (tracked) logging to WORK/NAME.log; resolves once its log matches `ready`. */
const background = (name, [cmd, args], ready) => startBackground(join(WORK, `${name}.log`), cmd, args, ready, { onSpawn: track })

/** Starts a delay proxy of `rttMs` on `link`'s root-side address to `port` on its far side; resolves with its URL and process. */
async function delayProxy (link, port, rttMs, name) {
  const bg = await background(name, [process.execPath, [PROXY, `${link.hostAddr}:0`, `${link.nsAddr}:${port}`, String(rttMs)]], /listening on ([0-9.]+:\d+)/)
  return { url: `http://${bg.match[1]}`, bg }
}

/** Sum of the root-side veth counters (both ways) of `links`. */
const wireBytes = (links) => links.reduce((a, l) => { const b = linkBytes(l); return a + b.rx + b.tx }, 0)

/**
 * `nix copy --from url` of `paths` into a fresh store, timed; checks that
 * every path came and hashes to its source NarHash. Returns seconds and
 * the wire bytes the copy moved over `links`.
 */
async function copy (url, pubKey, paths, narHash, links, label, onStart = () => {}) {
  const store = fs.mkdtempSync(join(STORES, 'nixipfs-wan-'))
  try {
    const wire0 = wireBytes(links)
    onStart()
    const r = await runAsync('nix', ['copy', ...NIXFLAGS, '--from', url, '--to', store, ...paths, '--option', 'trusted-public-keys', pubKey,
      '--option', 'narinfo-cache-positive-ttl', '0', '--option', 'narinfo-cache-negative-ttl', '0'])
    const wire = wireBytes(links) - wire0
    for (const p of paths) {
      const got = run('nix', ['hash', 'path', ...NIXFLAGS, '--type', 'sha256', '--sri', join(store, p)]).stdout.trim()
      if (got !== narHash.get(p)) throw new Error(`${label}: ${p} hashes to ${got}, its NarHash is ${narHash.get(p)}`)
    }
    return { seconds: r.seconds, wire }
  } finally { rmrf(store) }
}

/** The store paths a run copies, and the Inkscape pair (older, newer). */
function corpusPaths () {
  const { closure } = corpusClosure()
  const [older, newer] = run(join(ROOT, 'bench', 'corpus.sh'), ['--pairs']).stdout.trim().split('\n')
  const components = run(join(ROOT, 'bench', 'corpus.sh'), ['--list']).stdout.trim().split('\n')
  let paths
  if (CORPUS === 'full') paths = closure.map(p => p.path)
  else if (CORPUS === 'smoke') paths = [newer, components.find(p => /-smoke-other$/.test(p))]
  else if (CORPUS === 'subset') paths = [newer, components.find(p => /-libllvm15-/.test(p))]
  else throw new Error(`BENCH_WAN_CORPUS must be subset or full, got ${CORPUS}`)
  if (paths.some(p => p === undefined)) throw new Error(`a component of the ${CORPUS} corpus is missing from bench/corpus.sh --list`)
  return { paths, older, newer }
}

async function main () {
  if (!netnsAvailable()) throw new Error('bench/wan.mjs needs root with ip and tc (network namespaces, veth pairs, tbf)')
  killLeftovers(); cleanupNetns(PREFIX) // what a killed run left
  rmrf(WORK); fs.mkdirSync(WORK, { recursive: true })
  installIfMissing('nginx', 'nginx-light')

  log(`building the corpus (bench/corpus.sh), using the ${CORPUS} set`)
  const { paths, older, newer } = corpusPaths()
  const info = JSON.parse(run('nix', ['path-info', ...NIXFLAGS, '--json', ...paths, older, '--option', 'substituters', '']).stdout)
  // SRI, as `nix hash path --sri` prints it (path-info's JSON gives SRI or sha256:base32 by Nix version).
  const sri = (h) => h.startsWith('sha256-') ? h : run('nix', ['hash', 'to-sri', ...NIXFLAGS, h]).stdout.trim()
  const narHash = new Map(info.map(p => [p.path, sri(p.narHash)]))
  const narSize = new Map(info.map(p => [p.path, p.narSize]))
  const sizeOf = (ps) => ps.reduce((a, p) => a + narSize.get(p), 0)
  const setBytes = sizeOf(paths)
  log(`copying ${paths.length} paths, ${(setBytes / 2 ** 20).toFixed(1)} MiB of NAR; upgrade ${older} → ${newer}`)

  // The anchor: file:// caches of the same paths, as cache.nixos.org serves them.
  const key = join(WORK, 'ref')
  run('nix-store', ['--generate-binary-cache-key', 'bench-wan-ref-1', `${key}.secret`, `${key}.public`])
  const refPub = fs.readFileSync(`${key}.public`, 'utf8').trim()
  const cacheBytes = {}
  for (const c of ['zstd', 'xz']) {
    if (c === 'xz' && !runs('xz')) continue
    const dir = join(WORK, `cache-${c}`)
    // xz on both cores (parallel-compression), or making the cache would take minutes; it does not change what is served.
    const r = run('nix', ['copy', ...NIXFLAGS, '--to', `file://${dir}?compression=${c}&secret-key=${key}.secret${c === 'xz' ? '&parallel-compression=true' : ''}`, ...paths])
    cacheBytes[c] = fs.readdirSync(join(dir, 'nar')).reduce((a, f) => a + fs.statSync(join(dir, 'nar', f)).size, 0)
    log(`file:// cache, ${c}: ${(cacheBytes[c] / 2 ** 20).toFixed(1)} MiB of NAR files (${(setBytes / cacheBytes[c]).toFixed(2)}×) in ${r.seconds.toFixed(1)} s`)
  }

  // The mirrors' repo (one, shared: mirrors only read it) and the upgrade client's starting repo.
  const repoM = join(WORK, 'repo-m')
  const pub = run(process.execPath, [CLI, 'publish', '--repo', repoM, ...paths])
  log(`published into the mirrors' repo in ${pub.seconds.toFixed(1)} s`)
  // Compressed ahead, as the file:// caches nginx serves were (untimed, like them): the mirrors send the frames as they are.
  const precompressed = PRECOMPRESS ? run(process.execPath, [CLI, 'precompress', '--repo', repoM]) : undefined
  if (precompressed) log(`compressed the mirrors' repo ahead in ${precompressed.seconds.toFixed(1)} s: ${/compressed: (.*)/.exec(precompressed.stdout)?.[1]}`)
  const mirrorPub = fs.readFileSync(join(repoM, 'keys', 'cache.public'), 'utf8').trim()
  const seed = join(WORK, 'repo-seed')
  run(process.execPath, [CLI, 'publish', '--repo', seed, older])

  // Links, mirrors, nginx.
  const nLinks = runs('three') ? 3 : 1
  const links = []
  for (let i = 0; i < nLinks; i++) { links.push(addLink(PREFIX, i)); shapeLink(links[i], 100) }
  const mirrors = []
  for (const [i, link] of links.entries()) {
    mirrors.push(await background(`mirror-${i}`, inNs(link, process.execPath, [...profile('mirror'), CLI, 'gateway', '--repo', repoM, '--listen', `${link.nsAddr}:${MIRROR_PORT}`, '--offline']), SERVING_ANY))
  }
  for (const c of Object.keys(cacheBytes)) {
    const prefix = join(WORK, `nginx-${c}`)
    fs.mkdirSync(join(prefix, 'tmp'), { recursive: true })
    fs.writeFileSync(join(prefix, 'nginx.conf'), nginxConfig({ prefix, port: NGINX_PORT[c], root: join(WORK, `cache-${c}`), host: links[0].nsAddr }))
    await background(`nginx-${c}`, inNs(links[0], 'nginx', ['-c', join(prefix, 'nginx.conf'), '-p', prefix + '/', '-e', join(prefix, 'error.log'), '-g', 'error_log stderr notice;']), /start worker process/)
  }
  log(`${links.length} link(s) and mirror(s) up, nginx serving ${Object.keys(cacheBytes).join(' and ')}`)

  /** nginx (`codec` cache) through `link` with `rttMs`: one timed copy of `ps`. */
  const viaNginx = async (codec, rttMs, ps, label) => {
    const proxy = await delayProxy(links[0], NGINX_PORT[codec], rttMs, `proxy-${label}`)
    try {
      const r = await copy(proxy.url, refPub, ps, narHash, [links[0]], label)
      return { ...r, cpu: null }
    } finally { await stopBackground(proxy.bg) }
  }
  /** A fresh client C (or one starting from `seedRepo`) over the first `n` mirrors with `rttMs`: one timed copy of `ps`. */
  const viaNixipfs = async (n, rttMs, ps, label, seedRepo) => {
    const used = links.slice(0, n)
    const proxies = []
    const repo = join(WORK, `repo-c-${label}`)
    rmrf(repo)
    if (seedRepo) run('cp', ['-a', seedRepo, repo])
    let c
    try {
      for (const [i, link] of used.entries()) proxies.push(await delayProxy(link, MIRROR_PORT, rttMs, `proxy-${label}-${i}`))
      const t0 = Date.now()
      c = await background(`client-${label}`, [process.execPath, [...profile('client'), CLI, 'gateway', '--repo', repo, '--listen', '127.0.0.1:0', '--follow', mirrorPub, '--offline',
        '--peer-compression', PEER_COMPRESSION, ...proxies.flatMap(p => ['--http-gateway', p.url])]], SERVING_ANY)
      await waitForLog(c, /indexed root/)
      const indexSeconds = (Date.now() - t0) / 1000
      let cpu0 = 0; let mirrorCpu0 = 0
      const mirrorCpu = () => mirrors.slice(0, n).reduce((a, m) => a + cpuSeconds(m.child.pid), 0)
      const r = await copy(c.match[1], mirrorPub, ps, narHash, used, label, () => { cpu0 = cpuSeconds(c.child.pid); mirrorCpu0 = mirrorCpu() })
      const cpu = cpuSeconds(c.child.pid) - cpu0
      const mCpu = mirrorCpu() - mirrorCpu0
      const peers = c.log().split('\n').filter(l => /blocks|sent|rate/i.test(l) && /http:\/\//.test(l)).slice(-6)
      return { ...r, cpu, mirrorCpu: mCpu, indexSeconds, peers }
    } finally {
      if (c) await stopBackground(c)
      for (const p of proxies) await stopBackground(p.bg)
      rmrf(repo)
    }
  }

  /** Runs `fn` RUNS times; the run with the median time, with every time kept. */
  const repeat = async (label, fn) => {
    const rs = []
    for (let i = 0; i < RUNS; i++) {
      rs.push(await fn(`${label}-${i}`))
      log(`${label} run ${i}: ${rs.at(-1).seconds.toFixed(2)} s, ${(rs.at(-1).wire / 2 ** 20).toFixed(1)} MiB on the wire${rs.at(-1).cpu != null ? `, C ${rs.at(-1).cpu.toFixed(2)} CPU s` : ''}`)
    }
    const m = median(rs.map(r => r.seconds))
    const mid = rs.reduce((a, r) => Math.abs(r.seconds - m) < Math.abs(a.seconds - m) ? r : a)
    return { ...mid, seconds: m, all: rs.map(r => r.seconds) }
  }

  const rows = []
  const row = (what, link, r, ref, target, narBytes) => rows.push({ what, link, r, ref, target, narBytes })
  const upgradePaths = [newer]

  // 100 Mbit/s, 40 ms.
  for (const l of links) shapeLink(l, 100)
  if (runs('one') || runs('three') || runs('xz')) {
    const ref100 = await repeat('nginx-zstd-100', (l) => viaNginx('zstd', 40, paths, l))
    row('nginx, zstd file:// cache', '100 Mbit/s, 40 ms', ref100, ref100, null, setBytes)
    if (cacheBytes.xz) row('nginx, xz file:// cache', '100 Mbit/s, 40 ms', await repeat('nginx-xz-100', (l) => viaNginx('xz', 40, paths, l)), ref100, null, setBytes)
    if (runs('one')) row('nixipfs, 1 mirror', '100 Mbit/s, 40 ms', await repeat('nixipfs-1-100', (l) => viaNixipfs(1, 40, paths, l)), ref100, 1.0, setBytes)
    if (runs('three')) row('nixipfs, 3 mirrors', '3 × 100 Mbit/s, 40 ms', await repeat('nixipfs-3-100', (l) => viaNixipfs(3, 40, paths, l)), ref100, 0.5, setBytes)
  }

  // Upgrade at 100 Mbit/s, 40 ms: C holds the older Inkscape build.
  if (runs('upgrade')) {
    const refUp = await repeat('nginx-zstd-upgrade', (l) => viaNginx('zstd', 40, upgradePaths, l))
    row('nginx, zstd: the newer Inkscape', '100 Mbit/s, 40 ms', refUp, refUp, null, sizeOf(upgradePaths))
    row('nixipfs, upgrade (holds the older one)', '100 Mbit/s, 40 ms', await repeat('nixipfs-upgrade', (l) => viaNixipfs(1, 40, upgradePaths, l, seed)), refUp, 0.5, sizeOf(upgradePaths))
  }

  // 1 Gbit/s, 5 ms.
  if (runs('1g')) {
    shapeLink(links[0], 1000)
    const ref1g = await repeat('nginx-zstd-1g', (l) => viaNginx('zstd', 5, paths, l))
    row('nginx, zstd file:// cache', '1 Gbit/s, 5 ms', ref1g, ref1g, null, setBytes)
    row('nixipfs, 1 mirror', '1 Gbit/s, 5 ms', await repeat('nixipfs-1-1g', (l) => viaNixipfs(1, 5, paths, l)), ref1g, 1.3, setBytes)
  }

  for (const m of mirrors) await stopBackground(m)
  const mib = (b) => (b / 2 ** 20).toFixed(1)
  const table = rows.map(({ what, link, r, ref, target, narBytes }) => {
    const ratio = r.seconds / ref.seconds
    const met = target == null ? '—' : SMOKE ? 'n/a (smoke)' : ratio <= target ? 'yes' : '**no**'
    return `| ${what} | ${link} | ${r.seconds.toFixed(2)} s | ${r === ref ? 'reference' : ratio.toFixed(2) + '×'} | ${target == null ? '—' : '≤ ' + target.toFixed(1) + '×'} | ${met} | ${(r.wire / narBytes).toFixed(3)} (${mib(r.wire)} MiB) | ${r.cpu == null ? '—' : r.cpu.toFixed(2)} |`
  }).join('\n')
  const notes = rows.filter(x => x.r.indexSeconds !== undefined).map(({ what, link, r }) => `- ${what}, ${link}: C fetched the index in ${r.indexSeconds.toFixed(1)} s before the copy (not in the time); during the copy C used ${(100 * r.cpu / r.seconds).toFixed(0)}% of a core, the mirror(s) ${r.mirrorCpu.toFixed(2)} CPU s (${(100 * r.mirrorCpu / r.seconds).toFixed(0)}% of a core); raw times ${r.all.map(s => s.toFixed(2)).join(', ')} s.${r.peers.length ? ' C\'s log: ' + r.peers.map(l => '`' + l.replace(/\s+/g, ' ').slice(0, 400) + '`').join('; ') : ''}`).join('\n')
  const md = `# Substitution over shaped links (bench/wan.mjs)

Run ${new Date().toISOString()} on ${os.cpus().length} × ${os.cpus()[0]?.model} (load average ${fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')} at the end), Node ${process.version}, ${run('nix', ['--version']).stdout.trim()}, kernel ${os.release()}.
Corpus (${CORPUS}): ${paths.map(p => '`' + p.replace(/^\/nix\/store\/[a-z0-9]+-/, '') + '`').join(', ')}: ${paths.length} paths, ${mib(setBytes)} MiB of NAR; as file:// caches ${Object.entries(cacheBytes).map(([c, b]) => `${c} ${mib(b)} MiB (${(setBytes / b).toFixed(2)}×)`).join(', ')}. Upgrade: \`${older.replace(/^\/nix\/store\/[a-z0-9]+-/, '')}\` held, \`${newer.replace(/^\/nix\/store\/[a-z0-9]+-/, '')}\` (${mib(sizeOf(upgradePaths))} MiB of NAR) fetched.
Links: a veth pair per mirror between the root namespace and the mirror's, tbf at the rate on both ends (bucket ≥ 128 KiB, 50 ms queue); the round trip from a user-space delay proxy in the root namespace (RTT/2 each way, one RTT per new connection; TCP itself sees a short RTT, so slow start and window limits of a real long link are not modelled). Nix and the client gateway C run in the root namespace; nginx (1 worker, sendfile) and the mirrors (\`nixipfs gateway --offline\` over one repo the set was published into${precompressed ? `, then compressed ahead with \`nixipfs precompress\` in ${precompressed.seconds.toFixed(1)} s, untimed as the file:// caches were: ${/compressed: (.*)/.exec(precompressed.stdout)?.[1]}` : ', not compressed ahead (BENCH_WAN_PRECOMPRESS=0): each response compressed as it is sent'}) in the mirrors' namespaces. C starts with an empty repo (the upgrade: one holding the older Inkscape build) and \`--peer-compression ${PEER_COMPRESSION}\` (the proxies listen on non-loopback addresses, so auto asks). Each \`nix copy --from\` goes into a fresh store; every path it gives is hashed and matches the source NarHash. ${RUNS} run(s) per case, median. Wire bytes: the root-side veth counters (received + sent, headers included) during the copy.

| case | link | time | ratio to nginx+zstd | target | met | wire bytes per NAR byte | C CPU s |
| --- | --- | --- | --- | --- | --- | --- | --- |
${table}

${notes}
`
  fs.writeFileSync(resultsFile('wan-results.md'), md)
  console.log(md)
}

main()
  .catch(err => { console.error(err); process.exitCode = 1 })
  .finally(() => { cleanup(); if (process.env.BENCH_KEEP !== '1') rmrf(WORK) })
