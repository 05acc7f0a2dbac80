import { spawn } from 'node:child_process'
import { createReadStream, statSync } from 'node:fs'
import { createServer, request, type IncomingHttpHeaders, type OutgoingHttpHeaders, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'

/** A request as it goes over the wire, with exactly the headers given (fetch adds its own Accept-Encoding and undoes codings it knows): status, headers, body bytes. */
export async function rawGet (url: string, headers: OutgoingHttpHeaders = {}, method = 'GET'): Promise<{ status: number, headers: IncomingHttpHeaders, body: Buffer }> {
  return await new Promise((resolve, reject) => {
    request(url, { method, headers }, res => {
      const parts: Buffer[] = []
      res.on('data', (c: Buffer) => parts.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }))
      res.on('error', reject)
    }).on('error', reject).end()
  })
}

/** How the test server misbehaves for one URL path. */
export type Fault = 'hang' | 'truncate'

/** A static file server over `root`; `faults` maps a URL path to a misbehaviour; `close` answers `Connection: close` (one request per connection). */
export async function serveFiles (root: string, faults: Map<string, Fault>, options: { close?: boolean } = {}): Promise<{ url: string, server: Server }> {
  const server = createServer((req, res) => {
    if (options.close === true) res.setHeader('connection', 'close')
    const path = decodeURIComponent((req.url ?? '/').split('?')[0]!)
    const file = join(root, path)
    let size: number
    try { size = statSync(file).size } catch { res.writeHead(404); res.end(); return }
    const fault = faults.get(path)
    if (fault === 'hang') return // never answers
    res.writeHead(200, { 'content-length': size })
    if (fault === 'truncate') {
      createReadStream(file, { end: Math.floor(size / 2) }).on('end', () => res.destroy()).pipe(res, { end: false })
      return
    }
    createReadStream(file).pipe(res)
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server }
}

/** `python3 -m http.server` over `root`: HTTP/1.0, one request per connection, closed after each answer. */
export async function pythonHttpServer (root: string): Promise<{ url: string, close: () => Promise<void> }> {
  const child = spawn('python3', ['-u', '-m', 'http.server', '0', '--bind', '127.0.0.1', '--directory', root], { stdio: ['ignore', 'pipe', 'pipe'] })
  const exited = new Promise(resolve => child.once('exit', resolve))
  const close = async (): Promise<void> => { if (child.exitCode === null && child.signalCode === null) { child.kill(); await exited } }
  let out = ''
  const port = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`python3 -m http.server did not start: ${out}`)), 10_000)
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString()
      const m = /port (\d+)/.exec(out)
      if (m !== null) { clearTimeout(timer); resolve(m[1]!) }
    })
    child.stderr.resume()
    child.once('exit', code => { clearTimeout(timer); reject(new Error(`python3 -m http.server exited with ${code}: ${out}`)) })
  }).catch(async (err: Error) => { await close(); throw err })
  return { url: `http://127.0.0.1:${port}`, close }
}

/** What a hostile peer does with one request: answer honestly, send other bytes, or stall. */
export type PeerBehaviour = { body: Buffer } | 'honest' | 'hang' | 'endless' | 'trickle'

/**
 * A peer in front of `upstream` (a nixipfs gateway) that misbehaves as
 * `choose` says per request path; `honest` requests are passed through.
 * `hang` never answers, `endless` sends zeros for ever, `trickle` sends a
 * byte every 200 ms. `choose` also sees the honest answer, to alter it.
 */
export async function hostilePeer (upstream: string, choose: (path: string, honest: () => Promise<Buffer>) => Promise<PeerBehaviour>): Promise<{ url: string, close: () => void }> {
  const timers = new Set<NodeJS.Timeout>()
  const server = createServer((req, res) => {
    const path = req.url ?? '/'
    const honest = async (): Promise<Buffer> => {
      const r = await fetch(upstream + path, { headers: { accept: req.headers.accept ?? '*/*' } })
      if (r.status !== 200) throw Object.assign(new Error('not found'), { status: r.status })
      return Buffer.from(await r.arrayBuffer())
    }
    choose(path, honest).then(async behaviour => {
      if (behaviour === 'hang') return
      if (behaviour === 'endless' || behaviour === 'trickle') {
        res.writeHead(200, { 'content-type': 'application/octet-stream' })
        const zeros = Buffer.alloc(behaviour === 'endless' ? 64 * 1024 : 1)
        const send = (): void => {
          if (res.destroyed) return
          if (behaviour === 'trickle') { res.write(zeros); const t = setTimeout(send, 200); timers.add(t); return }
          while (res.write(zeros)) { /* until the socket pushes back */ }
          res.once('drain', send)
        }
        send()
        return
      }
      const body = behaviour === 'honest' ? await honest() : behaviour.body
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length })
      res.end(body)
    }).catch((err: { status?: number }) => { res.writeHead(err.status ?? 502); res.end() })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => { for (const t of timers) clearTimeout(t); server.closeAllConnections(); server.close() }
  }
}
