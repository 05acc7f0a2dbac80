import { defineCommand } from 'citty'
import { consola } from 'consola'
import { DEFAULT_LISTEN } from '../constants.js'
import { UsageError } from '../errors.js'
import { repoIndexSource } from '../cache/source.js'
import { openNode } from '../ipfs/node.js'
import { startGateway } from '../gateway/server.js'
import { cacheName, repoArg, repoOf } from './common.js'

/** Splits `HOST:PORT` (IPv6 hosts in brackets). */
export function parseListen (value: string): { host: string, port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(value)
  const port = Number(m?.[3])
  if (m === null || port > 65535) throw new UsageError(`--listen must be HOST:PORT, got ${JSON.stringify(value)}`)
  return { host: m[1] ?? (m[2] !== '' ? m[2]! : '127.0.0.1'), port }
}

export default defineCommand({
  meta: {
    name: 'gateway',
    description: 'Serve the repo\'s cache to Nix as a binary cache (a substituter) over HTTP.\n\n' +
      'Example: nixipfs gateway --listen 127.0.0.1:8080, then in nix.conf:\n' +
      '  substituters = http://127.0.0.1:8080\n  trusted-public-keys = <the publisher\'s public key>'
  },
  args: {
    listen: { type: 'string', default: DEFAULT_LISTEN, description: 'Address to listen on (HOST:PORT; port 0 picks a free one)', valueHint: 'HOST:PORT' },
    ...repoArg,
    cache: { type: 'string', description: 'Cache to serve: an IPNS name (k51…) or a Nix public key (default: the repo\'s own)', valueHint: 'NAME|KEY' }
  },
  async run ({ args }) {
    const { host, port } = parseListen(args.listen)
    const repo = repoOf(args)
    const name = await cacheName(repo, args.cache)
    if (name === undefined) throw new UsageError(`the repo ${repo} has no cache yet; publish something first (nixipfs publish PATH) or name one with --cache`)
    const node = await openNode(repo)
    const gateway = await startGateway({ source: repoIndexSource(repo, node.blocks, name), blocks: node.blocks, host, port, logger: consola })
    consola.success(`serving /ipns/${name} at ${gateway.url}`)
    consola.info(`use it with: nix copy --from ${gateway.url} … or substituters = ${gateway.url}`)
    await new Promise<void>(resolve => {
      const stop = (): void => { resolve() }
      process.once('SIGINT', stop)
      process.once('SIGTERM', stop)
    })
    consola.info('shutting down')
    await gateway.close()
    await node.stop()
  }
})
