#!/usr/bin/env node
// bench/idle.mjs — what an idle loopback network costs: BENCH_NODES [30]
// nixipfs nodes in this one process, each told one bootstrap address, no
// cache, nothing asked. After BENCH_SETTLE_S [30] s it measures the process's
// CPU seconds over BENCH_WINDOW_S [60] s. A node's idle work (pings, DHT
// table upkeep, gossipsub heartbeats) is what a loaded network has left for
// lookups: on the 50-node discovery bench the hosts had no idle time at all
// while libp2p pinged each connection every 10 s.
//
// Usage: npm run build && node bench/idle.mjs (BENCH_SMOKE=1: 3 nodes, 2 s). Prints one line of JSON; writes no
// results file. All traffic is to 127.0.0.1.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SMOKE } from './lib/mode.mjs'
import { nodeOptions } from './lib/node-host.mjs'
import { sleep } from './lib/process.mjs'

await import('../dist/shim.js')
const { startDaemon } = await import('../dist/daemon.js')

const NODES = Number(process.env.BENCH_NODES || (SMOKE ? 3 : 30))
const SETTLE_S = Number(process.env.BENCH_SETTLE_S || (SMOKE ? 1 : 30))
const WINDOW_S = Number(process.env.BENCH_WINDOW_S || (SMOKE ? 2 : 60))
const quiet = { info () {}, warn () {}, debug () {}, success () {} }

const work = mkdtempSync(join(tmpdir(), 'nixipfs-idle-'))
const nodes = []
const addresses = []
try {
  for (let i = 0; i < NODES; i++) {
    const bootstrap = addresses.length === 0 ? [] : [addresses[Math.floor(Math.random() * addresses.length)]]
    const node = await startDaemon({ ...nodeOptions(join(work, `node-${i}`), bootstrap), log: quiet })
    nodes.push(node)
    addresses.push(node.network.addresses[0])
  }
  await sleep(SETTLE_S * 1000)
  const before = process.cpuUsage()
  await sleep(WINDOW_S * 1000)
  const cpu = process.cpuUsage(before)
  const cpuS = (cpu.user + cpu.system) / 1e6
  const connections = nodes.map(n => n.network.p2p.libp2p.getConnections().length)
  console.log(JSON.stringify({
    nodes: NODES,
    windowS: WINDOW_S,
    cpuSecondsPerMinute: +(cpuS * 60 / WINDOW_S).toFixed(2),
    connectionsPerNode: +(connections.reduce((a, b) => a + b, 0) / NODES).toFixed(1)
  }))
} finally {
  await Promise.all(nodes.map(async n => await n.stop().catch(() => {})))
  rmSync(work, { recursive: true, force: true })
}
