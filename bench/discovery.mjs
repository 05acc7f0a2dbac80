#!/usr/bin/env node
// bench/discovery.mjs — discovery on a loopback DHT of 50 nixipfs nodes
// (issue 17; target: a discovered narinfo in p99 < 1 s).
//
//   1 bootstrap node; BUILDERS nodes, each serving its own cache of PATHS
//   store paths; plain nodes that only route; CLIENTS gateways with an empty
//   repo, `--discover` and `--trust` every builder's key (threshold 1) and as
//   many keys of builders that are not on the network, and room to follow
//   every builder's cache (--max-discovered BUILDERS). More trusted keys than
//   caches that may be followed is what makes discovery use the rendezvous CID
//   alone, which is what is measured: with fewer, it looks every trusted cache
//   up by name at start, and a first request finds it followed. Every node is
//   told one address of a node started before it, and follows at the default
//   interval.
//
// Each client, once it has made the DHT walk a --discover gateway makes at
// start (as one that runs as a service has by Nix's first request), first
// asks for one path of every builder (no cache holds it
// yet for that client: found through the rendezvous CID, so "discovered"),
// then for every other path (its builder is followed by then: "followed").
// DHT bytes per published path: the builders publish PATHS more paths each
// while the network runs; the loopback bytes of that window, less those of
// an idle window as long, divided by the new paths (kad-dht, gossipsub,
// identify: everything the nodes send, as nothing else runs then).
//
// Usage: node bench/discovery.mjs   (Nix single-user, root). Knobs:
// BENCH_NODES [50], BENCH_BUILDERS [20], BENCH_PATHS [4], BENCH_CLIENTS [4],
// BENCH_HOSTS [4]: processes the non-client nodes are spread over (one event
// loop for 50 libp2p nodes saturates: queries and pings time out, connections
// churn, the run never ends); each client runs in a process of its own. BENCH_SMOKE=1:
// 8 nodes, 1 host. BENCH_VERBOSE=1: the nodes' log lines (2: the clients' debug lines too). As root the run
// has a network namespace of its own (unshare -n), so the loopback bytes it
// counts are its own; BENCH_NETNS=0 shares the machine's. All traffic is to 127.0.0.1.
import fs from 'node:fs'
import { spawn } from 'node:child_process'
import { cpus } from 'node:os'
import { join } from 'node:path'
import { SMOKE, resultsFile, workDir } from './lib/mode.mjs'
import { LOCAL_ENV as ENV, loadAverage, logger, ownLoopback, rmrf, runSync as run, sleep } from './lib/process.mjs'
import { CLI } from './lib/servers.mjs'
import { nodeOptions, startHost } from './lib/node-host.mjs'

const loopback = await ownLoopback()
await import('../dist/shim.js')
const { ipnsNameOf } = await import('../dist/ipfs/ipns.js')
const { generateSecretKey, parsePublicKey, publicKeyOf } = await import('../dist/nix/signing.js')
const { rendezvousCid } = await import('../dist/net/rendezvous.js')

const NODES = Number(process.env.BENCH_NODES || (SMOKE ? 8 : 50))
const BUILDERS = Number(process.env.BENCH_BUILDERS || (SMOKE ? 3 : 20))
const PATHS = Number(process.env.BENCH_PATHS || (SMOKE ? 2 : 4))
const CLIENTS = Number(process.env.BENCH_CLIENTS || (SMOKE ? 1 : 4))
const HOSTS = Number(process.env.BENCH_HOSTS || (SMOKE ? 1 : 4))
/** Nodes started at once (each waits up to seconds for its first DHT peer). */
const STARTING = 8
/** Longest idle window whose loopback bytes are measured (and scaled to the publishing window). */
const IDLE_MS = 30_000
const WORK = workDir('discovery')
const log = logger('discovery')
if (NODES < 1 + BUILDERS + CLIENTS) throw new Error(`BENCH_NODES (${NODES}) must hold 1 bootstrap node, ${BUILDERS} builders and ${CLIENTS} clients`)

rmrf(WORK)
fs.mkdirSync(WORK, { recursive: true })
const salt = `${Date.now()}-${process.pid}`
const VERBOSE = process.env.BENCH_VERBOSE === '1' || process.env.BENCH_VERBOSE === '2'

/** `n` new store paths (small text files added to the store: real paths, no build needed). */
function storePaths (tag, n) {
  const dir = join(WORK, 'files', tag)
  fs.mkdirSync(dir, { recursive: true })
  return Array.from({ length: n }, (_, i) => {
    const file = join(dir, `discovery-${tag}-${i}`)
    fs.writeFileSync(file, `discovery bench ${salt} ${tag} ${i}\n`)
    return run('nix-store', ['--add', file]).stdout.trim()
  })
}

/** `publish` in a child process of its own, resolving when it exited well. */
const publishAsync = (repo, paths) => new Promise((resolve, reject) => {
  const child = spawn(process.execPath, [CLI, 'publish', '--repo', repo, ...paths], { env: ENV, stdio: ['ignore', 'ignore', 'pipe'] })
  let err = ''
  child.stderr.on('data', b => { err += b })
  child.on('close', code => code === 0 ? resolve() : reject(new Error(`publish --repo ${repo} failed (${code}): ${err.slice(-1000)}`)))
})
/** Runs every [repo, paths] publish, two at a time (each is a CLI process that loads for a second or two). */
async function publishAll (jobs) {
  let next = 0
  await Promise.all([0, 1].map(async () => { while (next < jobs.length) await publishAsync(...jobs[next++]) }))
}
const hashOf = (path) => path.slice('/nix/store/'.length, '/nix/store/'.length + 32)
const loBytes = () => { const line = fs.readFileSync('/proc/net/dev', 'utf8').split('\n').find(l => l.trim().startsWith('lo:')); return Number(line.trim().split(/\s+/)[1]) }
const quantile = (xs, q) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)] }

/** The DHT addresses of the nodes started so far; their hosts; the clients' hosts (one each). */
const addresses = []
const hosts = []
const clients = []
let announced = 0
/** Starts a node in a host process, told one bootstrap address (none for the first); resolves with its address. */
async function startNode (extra = {}) {
  const n = created++
  const repo = extra.repo ?? join(WORK, `node-${n}`)
  const bootstrap = addresses.length === 0 ? [] : [addresses[Math.floor(Math.random() * addresses.length)]]
  addresses.push((await hosts[n % hosts.length].start(nodeOptions(repo, bootstrap, extra))).address)
}
let created = 0
/** Starts `n` nodes, STARTING at a time, each made by `extra(i)`. */
async function startNodes (n, extra = () => ({})) {
  let i = 0
  await Promise.all(Array.from({ length: Math.min(STARTING, n) }, async () => { while (i < n) await startNode(extra(i++)) }))
}

const waitFor = async (what, ok, ms) => {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(100)) if (await ok()) return
  throw new Error(`timed out after ${ms / 1000} s waiting for ${what}`)
}
/** What the run went on without (an announcement a loaded machine did not finish in time), for the results. */
const shortfalls = []
/** waitFor, but going on (noted in the results) when it times out: the lookups are measured either way. */
const waitOrNote = async (what, ok, ms) => await waitFor(what, ok, ms).catch(err => { shortfalls.push(err.message); log(`${err.message}; going on`) })

const tStart = Date.now()
const loadAtStart = loadAverage()
try {
  log(`${NODES} nodes: 1 bootstrap, ${BUILDERS} builders × ${PATHS} paths, ${CLIENTS} clients (load ${loadAverage()})`)
  const builders = []
  for (let b = 0; b < BUILDERS; b++) builders.push({ repo: join(WORK, `builder-${b}`), paths: storePaths(`b${b}`, PATHS) })
  await publishAll(builders.map(b => [b.repo, b.paths]))
  for (const b of builders) b.key = parsePublicKey(fs.readFileSync(join(b.repo, 'keys', 'cache.public'), 'utf8').trim())
  log(`${BUILDERS} caches published (load ${loadAverage()})`)
  const t0 = Date.now()
  for (let h = 0; h < HOSTS; h++) hosts.push(startHost(() => { announced++ }))
  await startNode()
  await startNodes(BUILDERS, b => ({ repo: builders[b].repo, own: ipnsNameOf(builders[b].key.key) }))
  await startNodes(NODES - CLIENTS - addresses.length)
  log(`${addresses.length} nodes up in ${((Date.now() - t0) / 1000).toFixed(1)} s (load ${loadAverage()})`)
  await waitOrNote('every builder to announce its cache', () => announced >= BUILDERS, 120_000)
  log(`${BUILDERS} caches announced, ${((Date.now() - t0) / 1000).toFixed(1)} s after start (load ${loadAverage()})`)

  // DHT bytes per published path: a window with PATHS new paths per builder, less the idle traffic of as long
  // (measured over at most IDLE_MS: on a loaded machine the publishing window lasts minutes).
  await sleep(2_000)
  let before = loBytes()
  let started = Date.now()
  const more = builders.map((b, i) => storePaths(`more${i}`, PATHS))
  const announcedBefore = announced
  await publishAll(builders.map((b, i) => [b.repo, more[i]]))
  await waitOrNote('the new records to be announced', () => announced >= announcedBefore + BUILDERS, 120_000)
  const announcedNew = announced - announcedBefore
  await sleep(1_000)
  const busy = loBytes() - before
  const window = Date.now() - started
  before = loBytes()
  const idleWindow = Math.min(window, IDLE_MS)
  await sleep(idleWindow)
  const idle = Math.round((loBytes() - before) * window / idleWindow)
  const bytesPerPath = (busy - idle) / (BUILDERS * PATHS)
  log(`publishing ${BUILDERS * PATHS} paths: ${busy} loopback bytes in ${window} ms, idle ${idle}: ${Math.round(bytesPerPath)} B per path`)

  const trusted = [...builders.map(b => b.key), ...builders.map((b, i) => publicKeyOf(generateSecretKey(`absent-${i}`)))]
  /** when each step of a lookup first succeeded (ms into it), from the clients' discovery log lines */
  const steps = { provider: [], 'trusted named': [], 'narinfo handed over': [], followed: [] }
  const lookups = []
  /** each lookup's time, by client and path hash: a request's time beyond it is what serving it added */
  const lookupOf = new Map()
  const beyond = []
  const noteLookup = (c, m) => {
    const line = /^discovery: (\w{32}): .* in (\d+) ms(?: \(first (.*)\))?$/.exec(m)
    if (line === null) return
    lookups.push(Number(line[2]))
    lookupOf.set(`${c} ${line[1]}`, Number(line[2]))
    for (const [, step, ms] of (line[3] ?? '').matchAll(/(provider|trusted named|narinfo handed over|followed) at (\d+) ms/g)) steps[step].push(Number(ms))
  }
  const discovered = []
  const followed = []
  /** time to the first provider of a rendezvous CID, the DHT alone (each client after its lookups, connections warm) */
  const searches = []
  const misses = []
  /** the event loop delay of each client's process while it looked paths up (ms; one value per client) */
  const loopDelays = { p50: [], p99: [], max: [] }
  /** the same, of the other nodes' processes (where providers answer), one value per host and client */
  const hostDelays = { p50: [], p99: [], max: [] }
  /** Writes the results so far (after each client: a run cut short still leaves its numbers). */
  const writeResults = (clientsDone) => {
    const ms = (x) => x === undefined || !Number.isFinite(x) ? '—' : `${x.toFixed(1)} ms`
    const table = [
      '| what | samples | p50 | p99 | max |',
      '| --- | ---: | ---: | ---: | ---: |',
      `| narinfo found by discovery (rendezvous CID → providers → narinfo handed over, or follow) | ${discovered.length} | ${ms(quantile(discovered, 0.5))} | ${ms(quantile(discovered, 0.99))} | ${ms(Math.max(...discovered))} |`,
      `| narinfo of a cache followed on demand | ${followed.length} | ${ms(quantile(followed, 0.5))} | ${ms(quantile(followed, 0.99))} | ${ms(Math.max(...followed))} |`,
      `| discovery lookups (all, from the clients' logs) | ${lookups.length} | ${ms(quantile(lookups, 0.5))} | ${ms(quantile(lookups, 0.99))} | ${ms(Math.max(...lookups))} |`,
      `| … a discovered narinfo's time beyond its lookup | ${beyond.length} | ${ms(quantile(beyond, 0.5))} | ${ms(quantile(beyond, 0.99))} | ${ms(Math.max(...beyond))} |`,
      `| DHT provider search alone (first provider; each client after its lookups) | ${searches.length} | ${ms(quantile(searches, 0.5))} | ${ms(quantile(searches, 0.99))} | ${ms(Math.max(...searches))} |`,
      ...Object.entries(steps).map(([step, xs]) => `| … first ${step}, ms into a lookup | ${xs.length} | ${ms(quantile(xs, 0.5))} | ${ms(quantile(xs, 0.99))} | ${ms(Math.max(...xs))} |`),
      `| event loop delay of a client's process while it looked up (worst client) | ${loopDelays.max.length} | ${ms(Math.max(...loopDelays.p50))} | ${ms(Math.max(...loopDelays.p99))} | ${ms(Math.max(...loopDelays.max))} |`,
      `| … of the other nodes' processes meanwhile (worst host) | ${hostDelays.max.length} | ${ms(Math.max(...hostDelays.p50))} | ${ms(Math.max(...hostDelays.p99))} | ${ms(Math.max(...hostDelays.max))} |`
    ]
    const p99 = quantile(discovered, 0.99)
    const out = [
      '# Discovery on a loopback DHT',
      '',
      `Written by \`node bench/discovery.mjs\` on ${new Date().toISOString()} (Node ${process.version}; load average ${loadAtStart} at start, ${loadAverage()} at the end, on ${cpus().length} cores; ${Math.round((Date.now() - tStart) / 1000)} s in all).`,
      `${NODES} nixipfs nodes on 127.0.0.1 (${HOSTS} processes of ${Math.ceil((NODES - CLIENTS) / HOSTS)} nodes or fewer, and one per client), each told one bootstrap address: 1 bootstrap node, ${BUILDERS} builders with ${PATHS} paths each, ${NODES - 1 - BUILDERS - CLIENTS} routing-only nodes, ${CLIENTS} clients with an empty repo, \`--discover\`, \`--trust\` all builder keys and as many of absent builders (threshold 1: more trusted keys than the ${BUILDERS} caches that may be followed, so discovery goes by the rendezvous CID alone), each asked once done with the DHT walk it makes at start, one after the other.`,
      '',
      ...table,
      '',
      ...(shortfalls.length === 0 ? [] : [`Went on after: ${shortfalls.join('; ')} (${announcedNew} of ${BUILDERS} new records announced by then).`, '']),
      `Clients measured: ${clientsDone} of ${CLIENTS}. Misses: ${misses.length}${misses.length > 0 ? ` (${misses.slice(0, 5).join('; ')})` : ''}.`,
      '',
      `DHT bytes per published path: ${Math.round(bytesPerPath)} B (loopback bytes while ${BUILDERS} builders published ${PATHS} paths each and announced them — IPNS record put, provider records for the root, NAR roots and rendezvous CIDs, gossipsub record announcements — less the idle traffic of a window as long, measured over at most 30 s and scaled; ${loopback === 'own' ? 'the run had a network namespace of its own, so these are its bytes only' : 'the loopback was shared with the rest of the machine, so other traffic may be counted'}).`,
      '',
      `Target (issue 17): p99 of a discovered narinfo < 1 s — ${p99 !== undefined && p99 < 1000 ? 'met' : 'NOT met'} (${ms(p99)}).`,
      ''
    ].join('\n')
    fs.writeFileSync(resultsFile('discovery-results.md'), out)
    log(out)
  }
  for (let c = 0; c < CLIENTS; c++) {
    const bootstrap = [addresses[Math.floor(Math.random() * addresses.length)]]
    // In a process of its own, as on a machine of its own: in this one, its event loop was also the previous
    // clients' and this script's.
    let ready = false
    const host = startHost((m) => { if (m.event === 'log') { noteLookup(c, m.line); if (/^discovery: ready/.test(m.line)) ready = true; if (VERBOSE) log(`client ${c}: ${m.line}`) } })
    clients.push(host)
    const { url, node } = await host.start(nodeOptions(join(WORK, `client-${c}`), bootstrap, { trust: { keys: trusted, threshold: 1 }, discover: { keys: trusted, requireSignature: false, deadlineMs: 3_000, maxCaches: BUILDERS } }), true)
    await waitOrNote(`client ${c} to know a few DHT peers`, async () => (await host.request({ op: 'routingSize', node })).size >= Math.min(5, addresses.length), 60_000)
    // As a gateway that runs as a service is by Nix's first request: done with the DHT walk it makes at start.
    await waitOrNote(`client ${c}'s first DHT walk`, () => ready, 30_000)
    const ask = async (path, into) => {
      const t = performance.now()
      const r = await fetch(`${url}/${hashOf(path)}.narinfo`)
      await r.arrayBuffer()
      const took = performance.now() - t
      if (r.status === 200) into.push(took)
      if (r.status === 200 && into === discovered && lookupOf.has(`${c} ${hashOf(path)}`)) beyond.push(took - lookupOf.get(`${c} ${hashOf(path)}`))
      if (r.status !== 200) misses.push(`${path}: ${r.status}`)
      if (VERBOSE && (r.status !== 200 || took > 1000)) log(`client ${c}: ${hashOf(path)}.narinfo ${r.status} in ${took.toFixed(0)} ms (${into === discovered ? 'first of its builder' : 'builder seen before'})`)
    }
    // As Nix does before its first narinfo (and this process's first fetch, which loads undici, is not timed).
    const info = await fetch(`${url}/nix-cache-info`)
    if (info.status !== 200) throw new Error(`client ${c}: /nix-cache-info: ${info.status}`)
    await info.arrayBuffer()
    await Promise.all([host, ...hosts].map(async h => await h.request({ op: 'lag', start: true })))
    for (const b of builders) await ask(b.paths[0], discovered)
    for (const b of builders) for (const p of [...b.paths.slice(1), ...more[builders.indexOf(b)]]) await ask(p, followed)
    // The DHT alone (its routing, not the network facade, which keeps the providers named lately).
    for (const b of builders) {
      const { ms } = await host.request({ op: 'firstProvider', node, cid: rendezvousCid(hashOf(b.paths.at(-1))).toString() })
      if (ms >= 0) searches.push(ms)
    }
    const [lag, ...hostLags] = await Promise.all([host, ...hosts].map(async h => await h.request({ op: 'lag', start: false })))
    for (const q of Object.keys(loopDelays)) loopDelays[q].push(lag[q])
    for (const other of hostLags) for (const q of Object.keys(hostDelays)) hostDelays[q].push(other[q])
    writeResults(c + 1)
  }
  if (misses.length > 0 && !SMOKE) process.exitCode = 1
  if (SMOKE && discovered.length === 0) throw new Error(`nothing was discovered: ${misses.join('; ')}`)
} finally {
  await Promise.all([...clients, ...hosts].map(h => h.stop()))
  if (process.env.BENCH_KEEP !== '1') rmrf(WORK)
}
