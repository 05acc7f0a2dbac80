// A TCP proxy that adds round-trip delay: what netem would do, in user space
// (netem is not in these kernels). Each chunk read from one side is written
// to the other RTT/2 later, in order. A timer queue per direction holds the
// chunks (one timer armed for the head), so data keeps flowing while earlier
// chunks wait: the delay adds latency without capping throughput (a sleep
// per chunk would serialize them and cap it at chunk size / delay). A new
// connection reaches upstream one RTT after it was accepted, as a TCP
// handshake would.
//
// As a program (run it as a child: a benchmark that blocks its event loop
// must not carry the proxy):
//   node bench/lib/delay-proxy.mjs LISTEN_HOST:PORT UPSTREAM_HOST:PORT RTT_MS
// prints "delay proxy listening on HOST:PORT" once it accepts.
import net from 'node:net'
import { fileURLToPath } from 'node:url'

/** Bytes waiting in one direction past which reading that side pauses (≫ any bandwidth-delay product here). */
const HIGH_WATER = 16 * 2 ** 20

/**
 * Forwards `src` to `dst`, each chunk `delayMs` after it arrived, in order;
 * ends `dst` as late after `src` ends. Nothing is written before the
 * returned `open()` is called (dst still connecting).
 */
function pipeDelayed (src, dst, delayMs) {
  const queue = [] // { due, chunk } or { due, end: true }
  let head = 0; let queued = 0; let timer = null; let opened = false
  const waiting = () => queued + dst.writableLength
  const flush = () => {
    timer = null
    const now = performance.now()
    while (head < queue.length && queue[head].due <= now) {
      const item = queue[head]; queue[head++] = undefined
      if (item.end) { dst.end(); return }
      queued -= item.chunk.length
      dst.write(item.chunk)
    }
    if (head > 1024 && head * 2 > queue.length) { queue.splice(0, head); head = 0 }
    if (src.isPaused() && waiting() < HIGH_WATER / 2) src.resume()
    arm()
  }
  const arm = () => {
    if (!opened || timer || head >= queue.length) return
    timer = setTimeout(flush, Math.max(0, queue[head].due - performance.now()))
  }
  src.on('data', (chunk) => {
    queue.push({ due: performance.now() + delayMs, chunk }); queued += chunk.length
    if (waiting() > HIGH_WATER) src.pause()
    arm()
  })
  dst.on('drain', () => { if (src.isPaused() && waiting() < HIGH_WATER / 2) src.resume() })
  src.on('end', () => { queue.push({ due: performance.now() + delayMs, end: true }); arm() })
  // What waited for the handshake leaves half a round trip after it.
  const open = () => {
    const due = performance.now() + delayMs
    for (let i = head; i < queue.length; i++) queue[i].due = Math.max(queue[i].due, due)
    opened = true; arm()
  }
  return { open }
}

/**
 * Starts a delay proxy on `listen` ({ host, port }, port 0 for a free one)
 * to `upstream` ({ host, port }) adding `rttMs` of round trip; resolves with
 * its port and a `close`.
 */
export async function startDelayProxy ({ listen, upstream, rttMs }) {
  const sockets = new Set()
  const server = net.createServer({ pauseOnConnect: true }, (client) => {
    sockets.add(client); client.on('close', () => sockets.delete(client))
    client.setNoDelay(true)
    // Data the client sends before upstream is reachable waits in the queue.
    const up = new net.Socket(); sockets.add(up); up.on('close', () => sockets.delete(up))
    const kill = () => { client.destroy(); up.destroy() }
    client.on('error', kill); up.on('error', kill); client.on('close', () => up.destroy()); up.on('close', () => client.destroy())
    const toUp = pipeDelayed(client, up, rttMs / 2)
    pipeDelayed(up, client, rttMs / 2).open()
    client.resume()
    setTimeout(() => { up.connect(upstream.port, upstream.host, () => { up.setNoDelay(true); toUp.open() }) }, rttMs)
  })
  await new Promise((resolve, reject) => { server.once('error', reject); server.listen(listen.port, listen.host, resolve) })
  const close = () => new Promise(resolve => { for (const s of sockets) s.destroy(); server.close(() => resolve()) })
  return { port: server.address().port, close }
}

/** Splits "host:port" into { host, port }. */
const hostPort = (s) => { const i = s.lastIndexOf(':'); return { host: s.slice(0, i), port: Number(s.slice(i + 1)) } }

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [listen, upstream, rtt] = process.argv.slice(2)
  if (!listen || !upstream || !rtt) { console.error('usage: delay-proxy.mjs LISTEN_HOST:PORT UPSTREAM_HOST:PORT RTT_MS'); process.exit(2) }
  const p = await startDelayProxy({ listen: hostPort(listen), upstream: hostPort(upstream), rttMs: Number(rtt) })
  console.log(`delay proxy listening on ${hostPort(listen).host}:${p.port}`)
  for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0))
}
