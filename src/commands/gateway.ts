import { defineCommand } from 'citty'
import { consola } from 'consola'
import { DEFAULT_EXPIRED_GRACE_MS, DEFAULT_LISTEN, HOUR_MS } from '../constants.js'
import { UsageError } from '../errors.js'
import { repoIndexSource } from '../cache/source.js'
import { openNode } from '../ipfs/node.js'
import { startGateway } from '../gateway/server.js'
import { cacheArg, cacheName, lifetimeArgs, lifetimeMsOf, repoArg, repoOf, signingKey } from './common.js'
import { startRepublisher } from '../cache/republish.js'
import { ipnsNameOf } from '../ipfs/ipns.js'

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
    ...cacheArg,
    'expired-grace-hours': { type: 'string', default: String(DEFAULT_EXPIRED_GRACE_MS / HOUR_MS), description: 'Keep serving a cache this many hours after its record expired (with a warning), then stop' },
    ...lifetimeArgs
  },
  async run ({ args }) {
    const { host, port } = parseListen(args.listen)
    const repo = repoOf(args)
    const name = await cacheName(repo, args.cache)
    if (name === undefined) throw new UsageError(`the repo ${repo} has no cache yet; publish something first (nixipfs publish PATH) or name one with --cache`)
    const graceHours = Number(args['expired-grace-hours'])
    if (!(graceHours >= 0)) throw new UsageError(`--expired-grace-hours must be a number ≥ 0, got ${args['expired-grace-hours']}`)
    const recordLifetimeMs = lifetimeMsOf(args)
    const node = await openNode(repo)
    const source = repoIndexSource(repo, node.blocks, name, { expiredGraceMs: graceHours * HOUR_MS, warn: m => consola.warn(m) })
    const gateway = await startGateway({ source, blocks: node.blocks, host, port, logger: consola })
    // Serving our own cache with its key at hand: keep its record from expiring.
    const ownKey = await signingKey(repo, undefined, false).catch(() => undefined)
    const republisher = ownKey !== undefined && ipnsNameOf(ownKey.publicKey) === name
      ? startRepublisher(repo, ownKey, { recordLifetimeMs, continueSequence: args['continue-sequence'] === true }, consola)
      : undefined
    consola.success(`serving /ipns/${name} at ${gateway.url}`)
    consola.info(`use it with: nix copy --from ${gateway.url} … or substituters = ${gateway.url}`)
    await new Promise<void>(resolve => {
      const stop = (): void => { resolve() }
      process.once('SIGINT', stop)
      process.once('SIGTERM', stop)
    })
    consola.info('shutting down')
    republisher?.stop()
    await gateway.close()
    await node.stop()
  }
})
