#!/usr/bin/env node
// bench/metrics-overhead.mjs — what counting a request in /metrics costs on
// the request path: the gateway's CPU time per request, and requests/s, of a
// bare gateway (startGateway over an empty repo, no Nix needed) answering
// GET /nix-cache-info and a 404 narinfo, keep-alive, from a client in another
// process. CPU per request is the figure to compare on a busy machine (the
// rate depends on what else runs).
// Usage: npm run build && node bench/metrics-overhead.mjs [DIST...]
//   each DIST (default: dist) is a built tree (copy one aside to compare); runs alternate A B B A …
//   BENCH_SECONDS [5] per run, BENCH_ROUNDS [4] runs per DIST, BENCH_CONNS [16]
import { fork } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'

// Smoke mode (BENCH_SMOKE=1, see bench/lib/mode.mjs): one short round.
const SMOKE = process.env.BENCH_SMOKE === '1'
const SECONDS = Number(process.env.BENCH_SECONDS ?? (SMOKE ? 1 : 5))
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? (SMOKE ? 1 : 4))
const CONNS = Number(process.env.BENCH_CONNS ?? 16)

if (process.argv[2] === '--client') {
  // The client: CONNS keep-alive loops for SECONDS, then reports the count.
  const { Agent, get } = await import('node:http')
  const [url] = process.argv.slice(3)
  const agent = new Agent({ keepAlive: true, maxSockets: CONNS })
  const paths = ['/nix-cache-info', '/00000000000000000000000000000000.narinfo']
  const end = Date.now() + SECONDS * 1000
  let done = 0
  const loop = async (i) => {
    while (Date.now() < end) {
      await new Promise((resolve, reject) => get(url + paths[i++ % 2], { agent }, res => { res.resume(); res.on('end', resolve) }).on('error', reject))
      done++
    }
  }
  await Promise.all(Array.from({ length: CONNS }, (_, i) => loop(i)))
  agent.destroy()
  process.send(done)
} else {
  const dists = process.argv.length > 2 ? process.argv.slice(2) : ['dist']
  const results = new Map(dists.map(d => [d, []]))
  // The first run of each build warms up its code (JIT) and is not counted.
  const order = [...dists]
  for (let r = 0; r < ROUNDS; r++) order.push(...(r % 2 === 0 ? dists : [...dists].reverse()))
  for (const [i, dist] of order.entries()) {
    const { startGateway } = await import(pathToFileURL(resolve(dist, 'gateway/server.js')).href)
    const { PackStore } = await import(pathToFileURL(resolve(dist, 'ipfs/pack-store.js')).href)
    const repo = mkdtempSync(join(tmpdir(), 'nixipfs-bench-'))
    const store = await PackStore.openRepo(repo)
    const gw = await startGateway({ caches: async () => undefined, disputes: async () => [], stats: () => ({}), blocks: store, local: store, record: async () => undefined, host: '127.0.0.1', port: 0 })
    const client = fork(new URL(import.meta.url).pathname, ['--client', gw.url])
    const cpu = process.cpuUsage()
    const count = await new Promise(resolve => client.once('message', resolve))
    const { user, system } = process.cpuUsage(cpu)
    await gw.close(); await store.close(); rmSync(repo, { recursive: true, force: true })
    if (i >= dists.length) results.get(dist).push({ rate: count / SECONDS, cpuUs: (user + system) / count })
    console.log(`${dist}: ${Math.round(count / SECONDS)} req/s, ${((user + system) / count).toFixed(1)} µs CPU per request`)
  }
  const median = xs => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
  for (const [dist, runs] of results) {
    console.log(`${dist}: median ${median(runs.map(r => r.cpuUs)).toFixed(1)} µs CPU per request (${runs.map(r => r.cpuUs.toFixed(1)).join(', ')}), median ${Math.round(median(runs.map(r => r.rate)))} req/s`)
  }
}
