#!/usr/bin/env node
// bench/index.mjs — a 1,000,000-entry narinfo index (issue: "An index for a
// million store paths"). Builds a cache root holding N synthetic narinfos
// as a HAMT-sharded UnixFS directory in a fresh repo, then
// reports: build time; time to publish one more entry into it (the
// incremental path `nixipfs publish` uses); blocks read and p50/p99 latency
// of narinfo lookups (cold: new process state, and warm); and the resident
// memory of a `nixipfs gateway` serving that index after 20,000 lookups over
// HTTP. Writes bench/index-results.md.
// Before the lookups it runs `nixipfs gc` (every batch supersedes most directory nodes, so about
// half the blocks are dead) and reports block counts and gateway RSS before and after it: a
// gateway running across the gc, and fresh gateways started after it.
//
// Every entry names the same tiny NAR with its one true NarHash and NarSize, as
// a correct cache may (two store paths with identical contents).
//
// Usage: node bench/index.mjs [N=1000000]   (builds first; ~10 min for 1M here)
//   BENCH_SMOKE=1: N = 2,000, 200 lookups, no build (see bench/lib/mode.mjs)
// Scratch: bench/work/index (gitignored). Traffic: 127.0.0.1 only.
import { spawnSync } from 'node:child_process'
import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ROOT, SMOKE, resultsFile, workDir } from './lib/mode.mjs'
import { loadAverage, memoryOf } from './lib/process.mjs'
import { CLI, startGateway as startGatewayProcess } from './lib/servers.mjs'

const WORK = workDir('index')
const N = Number(process.argv[2] === '--lookups' ? process.argv[5] : process.argv[2] ?? (SMOKE ? 2_000 : 1_000_000))
const LOOKUPS = SMOKE ? 200 : 20_000

if (process.argv[2] !== '--lookups' && !SMOKE) spawnSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'inherit' })
await import(join(ROOT, 'dist/shim.js'))
const { PackStore } = await import(join(ROOT, 'dist/ipfs/pack-store.js'))
const { createCacheRoot, addEntries, narUrl } = await import(join(ROOT, 'dist/cache/directory.js'))
const { DirNodeCache } = await import(join(ROOT, 'dist/ipfs/hamt.js'))
const { openIndex } = await import(join(ROOT, 'dist/cache/index.js'))
const { saveRecord } = await import(join(ROOT, 'dist/cache/records.js'))
const { signRecord, ipnsNameOf } = await import(join(ROOT, 'dist/ipfs/ipns.js'))
const { generateSecretKey, formatPublicKey, publicKeyOf, formatSecretKey, signFingerprint } = await import(join(ROOT, 'dist/nix/signing.js'))
const { formatNarInfo, fingerprint } = await import(join(ROOT, 'dist/nix/narinfo.js'))
const { encodeNix32 } = await import(join(ROOT, 'dist/nix/base32.js'))
const { cidOf, RAW_CODE } = await import(join(ROOT, 'dist/ipfs/block.js'))
const { NarHasher } = await import(join(ROOT, 'dist/nix/hash.js'))
const { narString } = await import(join(ROOT, 'dist/nix/nar/wire.js'))
const { createHash } = await import('node:crypto')

const hashOf = (i) => encodeNix32(createHash('sha256').update(`path ${i}`).digest().subarray(0, 20))

if (process.argv[2] === '--lookups') {
  const [, , , repoDir, rootText, count] = process.argv
  const { CID } = await import('multiformats/cid')
  const store = await PackStore.openRepo(repoDir)
  let reads = 0
  const index = await openIndex({ get: (cid, o) => { reads++; return store.get(cid, o) } }, CID.parse(rootText))
  const n = Number(count)
  const measure = async (times) => {
    const lat = []
    reads = 0
    for (let k = 0; k < times; k++) {
      const i = Math.floor(Math.random() * n)
      const s = performance.now()
      const e = await index.narInfo(hashOf(i))
      lat.push(performance.now() - s)
      if (e === undefined || !e.text.includes(`-synthetic-${i}\n`)) throw new Error(`lookup of entry ${i} failed`)
    }
    lat.sort((a, b) => a - b)
    return { readsPer: reads / times, p50: lat[Math.floor(times / 2)], p99: lat[Math.floor(times * 0.99)] }
  }
  const results = [await measure(2000), await measure(LOOKUPS)]
  if (await index.narInfo('0'.repeat(32)) !== undefined) throw new Error('found an absent entry')
  await store.close()
  console.log(JSON.stringify(results))
  process.exit(0)
}

const LOAD_START = loadAverage()
rmSync(WORK, { recursive: true, force: true })
mkdirSync(join(WORK, 'repo', 'keys'), { recursive: true })
const repo = join(WORK, 'repo')
const key = generateSecretKey('bench-index-1')
writeFileSync(join(repo, 'keys', 'cache.secret'), formatSecretKey(key), { mode: 0o600 })
writeFileSync(join(repo, 'keys', 'cache.public'), formatPublicKey(publicKeyOf(key)) + '\n')

// The one NAR: a regular file, as `nix-store --dump` writes it.
const narBytes = Buffer.concat(['nix-archive-1', '(', 'type', 'regular', 'contents', 'a NAR stand-in', ')'].map(narString))
const nar = cidOf(RAW_CODE, narBytes)
const narHasher = new NarHasher()
narHasher.update(narBytes)
const narHash = narHasher.digest()
function narInfoText (i) {
  const h = hashOf(i)
  const info = {
    storePath: `/nix/store/${h}-synthetic-${i}`, url: narUrl(nar), compression: 'none',
    narHash, narSize: narBytes.length,
    references: [`${hashOf(i + 1)}-synthetic-${i + 1}`], sigs: []
  }
  info.fileHash = info.narHash; info.fileSize = info.narSize
  // Signing a million fingerprints would measure Ed25519, not the index: every 1000th entry is really
  // signed, the rest carry a signature-shaped value of the same length.
  info.sigs = [i % 1000 === 0 ? signFingerprint(key, fingerprint(info)) : `${key.name}:${createHash('sha512').update(String(i)).digest('base64')}`]
  return formatNarInfo(info)
}

const blocks = await PackStore.openRepo(repo)
await blocks.put(nar, narBytes)
const rss = () => Math.round(process.memoryUsage().rss / 2 ** 20)

// 1. Build: the path `nixipfs publish` takes, in batches of BATCH paths (each batch writes each
//    directory node on its way once).
const BATCH = SMOKE ? 500 : 20_000
let t0 = performance.now()
let root = await createCacheRoot(blocks, 'StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 30\nX-CID-Recipe: cdc-v1\n')
for (let b = 0; b < N; b += BATCH) {
  const entries = []
  for (let i = b; i < Math.min(N, b + BATCH); i++) entries.push({ hash: hashOf(i), narInfo: narInfoText(i), nar, narTsize: narBytes.length })
  root = await addEntries(blocks, root, entries, new DirNodeCache())
}
await blocks.sync()
const buildMs = performance.now() - t0
console.log(`built ${N} entries in ${(buildMs / 1000).toFixed(1)} s, ${blocks.size} blocks; root ${root}`)

// 2. Publish one more path into it: the incremental update, with no directory node cached.
t0 = performance.now()
let reads = 0
const countingRw = { get: (cid, o) => { reads++; return blocks.get(cid, o) }, put: (cid, b) => blocks.put(cid, b) }
const newRoot = await addEntries(countingRw, root, [{ hash: hashOf(N), narInfo: narInfoText(N), nar, narTsize: narBytes.length }], new DirNodeCache())
await blocks.sync()
const addMs = performance.now() - t0
const addReads = reads
const name = ipnsNameOf(key.publicKey)
await saveRecord(repo, await signRecord(key.seed, newRoot, 1n, 3_600_000))
await blocks.close()
console.log(`added one entry in ${addMs.toFixed(1)} ms (${addReads} blocks read)`)

// 3. Garbage collection, with a gateway running across it: RSS after LOOKUPS requests before the gc,
//    then (the same process, which reloads its block table) after the gc and LOOKUPS more.
const across = await startGateway([])
const gwBefore = { ...await across.lookups(), ...memoryOf(across.pid) }
console.log(`gateway before gc: RSS ${gwBefore.rss.toFixed(0)} MiB (peak ${gwBefore.hwm.toFixed(0)} MiB); HTTP p50 ${gwBefore.p50.toFixed(2)} ms p99 ${gwBefore.p99.toFixed(2)} ms`)
t0 = performance.now()
const timed = spawnSync('/usr/bin/time', ['-f', 'maxrss %M', process.execPath, CLI, 'gc', '--repo', repo], { encoding: 'utf8' })
const gcMs = performance.now() - t0
if (timed.status !== 0) throw new Error(`gc failed: ${timed.stdout}${timed.stderr}`)
// gc prints sizes for people (`512 B`, `1.2 GiB`); the table gives MiB.
const SIZE = '([0-9.]+ (?:B|KiB|MiB|GiB|TiB))'
const inMiB = (size) => { const [n, unit] = size.split(' '); return Number((Number(n) * 1024 ** (['B', 'KiB', 'MiB', 'GiB', 'TiB'].indexOf(unit) - 2)).toFixed(1)) }
const field = (re) => re.exec(timed.stdout)?.slice(1).map(v => v.includes(' ') ? inMiB(v) : Number(v)) ?? []
const gc = {
  before: field(new RegExp(`before: +(\\d+) blocks, ${SIZE}`)), kept: field(new RegExp(`kept: +(\\d+) blocks, ${SIZE}`)),
  dropped: field(new RegExp(`dropped: +(\\d+) blocks, ${SIZE}`)), packs: field(new RegExp(`packs: +${SIZE} -> ${SIZE}`)),
  table: field(new RegExp(`table: +${SIZE} -> ${SIZE}`)), maxrss: Number(/maxrss (\d+)/.exec(timed.stderr)?.[1] ?? NaN) / 1024
}
console.log(`gc took ${(gcMs / 1000).toFixed(1)} s, peak RSS ${gc.maxrss.toFixed(0)} MiB`)
const gwAfter = { ...await across.lookups(), ...memoryOf(across.pid) }
await across.stop()
console.log(`the same gateway after gc: RSS ${gwAfter.rss.toFixed(0)} MiB (peak ${gwAfter.hwm.toFixed(0)} MiB)`)

// 4. Lookups through the index the gateway uses, counting block reads, in a fresh process
//    (the builder's heap would otherwise be measured too): 2,000 cold, then LOOKUPS warm.
const child = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--lookups', repo, newRoot.toString(), String(N)], { encoding: 'utf8' })
if (child.status !== 0) throw new Error(`lookup run failed: ${child.stderr}`)
const [cold, warm] = JSON.parse(child.stdout.trim().split('\n').pop())
console.log(`cold: ${cold.readsPer.toFixed(2)} reads/lookup p50 ${cold.p50.toFixed(2)} ms p99 ${cold.p99.toFixed(2)} ms; warm: ${warm.readsPer.toFixed(2)} reads p50 ${warm.p50.toFixed(2)} ms p99 ${warm.p99.toFixed(2)} ms`)

// 5. A fresh gateway with that index (after gc): RSS after LOOKUPS narinfo requests over HTTP, with
//    no heap flag given (only those bin/nixipfs.mjs sets itself) and with the old generation capped (what an
//    operator may add with NODE_OPTIONS).
async function gatewayRun (nodeArgs) {
  const gw = await startGateway(nodeArgs)
  const result = { ...await gw.lookups(), ...memoryOf(gw.pid) }
  await gw.stop()
  return result
}
async function startGateway (nodeArgs) {
  const { pid, url, stop } = await startGatewayProcess(repo, nodeArgs)
  return { pid, lookups: async () => await httpLookups(url), stop }
}
async function httpLookups (url) {
  const lat = []
  for (let k = 0; k < LOOKUPS; k++) {
    const i = Math.floor(Math.random() * N)
    const s = performance.now()
    const r = await fetch(`${url}/${hashOf(i)}.narinfo`)
    await r.text()
    lat.push(performance.now() - s)
    if (r.status !== 200) throw new Error(`HTTP ${r.status} for entry ${i}`)
  }
  lat.sort((a, b) => a - b)
  return { p50: lat[LOOKUPS / 2], p99: lat[Math.floor(LOOKUPS * 0.99)] }
}
const plain = await gatewayRun([])
const capped = await gatewayRun(['--max-old-space-size=128'])
for (const [label, g] of [['no heap flag given', plain], ['--max-old-space-size=128', capped]]) {
  console.log(`gateway (${label}): HTTP p50 ${g.p50.toFixed(2)} ms p99 ${g.p99.toFixed(2)} ms; RSS ${g.rss.toFixed(0)} MiB (peak ${g.hwm.toFixed(0)} MiB)`)
}

const fmt = (n) => Number.isFinite(n) ? n.toLocaleString('en') : '?'
const md = `# Index benchmark (bench/index.mjs)

Run at ${new Date().toISOString()} with N = ${N.toLocaleString('en')} synthetic narinfos (~${narInfoText(0).length} bytes each; 1 in 1,000 really signed) on ${process.version}, ${spawnSync('nproc').stdout.toString().trim()} cores;
load average at start ${LOAD_START}, at the end ${loadAverage()} (other work on the machine inflates times and p99s).

| what | value | target |
| --- | ---: | --- |
| build the index (as \`publish\` does, ${BATCH.toLocaleString('en')} paths per batch) | ${(buildMs / 1000).toFixed(1)} s | — |
| publish one more path into it (\`addEntries\`, as \`nixipfs publish\`, nothing cached) | ${addMs.toFixed(1)} ms, ${addReads} blocks read | — |
| narinfo lookup, cold: block reads per lookup | ${cold.readsPer.toFixed(2)} | ≤ 4 |
| narinfo lookup, cold: p50 / p99 | ${cold.p50.toFixed(2)} / ${cold.p99.toFixed(2)} ms | p99 < 5 ms |
| narinfo lookup, warm (directory nodes cached): block reads per lookup | ${warm.readsPer.toFixed(2)} | ≤ 4 |
| narinfo lookup, warm: p50 / p99 | ${warm.p50.toFixed(2)} / ${warm.p99.toFixed(2)} ms | p99 < 5 ms |
| through the gateway over HTTP (keep-alive), p50 / p99 | ${plain.p50.toFixed(2)} / ${plain.p99.toFixed(2)} ms | — |
| gateway resident memory after ${LOOKUPS.toLocaleString('en')} lookups (peak), no heap flag given (bin/nixipfs.mjs sets its own) | ${plain.rss.toFixed(0)} MiB (${plain.hwm.toFixed(0)} MiB) | < 256 MiB |
| the same with \`NODE_OPTIONS=--max-old-space-size=128\`: RSS (peak); HTTP p50 / p99 | ${capped.rss.toFixed(0)} MiB (${capped.hwm.toFixed(0)} MiB); ${capped.p50.toFixed(2)} / ${capped.p99.toFixed(2)} ms | < 256 MiB |

Blocks in the repo: the index is ${N.toLocaleString('en')} narinfo blocks plus the HAMT shards (fanout 256).
The lookups and gateway rows above are measured after \`nixipfs gc\`:

| garbage collection | value |
| --- | ---: |
| blocks before gc / kept / dropped | ${fmt(gc.before[0])} / ${fmt(gc.kept[0])} / ${fmt(gc.dropped[0])} |
| block bytes before / kept / dropped | ${gc.before[1]} / ${gc.kept[1]} / ${gc.dropped[1]} MiB |
| pack files on disk before / after | ${gc.packs[0]} / ${gc.packs[1]} MiB |
| in-memory block table (a gateway's) before / after | ${gc.table[0]} / ${gc.table[1]} MiB |
| \`nixipfs gc\`: time; peak RSS | ${(gcMs / 1000).toFixed(1)} s; ${gc.maxrss.toFixed(0)} MiB |
| gateway running across the gc: RSS (peak) after ${LOOKUPS.toLocaleString('en')} lookups before the gc | ${gwBefore.rss.toFixed(0)} MiB (${gwBefore.hwm.toFixed(0)} MiB) |
| the same gateway after the gc and ${LOOKUPS.toLocaleString('en')} more lookups: RSS (peak) | ${gwAfter.rss.toFixed(0)} MiB (${gwAfter.hwm.toFixed(0)} MiB) |
| a gateway started after the gc: RSS (peak) after ${LOOKUPS.toLocaleString('en')} lookups | ${plain.rss.toFixed(0)} MiB (${plain.hwm.toFixed(0)} MiB) |
`
writeFileSync(resultsFile('index-results.md'), md)
if (SMOKE) rmSync(WORK, { recursive: true, force: true })
console.log(md)
process.exit(0)
