import { defineCommand } from 'citty'
import { consola } from 'consola'
import { DEFAULT_EXPIRED_GRACE_MS } from '../constants.js'
import { UsageError } from '../errors.js'
import { startDaemon } from '../daemon.js'
import { repeatedArg, repoArg, repoOf } from './common.js'
import { followedName, nodeArgs, nodeOptionsOf } from './network-args.js'
import { runUntilSignal } from './run.js'

export default defineCommand({
  meta: {
    name: 'mirror',
    description: 'Follow caches, fetch and keep everything they reach (or chosen closures), and serve it to peers and Nix.\n\n' +
      'Example: nixipfs mirror --follow builder-1:AbC…= --http-gateway http://builder.example:8080 --listen 0.0.0.0:8080\n' +
      'Blocks no followed root reaches any more are dropped by `nixipfs gc`.'
  },
  args: {
    ...nodeArgs,
    ...repoArg,
    closure: { type: 'string', description: 'Keep only the closures of these store paths (not the whole cache); repeatable', valueHint: 'STORE_PATH' }
  },
  async run ({ args, rawArgs }) {
    const node = nodeOptionsOf(args, rawArgs) // flags checked before any work
    const follow = repeatedArg(rawArgs, 'follow').map(followedName)
    if (follow.length === 0) throw new UsageError('a mirror needs at least one --follow KEY')
    const closures = repeatedArg(rawArgs, 'closure')
    const daemon = await startDaemon({
      repo: repoOf(args),
      follow,
      pin: closures.length === 0 ? 'all' : 'index',
      closures,
      expiredGraceMs: DEFAULT_EXPIRED_GRACE_MS,
      ...node
    })
    for (const address of daemon.network.addresses) consola.info(`p2p: listening on ${address}`)
    consola.success(`mirroring ${follow.map(n => `/ipns/${n}`).join(', ')}; serving at ${daemon.gateway.url}`)
    await runUntilSignal(daemon.stop)
  }
})
