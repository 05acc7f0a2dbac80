import { defineCommand } from 'citty'
import { consola } from 'consola'
import { pinNamePrefix, pinTargets, pushPins, ownOrigins } from '../cache/pin-remote.js'
import { DEFAULT_LISTEN } from '../constants.js'
import { UsageError } from '../errors.js'
import { PackStore } from '../ipfs/pack-store.js'
import { PinningClient, readTokenFile } from '../net/pinning-client.js'
import { cacheArg, cacheName, noCacheIn, repeatedArg, repoArg, repoOf } from './common.js'

export default defineCommand({
  meta: {
    name: 'pin-remote',
    description: [
      'Ask a pinning service (IPFS Pinning Service API: a nixipfs mirror\'s /psa, IPFS Cluster, commercial services) to pin the own cache\'s root, or with --closure the narinfos and NARs of store paths\' closures.',
      'Origins are this node\'s addresses, as its running gateway (--gateway) names them. Waits until the service says pinned; a new root replaces the pin of the old one, pins no longer wanted are removed.',
      '',
      'Example: nixipfs pin-remote --service http://mirror.example:8080/psa --token-file ~/.config/nixipfs/mirror.token'
    ].join('\n')
  },
  args: {
    ...repoArg,
    ...cacheArg,
    service: { type: 'string', description: 'Endpoint of the pinning service (what `ipfs pin remote service add` takes), e.g. http://mirror.example:8080/psa', valueHint: 'URL' },
    'token-file': { type: 'string', description: 'File holding the access token for the service (its first line; # comments skipped)', valueHint: 'FILE' },
    closure: { type: 'string', description: 'Pin the narinfos and NARs of this store path\'s closure (as the cache\'s narinfos describe it) instead of the cache root; repeatable', valueHint: 'STORE_PATH' },
    origin: { type: 'string', description: 'Multiaddr the service may fetch the blocks from, ending in /p2p/<id> (besides those the gateway names); repeatable', valueHint: 'MULTIADDR' },
    gateway: { type: 'string', default: `http://${DEFAULT_LISTEN}`, description: 'This node\'s running gateway, asked for the node\'s addresses (the origins)', valueHint: 'URL' },
    timeout: { type: 'string', default: '600', description: 'Seconds to wait for the service to say pinned', valueHint: 'SECONDS' }
  },
  async run ({ args, rawArgs }) {
    if (args.service === undefined || !/^https?:\/\/[^/]/.test(args.service)) throw new UsageError('--service takes the http(s) URL of a pinning service endpoint, e.g. http://mirror.example:8080/psa')
    if (args['token-file'] === undefined) throw new UsageError('--token-file FILE is needed: the access token the service gave you, on one line')
    const timeout = Number(args.timeout)
    if (!(timeout > 0)) throw new UsageError(`--timeout must be a positive number of seconds, got ${args.timeout}`)
    const [token] = await readTokenFile(args['token-file'], '--token-file', m => consola.warn(m))
    const repo = repoOf(args)
    const name = await cacheName(repo, args.cache)
    if (name === undefined) throw new UsageError(await noCacheIn(repo, 'publish something first (nixipfs publish PATH)'))
    const blocks = await PackStore.openRepo(repo)
    let wanted
    try {
      wanted = await pinTargets(repo, blocks, name, repeatedArg(rawArgs, 'closure'))
    } finally {
      await blocks.close()
    }
    const origins = [...repeatedArg(rawArgs, 'origin'), ...await ownOrigins(args.gateway, wanted[0]!.cid, m => consola.warn(m))]
    consola.info(`pinning ${wanted.length} CID(s) of /ipns/${name} on ${args.service}; origins: ${origins.join(', ') || 'none'}`)
    const started = Date.now()
    const r = await pushPins({
      client: new PinningClient(args.service, token!),
      wanted,
      prefix: pinNamePrefix(name),
      origins: [...new Set(origins)].slice(0, 20),
      timeoutMs: timeout * 1000,
      onProgress: line => consola.log(line)
    })
    consola.success(`pinned ${r.pinned.length} CID(s) in ${((Date.now() - started) / 1000).toFixed(1)} s: ${r.added} added, ${r.replaced} replaced, ${r.kept} already pinned, ${r.removed} old removed; delegates: ${[...new Set(r.pinned.flatMap(p => p.delegates))].join(', ')}`)
  }
})
