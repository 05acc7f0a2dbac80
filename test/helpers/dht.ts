import { basename } from 'node:path'
import { startDaemon, type Daemon } from '../../src/daemon.js'
import { DEFAULT_EXPIRED_GRACE_MS } from '../../src/constants.js'
import type { DaemonOptions } from '../../src/daemon.js'
import { tmp } from './cli.js'
import { nixDump } from './nix.js'

/** An in-process node (gateway) on loopback, with its log kept for assertions. */
export interface TestNode {
  daemon: Daemon
  url: string
  /** its first libp2p address, /ip4/127.0.0.1/tcp/…/p2p/… */
  address: string
  log: string[]
  waitForLog: (re: RegExp, ms?: number) => Promise<boolean>
  stop: () => Promise<void>
}

/**
 * Starts a node in this process (about 10 MB each, against 110 MB for a
 * process): a free HTTP port, a free libp2p port on loopback, the given
 * bootstrap peers and caches.
 */
export async function startTestNode (options: Partial<DaemonOptions> & { bootstrap?: string[], label?: string }): Promise<TestNode> {
  const lines: string[] = []
  const label = options.label ?? 'node'
  const say = (level: string) => (m: string): void => { lines.push(`${level} ${m}`); if (process.env.TEST_NODE_LOG !== undefined) console.log(`[${label}] ${level} ${m}`) }
  const log = { info: say('info'), warn: say('warn'), debug: process.env.TEST_NODE_LOG === '2' ? say('debug') : () => {}, success: say('success') }
  const { bootstrap, label: _label, ...rest } = options
  const daemon = await startDaemon({
    repo: tmp(),
    follow: [],
    pin: 'index',
    closures: [],
    followIntervalMs: 5_000,
    expiredGraceMs: DEFAULT_EXPIRED_GRACE_MS,
    host: '127.0.0.1',
    port: 0,
    ...rest,
    network: { offline: false, listen: ['/ip4/127.0.0.1/tcp/0'], peers: [], bootstrap: bootstrap ?? [], httpGateways: [], peerTimeoutMs: 10_000, peerConnections: 4, ...rest.network },
    log
  })
  let stopped = false
  return {
    daemon,
    url: daemon.gateway.url,
    address: daemon.network.addresses[0]!,
    log: lines,
    waitForLog: async (re, ms = 10_000) => {
      for (let i = 0; i < ms / 100; i++) {
        if (lines.some(l => re.test(l))) return true
        await new Promise(resolve => setTimeout(resolve, 100))
      }
      return false
    },
    stop: async () => {
      if (stopped) return
      stopped = true
      await daemon.stop()
    }
  }
}

/** The items of a cache that serves `top` honestly and `lib` tampered (one word of its file changed: a valid NAR with another NarHash), for signedCache. */
export function tamperedClosure (lib: string, top: string): unknown {
  const tampered = Buffer.from(nixDump(lib))
  tampered.write('HONEST', tampered.indexOf('honest library'))
  return [
    { path: lib, nar: tampered },
    { path: top, nar: nixDump(top), alter: (i: { references: string[] }) => ({ ...i, references: [basename(lib)] }) }
  ]
}
