import { readFileSync } from 'node:fs'
import type { Server } from 'node:http'
import type { Socket } from 'node:net'

export interface ConnectionLimits {
  /** most connections at once; at the cap the longest-idle one is closed to make room */
  maxConnections: number
  /** a new connection must send a complete request head within this time */
  headTimeoutMs: number
  /** a kept-alive connection silent this long is closed; its next request head is due within this plus headTimeoutMs of its previous response */
  keepAliveMs: number
}

/** Connections open now, and those closed by the limits so far. */
export interface ConnectionCounters {
  open: number
  /** closed without a whole request head in time */
  headTimeouts: number
  /** closed at the cap to make room for a new one */
  shed: number
  /** new ones closed at the cap because every connection was answering */
  refused: number
}

/** File descriptors kept free of HTTP connections: pack files, peers, upstreams, libp2p. */
const RESERVED_FILES = 256

/**
 * Bounds the connections of `server` so that held connections cannot lock
 * clients out. Node's own limits do not: `maxConnections` resets every new
 * connection once idle ones fill it, and `headersTimeout` neither counts a
 * connection that has sent nothing nor fires before its next check (every
 * 30 s). Here each connection waiting for a request head has a deadline, and
 * a new connection beyond the cap closes the one that has waited longest;
 * only when every connection is answering a request is a new one refused.
 */
export function limitConnections (server: Server, limits: ConnectionLimits): ConnectionCounters {
  const counters: ConnectionCounters = { open: 0, headTimeouts: 0, shed: 0, refused: 0 }
  // Connections waiting for a request head, longest-waiting first (a Map keeps insertion order), with their deadlines.
  const waiting = new Map<Socket, NodeJS.Timeout>()
  // Requests in flight per connection answering one.
  const answering = new Map<Socket, number>()

  const awaitHead = (socket: Socket, ms: number): void => {
    waiting.set(socket, setTimeout(() => { counters.headTimeouts++; socket.destroy() }, ms).unref())
  }
  const stopWaiting = (socket: Socket): void => {
    clearTimeout(waiting.get(socket))
    waiting.delete(socket)
  }

  server.on('connection', (socket: Socket) => {
    counters.open++
    socket.once('close', () => { counters.open--; stopWaiting(socket); answering.delete(socket) })
    if (counters.open > limits.maxConnections) {
      const longest = waiting.keys().next().value
      if (longest === undefined) { counters.refused++; socket.destroy(); return }
      counters.shed++
      stopWaiting(longest)
      longest.destroy()
    }
    awaitHead(socket, limits.headTimeoutMs)
  })
  server.keepAliveTimeout = limits.keepAliveMs
  server.on('request', (req, res) => {
    const socket = req.socket
    stopWaiting(socket)
    answering.set(socket, (answering.get(socket) ?? 0) + 1)
    res.once('close', () => {
      const left = (answering.get(socket) ?? 1) - 1
      if (left > 0) { answering.set(socket, left); return }
      answering.delete(socket)
      // Kept alive: Node closes it when silent; a next head dripped in slowly is cut off as well.
      if (!socket.destroyed) awaitHead(socket, limits.keepAliveMs + limits.headTimeoutMs)
    })
  })
  return counters
}

/** The soft limit on open files of this process (Linux), or undefined where it cannot be read. */
export function openFileLimit (): number | undefined {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))
    return m === null ? undefined : Number(m[1])
  } catch {
    return undefined
  }
}

/** The connection cap the open-file limit allows: `wanted`, or fewer when the limit leaves less room. */
export function connectionCapWithin (wanted: number, fileLimit: number | undefined): number {
  if (fileLimit === undefined) return wanted
  return Math.max(1, Math.min(wanted, fileLimit - RESERVED_FILES))
}
