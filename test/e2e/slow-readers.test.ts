import { readFileSync } from 'node:fs'
import { get } from 'node:http'
import { connect, type Socket } from 'node:net'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { nixAsync, nixAvailable, nixBuild, nixDump, shellDerivation } from '../helpers/nix.js'
import { runCli, startGatewayProcess, tmp, type GatewayProcess } from '../helpers/cli.js'

// Clients that ask for a NAR and never read it (the outside tester's 3,000
// grew a gateway to 5 GB and delayed new clients): the gateway's memory stays
// bounded while they hold their responses, a new client and real Nix are served
// at once, and every stalled response is cut once its client has taken
// nothing for the stall timeout (30 s).
const salt = `${Date.now()}-${process.pid}`
const NARS = 3
const NAR_MIB = 8
const READERS = 200
/** The gateway's stall timeout (src/gateway/drain.ts). */
const STALL_MS = 30_000
/** Time for the gateway to fill every reader's kernel buffers (megabytes each) before they stall, on a loaded machine. */
const FILL_MS = 25_000

/** The gateway process's resident memory in bytes (Linux). */
function rssOf (pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return Number(m![1]) * 1024
}

/** A raw client that sends `GET path` and never reads: its receive window fills and the gateway's writes stall. */
function stalledReader (port: number, path: string): { socket: Socket, connected: Promise<void> } {
  const socket = connect({ port, host: '127.0.0.1', highWaterMark: 1024 })
  socket.pause()
  socket.on('error', () => {})
  const connected = new Promise<void>((resolve, reject) => {
    socket.once('connect', () => { socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`); resolve() })
    socket.once('error', reject)
  })
  return { socket, connected }
}

/** Reads what `socket` still gets until the connection ends (or `ms` pass): the body bytes after the head, and its Content-Length. */
async function drainRest (socket: Socket, ms: number): Promise<{ body: number, length: number, ended: boolean }> {
  let head = Buffer.alloc(0)
  let body = -1
  let length = -1
  return await new Promise(resolve => {
    const timer = setTimeout(() => { socket.destroy(); resolve({ body, length, ended: false }) }, ms)
    socket.on('data', (b: Buffer) => {
      if (body >= 0) { body += b.length; return }
      head = Buffer.concat([head, b])
      const end = head.indexOf('\r\n\r\n')
      if (end < 0) return
      body = head.length - end - 4
      length = Number(/content-length: (\d+)/i.exec(head.subarray(0, end).toString())?.[1] ?? -1)
    })
    socket.once('close', () => { clearTimeout(timer); resolve({ body, length, ended: true }) })
    socket.resume()
  })
}

/** Responses the gateway cut because their clients took nothing (its metrics). */
async function stalledCut (url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text()
  return Number(/^nixipfs_http_connections_closed_total\{reason="stalled"\} (\d+)$/m.exec(text)?.[1] ?? NaN)
}

/** GET url: status, within `ms`. */
async function status (url: string, ms: number): Promise<number> {
  return await new Promise((resolve, reject) => {
    const req = get(url, { agent: false }, res => { res.resume(); res.on('end', () => resolve(res.statusCode!)) })
    req.on('error', reject)
    req.setTimeout(ms, () => req.destroy(new Error(`no answer within ${ms} ms`)))
  })
}

describe.runIf(nixAvailable)('a gateway under clients that never read their NAR', () => {
  const repo = tmp()
  let paths: string[]
  let pub: string
  let gw: GatewayProcess | undefined
  const readers: Socket[] = []

  beforeAll(() => {
    paths = nixBuild(`[ ${Array.from({ length: NARS }, (_, i) => `(${shellDerivation(`slow-${i}-${salt}`, `mkdir $out; head -c ${NAR_MIB * 1024 * 1024} /dev/urandom > $out/blob`)})`).join(' ')} ]`)
    expect(runCli(['publish', '--repo', repo, ...paths]).status).toBe(0)
    pub = readFileSync(join(repo, 'keys', 'cache.public'), 'utf8').trim()
  })
  afterAll(async () => { for (const s of readers) s.destroy(); await gw?.stop() })

  it(`keeps its memory bounded and serves new clients while ${READERS} clients stall on ${NARS} NARs of ${NAR_MIB} MiB, and cuts them after the stall timeout`, async () => {
    gw = await startGatewayProcess(['--repo', repo])
    const pid = gw.child.pid!
    const port = Number(new URL(gw.url).port)
    const nars: string[] = []
    for (const p of paths) {
      const text = await (await fetch(`${gw.url}/${p.slice('/nix/store/'.length, '/nix/store/'.length + 32)}.narinfo`)).text()
      nars.push(`/${/^URL: (.*)$/m.exec(text)![1]!}`)
    }
    const before = rssOf(pid)

    let peak = before
    const sampler = setInterval(() => { peak = Math.max(peak, rssOf(pid)) }, 100)
    try {
      const started = Date.now()
      const opened = Array.from({ length: READERS }, (_, i) => stalledReader(port, nars[i % NARS]!))
      readers.push(...opened.map(r => r.socket))
      await Promise.all(opened.map(async r => await r.connected))
      // Let the gateway fill every response's buffers.
      await new Promise(resolve => setTimeout(resolve, 6_000))

      // A new client is served at once, and real Nix substitutes a path the stalled clients are on.
      const asked = Date.now()
      expect(await status(`${gw.url}/nix-cache-info`, 3_000)).toBe(200)
      const answeredMs = Date.now() - asked
      const store = tmp()
      const copyStarted = Date.now()
      const r = await nixAsync(['copy', '--from', gw.url, '--to', store, paths[0]!, '--option', 'trusted-public-keys', pub, '--option', 'narinfo-cache-positive-ttl', '0'])
      expect(r.status, r.stderr).toBe(0)
      const copyMs = Date.now() - copyStarted
      expect(copyMs).toBeLessThan(10_000)
      expect(Buffer.compare(nixDump(paths[0]!), nixDump(join(store, paths[0]!)))).toBe(0)

      // Without a bound, each stalled response held its read-ahead (16 blocks) and more: ~1.3 GB for 300 readers.
      // Bounded, it grows by 200-250 MiB alone, and once reached 385 MiB with the whole suite running beside it.
      const grown = peak - before
      expect(grown, `the gateway grew by ${Math.round(grown / 2 ** 20)} MiB`).toBeLessThan(512 * 2 ** 20)

      // Every stalled response is cut: the longest-waiting ones while they hold too much, the rest after the stall timeout.
      while (await stalledCut(gw.url) < READERS && Date.now() < started + STALL_MS + FILL_MS) await new Promise(resolve => setTimeout(resolve, 500))
      expect(await stalledCut(gw.url), 'stalled responses cut').toBe(READERS)
      console.log(`${READERS} stalled readers: the gateway grew by ${Math.round(grown / 2 ** 20)} MiB; a new client answered in ${answeredMs} ms, nix copy took ${copyMs} ms; all cut ${Math.round((Date.now() - started) / 1000)} s after they connected`)
      // Reading now gets the rest of a short body, then the end of the connection.
      const rest = await Promise.all(readers.map(async s => await drainRest(s, 10_000)))
      expect(rest.every(x => x.length > NAR_MIB * 2 ** 20), 'every stalled client got the head of a whole NAR').toBe(true)
      expect(rest.filter(x => x.body >= x.length).length, 'stalled responses sent whole').toBe(0)
      expect(rest.filter(x => !x.ended).length, 'stalled connections still open').toBe(0)
      expect(gw.child.exitCode, gw.output()).toBe(null)
    } finally {
      clearInterval(sampler)
    }
  }, 120_000)
})
