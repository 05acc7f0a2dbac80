// A child process that runs nixipfs nodes for a benchmark (bench/discovery.mjs):
// nodes of a network are spread over a few such processes, as they would be
// over machines, instead of sharing one event loop (50 libp2p nodes in one
// loop saturate it: DHT queries and pings time out, connections churn).
//
// Messages from the parent: { op: 'start', id, options } → { id, address }
// or { id, error }; { op: 'stop' } → stops every node, then exits. To the
// parent: { event: 'announced' } per "announced root" log line.
import { fork } from 'node:child_process'
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

/** Starts a host process; `onEvent` gets its events; returns start(options) → address, and stop(). */
export function startHost (onEvent) {
  // BENCH_PROF_DIR: each host writes a CPU profile there when it stops (where a loaded network's time goes).
  const prof = process.env.BENCH_PROF_DIR
  const execArgv = prof === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', prof]
  const child = fork(fileURLToPath(import.meta.url), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: { ...process.env, NODE_HOST: '1' }, execArgv })
  const waiting = new Map()
  let next = 0
  child.on('message', (m) => {
    if (m.event !== undefined) { onEvent(m); return }
    const w = waiting.get(m.id)
    waiting.delete(m.id)
    if (m.error !== undefined) w.reject(new Error(m.error)); else w.resolve(m.address)
  })
  const exited = new Promise(resolve => child.on('exit', resolve))
  child.on('exit', (code) => { for (const w of waiting.values()) w.reject(new Error(`node host exited (${code})`)) })
  return {
    start: (options) => new Promise((resolve, reject) => { const id = next++; waiting.set(id, { resolve, reject }); child.send({ op: 'start', id, options }) }),
    stop: async () => { if (child.exitCode === null) child.send({ op: 'stop' }); await Promise.race([exited, new Promise(resolve => setTimeout(resolve, 20_000))]); child.kill() }
  }
}

if (process.env.NODE_HOST === '1' && process.send !== undefined) {
  await import('../../dist/shim.js')
  const { startDaemon } = await import('../../dist/daemon.js')
  const nodes = []
  const quiet = { info () {}, warn () {}, debug () {}, success () {} }
  const verbose = process.env.BENCH_VERBOSE === '1'
  process.on('message', async (m) => {
    if (m.op === 'start') {
      const tag = `${process.pid}/${nodes.length}`
      try {
        const node = await startDaemon({
          ...m.options,
          log: {
            ...quiet,
            info: (line) => { if (/announced root/.test(line)) process.send({ event: 'announced' }); if (verbose) console.error(`node ${tag}: ${line}`) },
            ...(verbose ? { warn: (line) => console.error(`node ${tag} warn: ${line}`) } : {})
          }
        })
        nodes.push(node)
        process.send({ id: m.id, address: node.network.addresses[0] })
      } catch (err) {
        process.send({ id: m.id, error: err.message })
      }
    } else if (m.op === 'stop') {
      await Promise.all(nodes.map(n => n.stop().catch(() => {})))
      process.exit(0)
    }
  })
  process.on('disconnect', () => process.exit(0))
}
