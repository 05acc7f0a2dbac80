import { createReadStream, statSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'

/** How the test server misbehaves for one URL path. */
export type Fault = 'hang' | 'truncate'

/** A static file server over `root`; `faults` maps a URL path to a misbehaviour. */
export async function serveFiles (root: string, faults: Map<string, Fault>): Promise<{ url: string, server: Server }> {
  const server = createServer((req, res) => {
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
