// A child process that runs nixipfs nodes for a benchmark (bench/discovery.mjs):
// nodes of a network are spread over a few such processes, as they would be
// over machines, instead of sharing one event loop (50 libp2p nodes in one
// loop saturate it: DHT queries and pings time out, connections churn).
//
// Requests from the parent, each { op, id, ... } answered { id, ...result }
// or { id, error }:
//   start { options, forward }   → { address, url }: starts a node; with
//                                  `forward`, its info lines come as events
//   routingSize { node }         → { size }: peers in its DHT routing table
//   firstProvider { node, cid }  → { ms }: time to the first provider its DHT names (-1: none in 10 s)
//   lag { start | stop }         → { p50, p99, max }: this process's event loop delay (ms) since `start`
//   stop                         → stops every node, then exits
// Events to the parent: { event: 'announced' } per "announced root" log
// line, { event: 'log', node, line } for the info lines of forwarding nodes.
import { fork } from 'node:child_process'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { DEFAULT_FOLLOW_INTERVAL_S } from '../../dist/constants.js'

/** The options every benchmark node shares; `extra` adds to them. */
export function nodeOptions (repo, bootstrap, extra = {}) {
  return {
    repo, follow: [], pin: 'index', closures: [], followIntervalMs: DEFAULT_FOLLOW_INTERVAL_S * 1000, expiredGraceMs: 3_600_000, host: '127.0.0.1', port: 0,
    ...extra,
    network: { offline: false, listen: ['/ip4/127.0.0.1/tcp/0'], peers: [], bootstrap, httpGateways: [], peerTimeoutMs: 10_000, peerConnections: 4 }
  }
}

/** Starts a host process; `onEvent` gets its events; returns start(options, forward) → { address, url, node }, request(message) → reply, and stop(). */
export function startHost (onEvent) {
  // BENCH_PROF_DIR: each host writes a CPU profile there when it stops (where a loaded network's time goes).
  const prof = process.env.BENCH_PROF_DIR
  const execArgv = prof === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', prof]
  // 'advanced': keys (Uint8Array) go over as they are.
  const child = fork(fileURLToPath(import.meta.url), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: { ...process.env, NODE_HOST: '1' }, execArgv, serialization: 'advanced' })
  const waiting = new Map()
  let next = 0
  child.on('message', (m) => {
    if (m.event !== undefined) { onEvent(m); return }
    const w = waiting.get(m.id)
    waiting.delete(m.id)
    if (m.error !== undefined) w.reject(new Error(m.error)); else w.resolve(m)
  })
  const exited = new Promise(resolve => child.on('exit', resolve))
  child.on('exit', (code) => { for (const w of waiting.values()) w.reject(new Error(`node host exited (${code})`)) })
  const request = (message) => new Promise((resolve, reject) => { const id = next++; waiting.set(id, { resolve, reject }); child.send({ ...message, id }) })
  return {
    start: async (options, forward = false) => await request({ op: 'start', options, forward }),
    request,
    stop: async () => { if (child.exitCode === null) child.send({ op: 'stop' }); await Promise.race([exited, new Promise(resolve => setTimeout(resolve, 20_000))]); child.kill() }
  }
}

if (process.env.NODE_HOST === '1' && process.send !== undefined) {
  await import('../../dist/shim.js')
  const { startDaemon } = await import('../../dist/daemon.js')
  const { CID } = await import('multiformats/cid')
  const nodes = []
  const quiet = { info () {}, warn () {}, debug () {}, success () {} }
  const verbose = process.env.BENCH_VERBOSE === '1'
  let lag
  const ops = {
    start: async ({ options, forward }) => {
      const n = nodes.length
      const tag = `${process.pid}/${n}`
      const node = await startDaemon({
        ...options,
        log: {
          ...quiet,
          info: (line) => {
            if (/announced root/.test(line)) process.send({ event: 'announced' })
            if (forward) process.send({ event: 'log', node: n, line })
            if (verbose) console.error(`node ${tag}: ${line}`)
          },
          ...(verbose ? { warn: (line) => console.error(`node ${tag} warn: ${line}`) } : {}),
          ...(forward && process.env.BENCH_VERBOSE === '2' ? { debug: (line) => console.error(`node ${tag} debug: ${line}`) } : {})
        }
      })
      nodes.push(node)
      return { address: node.network.addresses[0], url: node.gateway.url, node: n }
    },
    routingSize: async ({ node }) => ({ size: nodes[node].network.routing?.size() ?? 0 }),
    firstProvider: async ({ node, cid }) => {
      const t = performance.now()
      try {
        for await (const provider of nodes[node].network.routing.findProviders(CID.parse(cid), { signal: AbortSignal.timeout(10_000) })) return { ms: performance.now() - t, provider: provider.id }
      } catch {}
      return { ms: -1 }
    },
    lag: async ({ start }) => {
      if (start === true) { lag = monitorEventLoopDelay({ resolution: 10 }); lag.enable(); return {} }
      lag.disable()
      return { p50: lag.percentile(50) / 1e6, p99: lag.percentile(99) / 1e6, max: lag.max / 1e6 }
    }
  }
  process.on('message', async (m) => {
    if (m.op === 'stop') {
      await Promise.all(nodes.map(n => n.stop().catch(() => {})))
      process.exit(0)
    }
    try {
      process.send({ id: m.id, ...await ops[m.op](m) })
    } catch (err) {
      process.send({ id: m.id, error: err.message })
    }
  })
  process.on('disconnect', () => process.exit(0))
}
