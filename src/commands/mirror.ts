import { defineCommand } from 'citty'
import { consola } from 'consola'
import { DEFAULT_EXPIRED_GRACE_MS } from '../constants.js'
import { UsageError } from '../errors.js'
import { startDaemon } from '../daemon.js'
import { repeatedArg, repoArg, repoOf } from './common.js'
import { followedName, nodeArgs, nodeOptionsOf, pinTokenArg } from './network-args.js'
import { runUntilSignal } from './run.js'
import { readTokenFile } from '../net/pinning-client.js'

export default defineCommand({
  meta: {
    name: 'mirror',
    description: 'Follow caches, fetch and keep everything they reach (or chosen closures), and serve it to peers and Nix.\n\n' +
      'Example: nixipfs mirror --follow builder-1:AbC…= --http-gateway http://builder.example:8080 --listen 0.0.0.0:8080\n' +
      'Blocks no followed root reaches any more are dropped by `nixipfs gc`.\n' +
      'With --pin-token-file it also serves the IPFS Pinning Service API at http://HOST:PORT/psa and keeps what it is asked to pin (then --follow may be left out):\n' +
      'Example: nixipfs mirror --pin-token-file /etc/nixipfs/pin-tokens --listen 0.0.0.0:8080'
  },
  args: {
    ...nodeArgs,
    ...repoArg,
    closure: { type: 'string', description: 'Keep only the closures of these store paths (not the whole cache); repeatable', valueHint: 'STORE_PATH' },
    ...pinTokenArg
  },
  async run ({ args, rawArgs }) {
    const node = nodeOptionsOf(args, rawArgs) // flags checked before any work
    const follow = repeatedArg(rawArgs, 'follow').map(followedName)
    const pinTokens = args['pin-token-file'] === undefined ? undefined : await readTokenFile(args['pin-token-file'], '--pin-token-file', m => consola.warn(m))
    if (follow.length === 0 && pinTokens === undefined) throw new UsageError('a mirror needs at least one --follow KEY, or --pin-token-file FILE to keep what it is asked to pin')
    const closures = repeatedArg(rawArgs, 'closure')
    const daemon = await startDaemon({
      repo: repoOf(args),
      follow,
      pin: closures.length === 0 ? 'all' : 'index',
      closures,
      pinTokens,
      expiredGraceMs: DEFAULT_EXPIRED_GRACE_MS,
      ...node
    })
    for (const address of daemon.network.addresses) consola.info(`p2p: listening on ${address}`)
    if (pinTokens !== undefined) consola.info(`pinning service: ${daemon.gateway.url}/psa (${pinTokens.length} token(s))`)
    consola.success(`mirroring ${follow.length === 0 ? 'what it is asked to pin' : follow.map(n => `/ipns/${n}`).join(', ')}; serving at ${daemon.gateway.url}`)
    await runUntilSignal(daemon.stop)
  }
})
