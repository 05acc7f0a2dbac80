import { DEFAULT_HEAD_TIMEOUT_MS, DEFAULT_LISTEN, DEFAULT_LISTEN_P2P, DEFAULT_FOLLOW_INTERVAL_S, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_HEADER_BYTES, DEFAULT_MAX_INDEX, DEFAULT_PEER_CONNECTIONS, DEFAULT_PEER_TIMEOUT_S } from '../constants.js'
import { UsageError } from '../errors.js'
import { ipnsNameOf } from '../ipfs/ipns.js'
import { parsePublicKey } from '../nix/signing.js'
import { consola } from 'consola'
import type { DaemonOptions } from '../daemon.js'
import type { NetworkOptions } from '../net/network.js'
import { PEER_COMPRESSIONS, type PeerCompression } from '../net/http-peer.js'
import { CODINGS } from '../codings.js'
import { NAR_COMPRESSIONS, type NarCompression } from '../gateway/encode.js'
import { IPNS_NAME } from '../repo-layout.js'
import { PUBLIC_BOOTSTRAP } from '../net/bootstrap.js'
import { repeatedArg } from './common.js'

/** Flags of every command that runs a node: HTTP listen address, peers, following. */
export const nodeArgs = {
  listen: { type: 'string', default: DEFAULT_LISTEN, description: 'HTTP address for Nix and for peers (HOST:PORT; port 0 picks a free one)', valueHint: 'HOST:PORT' },
  'compress-nar': { type: 'string', default: 'auto', description: `Point Nix at NARs compressed on the fly (narinfos with Compression: ${CODINGS[0]!}, no FileHash/FileSize; signatures stay valid): auto (for Nix on other hosts only; on loopback raw NARs cost no CPU), none, or one of ${CODINGS.join(', ')} for every client`, valueHint: `auto|none|${CODINGS.join('|')}` },
  follow: { type: 'string', description: 'Follow a cache by its Nix public key (name:base64) or IPNS name (k51…); repeatable', valueHint: 'KEY|NAME' },
  peer: { type: 'string', description: 'libp2p peer to dial and keep connected, e.g. /ip4/10.0.0.2/tcp/4001/p2p/12D3Koo…; repeatable', valueHint: 'MULTIADDR' },
  bootstrap: { type: 'string', description: 'Join the IPFS DHT (/ipfs/kad/1.0.0) through this libp2p peer, e.g. /ip4/10.0.0.2/tcp/4001/p2p/12D3Koo…; repeatable. "public" names the public IPFS bootstrap peers (untested here)', valueHint: 'MULTIADDR' },
  'http-gateway': { type: 'string', description: 'Trustless HTTP gateway to fetch blocks and records from (another nixipfs node or any IPFS gateway); repeatable', valueHint: 'URL' },
  routing: { type: 'string', description: 'Delegated Routing V1 server (e.g. http://10.0.0.2:8080, /routing/v1 may follow) to take followed records from and to put the own record to; repeatable', valueHint: 'URL' },
  'listen-p2p': { type: 'string', default: DEFAULT_LISTEN_P2P, description: 'libp2p listen address (TCP; loopback by default, a free port if the default is taken; e.g. /ip4/0.0.0.0/tcp/4001 to seed to other machines); repeatable', valueHint: 'MULTIADDR' },
  offline: { type: 'boolean', description: 'No libp2p: use only the repo and --http-gateway peers' },
  'max-connections': { type: 'string', default: String(DEFAULT_MAX_CONNECTIONS), description: 'Most HTTP connections at once; beyond it the longest-idle one is closed (capped by the open-file limit)' },
  'head-timeout': { type: 'string', default: String(DEFAULT_HEAD_TIMEOUT_MS / 1000), description: 'Seconds a new connection has to send a whole request head (a kept-alive one: 60 more); then it is closed' },
  'max-header-bytes': { type: 'string', default: String(DEFAULT_MAX_HEADER_BYTES), description: 'Largest HTTP request head accepted (bytes); larger gets 431' },
  'max-index': { type: 'string', default: DEFAULT_MAX_INDEX, description: 'Most bytes one followed cache\'s index (narinfos, directories) may take; past it, following that cache stops with a warning', valueHint: 'SIZE' },
  'follow-interval': { type: 'string', default: String(DEFAULT_FOLLOW_INTERVAL_S), description: 'Seconds between asking peers for newer records of followed caches' },
  'peer-timeout': { type: 'string', default: String(DEFAULT_PEER_TIMEOUT_S), description: 'Seconds a peer or --upstream may stall (no answer, no next block) before it is given up and others are asked' },
  'peer-connections': { type: 'string', default: String(DEFAULT_PEER_CONNECTIONS), description: 'HTTP connections (requests in flight) to one --http-gateway peer at once' },
  'peer-compression': { type: 'string', default: 'auto', description: `Ask HTTP peers for compressed blocks and CAR streams (Accept-Encoding: ${CODINGS.join(', ')}): auto (every peer but one on loopback, where it only costs CPU), always, never`, valueHint: 'auto|always|never' }
} as const

/** The flag that turns on the Pinning Service API of a gateway or mirror. */
export const pinTokenArg = {
  'pin-token-file': { type: 'string', description: 'Serve the IPFS Pinning Service API at /psa to the bearer tokens in FILE (one per line) and keep what it is asked to pin', valueHint: 'FILE' }
} as const

/** The IPNS name of a cache given by Nix public key or by name. */
export function followedName (value: string): string {
  if (value.includes(':')) return ipnsNameOf(parsePublicKey(value).key)
  if (!IPNS_NAME.test(value)) throw new UsageError(`--follow takes a Nix public key (name:base64…) or an IPNS name (k51…), got ${JSON.stringify(value)}`)
  return value
}

/** Splits `HOST:PORT` (IPv6 hosts in brackets). */
export function parseListen (value: string): { host: string, port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(value)
  const port = Number(m?.[3])
  if (m === null || port > 65535) throw new UsageError(`--listen must be HOST:PORT, got ${JSON.stringify(value)}`)
  return { host: m[1] ?? (m[2] !== '' ? m[2]! : '127.0.0.1'), port }
}

/** Network options from the node flags (repeatable ones read from the raw arguments). */
export function networkOptionsOf (args: Record<string, unknown>, rawArgs: string[]): Omit<NetworkOptions, 'log'> {
  const listen = repeatedArg(rawArgs, 'listen-p2p')
  for (const addr of listen) {
    const m = /^\/(ip4|ip6)\/[^/]+\/tcp\/(\d{1,5})$/.exec(addr)
    if (m === null || Number(m[2]) > 65535) throw new UsageError(`--listen-p2p takes a TCP multiaddr such as /ip4/0.0.0.0/tcp/4001, got ${JSON.stringify(addr)}`)
  }
  const peers = repeatedArg(rawArgs, 'peer')
  const httpGateways = repeatedArg(rawArgs, 'http-gateway')
  for (const url of httpGateways) {
    if (!/^https?:\/\/[^/]/.test(url)) throw new UsageError(`--http-gateway takes an http(s) URL, got ${JSON.stringify(url)}`)
  }
  const routing = repeatedArg(rawArgs, 'routing')
  for (const url of routing) {
    if (!/^https?:\/\/[^/]/.test(url)) throw new UsageError(`--routing takes the http(s) URL of a Delegated Routing V1 server, got ${JSON.stringify(url)}`)
  }
  for (const addr of peers) {
    if (!/^\/(ip4|ip6|dns4|dns6|dns)\/.+\/p2p\/\w+$/.test(addr)) throw new UsageError(`--peer takes a multiaddr ending in /p2p/<peer id>, got ${JSON.stringify(addr)}`)
  }
  const bootstrapArgs = repeatedArg(rawArgs, 'bootstrap')
  for (const addr of bootstrapArgs) {
    if (addr !== 'public' && !/^\/(ip4|ip6|dns4|dns6|dns|dnsaddr)\/.+\/p2p\/\w+$/.test(addr)) throw new UsageError(`--bootstrap takes a multiaddr ending in /p2p/<peer id> (or "public"), got ${JSON.stringify(addr)}`)
  }
  const publicNetwork = bootstrapArgs.includes('public')
  const bootstrap = [...new Set(bootstrapArgs.flatMap(a => a === 'public' ? PUBLIC_BOOTSTRAP : [a]))]
  if (args.offline === true && bootstrap.length > 0) throw new UsageError('--bootstrap joins the DHT over libp2p, which --offline turns off; give one or the other')
  const peerTimeout = Number(args['peer-timeout'] ?? DEFAULT_PEER_TIMEOUT_S)
  if (!(peerTimeout > 0)) throw new UsageError(`--peer-timeout must be a positive number of seconds, got ${String(args['peer-timeout'])}`)
  const peerConnections = Number(args['peer-connections'] ?? DEFAULT_PEER_CONNECTIONS)
  if (!Number.isInteger(peerConnections) || peerConnections < 1) throw new UsageError(`--peer-connections must be a whole number ≥ 1, got ${String(args['peer-connections'])}`)
  const peerCompression = String(args['peer-compression'] ?? 'auto') as PeerCompression
  if (!PEER_COMPRESSIONS.includes(peerCompression)) throw new UsageError(`--peer-compression must be auto, always or never, got ${JSON.stringify(args['peer-compression'])}`)
  return {
    offline: args.offline === true,
    peerTimeoutMs: peerTimeout * 1000,
    peerConnections,
    peerCompression,
    listen: listen.length > 0 ? listen : [DEFAULT_LISTEN_P2P],
    listenFallback: listen.length === 0,
    peers,
    bootstrap,
    publicNetwork,
    httpGateways,
    routing
  }
}

/** Milliseconds a client has to send a request head, from `--head-timeout`. */
function headTimeoutMsOf (args: Record<string, unknown>): number {
  const s = Number(args['head-timeout'] ?? DEFAULT_HEAD_TIMEOUT_MS / 1000)
  if (!(s > 0)) throw new UsageError(`--head-timeout must be a positive number of seconds, got ${String(args['head-timeout'])}`)
  return s * 1000
}

/** Milliseconds between follow polls from `--follow-interval`. */
export function followIntervalMsOf (args: Record<string, unknown>): number {
  const s = Number(args['follow-interval'])
  if (!(s > 0)) throw new UsageError(`--follow-interval must be a positive number of seconds, got ${String(args['follow-interval'])}`)
  return s * 1000
}

/** Bytes from a size such as `500M`, `20G` or `1048576` (binary units). */
export function parseSize (value: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?$/i.exec(value.trim())
  if (m === null) throw new UsageError(`${flag} takes a size such as 500M or 20G, got ${JSON.stringify(value)}`)
  return Math.floor(Number(m[1]) * 1024 ** ' KMGT'.indexOf((m[2] ?? '').toUpperCase() || ' '))
}

/** What every node command (gateway, mirror) passes to startDaemon from its flags: addresses, networking, following, logging. */
export function nodeOptionsOf (args: Record<string, unknown> & { listen: string }, rawArgs: string[]): Pick<DaemonOptions, 'host' | 'port' | 'network' | 'followIntervalMs' | 'maxIndexBytes' | 'log' | 'onRequest' | 'maxConnections' | 'maxHeaderBytes' | 'headTimeoutMs' | 'compressNar'> {
  const { host, port } = parseListen(args.listen)
  const compressNar = String(args['compress-nar'] ?? 'auto') as NarCompression
  if (!NAR_COMPRESSIONS.includes(compressNar)) throw new UsageError(`--compress-nar must be one of ${NAR_COMPRESSIONS.join(', ')} (this Node writes ${CODINGS.join(', ')}), got ${JSON.stringify(args['compress-nar'])}`)
  const positive = (flag: string): number => {
    const n = Number(args[flag])
    if (!Number.isInteger(n) || n < 1) throw new UsageError(`--${flag} must be a whole number ≥ 1, got ${String(args[flag])}`)
    return n
  }
  return {
    host,
    port,
    compressNar,
    maxConnections: positive('max-connections'),
    maxHeaderBytes: positive('max-header-bytes'),
    headTimeoutMs: headTimeoutMsOf(args),
    network: networkOptionsOf(args, rawArgs),
    followIntervalMs: followIntervalMsOf(args),
    maxIndexBytes: parseSize(String(args['max-index'] ?? DEFAULT_MAX_INDEX), '--max-index'),
    log: consola,
    // With --log-json every request is a structured line.
    onRequest: process.env.NIXIPFS_LOG_JSON === '1' ? r => consola.info({ message: 'request', ...r }) : undefined
  }
}
