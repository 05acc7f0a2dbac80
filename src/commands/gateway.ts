import { defineCommand } from 'citty'
import { consola } from 'consola'
import { DEFAULT_EXPIRED_GRACE_MS, HOUR_MS } from '../constants.js'
import { UsageError } from '../errors.js'
import { formatPublicKey, parsePublicKey } from '../nix/signing.js'
import { nixTrustedKeys } from '../nix/store.js'
import { startDaemon } from '../daemon.js'
import { ipnsNameOf } from '../ipfs/ipns.js'
import { cacheArg, cacheName, lifetimeArgs, lifetimeMsOf, noCacheIn, ownCacheName, repeatedArg, repoArg, repoOf, servedKeys, signingKey } from './common.js'
import { nixConfLines } from '../nix/nix-conf.js'
import { followedName, nodeArgs, nodeOptionsOf, parseSize, pinTokenArg } from './network-args.js'
import { readTokenFile } from '../net/pinning-client.js'
import { runUntilSignal } from './run.js'
import { trustPolicyOf } from './trust-args.js'
import { DEFAULT_DISCOVER_DEADLINE_MS, DEFAULT_DISCOVERED_CACHES } from '../trust/discover.js'
import type { PublicKey } from '../nix/signing.js'
import type { DaemonOptions } from '../daemon.js'

export default defineCommand({
  meta: {
    name: 'gateway',
    description: 'Serve caches to Nix as a binary cache (a substituter) over HTTP, fetching from peers what is not local.\n\n' +
      'Serves the repo\'s own cache and every --follow\'ed one; fetched blocks are kept and seeded to others.\n' +
      'Example: nixipfs gateway --follow builder-1:AbC…= --http-gateway http://mirror.example:8080, then in nix.conf:\n' +
      '  substituters = http://127.0.0.1:8080\n  trusted-public-keys = builder-1:AbC…='
  },
  args: {
    ...nodeArgs,
    ...repoArg,
    ...cacheArg,
    trust: { type: 'string', description: 'Trust this builder key (name:base64); repeatable. With trusted keys, a path is served only when --threshold of them signed the same NAR', valueHint: 'KEY' },
    'trust-file': { type: 'string', description: 'File of trusted keys, one per line (# comments)', valueHint: 'FILE' },
    threshold: { type: 'string', description: 'How many distinct trusted keys must have signed the same NarHash, NarSize and References (default 1)', valueHint: 'K' },
    prefer: { type: 'string', description: 'Without --trust: when followed caches give one path different narinfos, serve the one this key signed (besides the keys in the local Nix\'s trusted-public-keys); repeatable', valueHint: 'KEY' },
    'non-reproducible': { type: 'string', description: 'Store path names (glob, e.g. "*-doc") known not to build reproducibly: builders disagreeing on them is not recorded as a dispute; repeatable', valueHint: 'GLOB' },
    upstream: { type: 'string', description: 'HTTP binary cache to fall back to for what the served caches miss; what Nix fetches through it is imported into the own cache (write-through); repeatable', valueHint: 'URL' },
    'upstream-key': { type: 'string', description: 'Key an upstream narinfo must be signed by (repeatable; default: the --trust keys)', valueHint: 'KEY' },
    discover: { type: 'boolean', description: 'For a path no served cache has, ask the network (the DHT through --bootstrap, or --routing servers) which caches hold it and follow those under trusted keys on demand (--trust keys; without --trust, the local Nix\'s trusted-public-keys)' },
    'discover-timeout': { type: 'string', default: String(DEFAULT_DISCOVER_DEADLINE_MS / 1000), description: 'Seconds one --discover lookup may take before the path counts as missing (a miss is remembered for 5 minutes); a path a trusted cache was named for waits up to 10 s more for that cache' },
    'max-discovered': { type: 'string', default: String(DEFAULT_DISCOVERED_CACHES), description: 'Most caches --discover follows at once; the least recently useful is dropped first' },
    'max-cache': { type: 'string', description: 'Keep the repo, indexes included, under this size (e.g. 20G): NARs of followed caches asked for least recently are dropped first; the own cache and indexes are kept', valueHint: 'SIZE' },
    'expired-grace-hours': { type: 'string', default: String(DEFAULT_EXPIRED_GRACE_MS / HOUR_MS), description: 'Keep serving a cache this many hours after its record expired (with a warning), then stop' },
    ...lifetimeArgs,
    ...pinTokenArg
  },
  async run ({ args, rawArgs }) {
    const node = nodeOptionsOf(args, rawArgs) // flags checked before any work
    const repo = repoOf(args)
    const follow = repeatedArg(rawArgs, 'follow').map(followedName)
    const upstreamUrls = repeatedArg(rawArgs, 'upstream')
    const pinTokens = args['pin-token-file'] === undefined ? undefined : await readTokenFile(args['pin-token-file'], '--pin-token-file', m => consola.warn(m))
    const trust = await trustPolicyOf(args, rawArgs)
    // A union must not hide the narinfo the local Nix would accept behind another cache's (Nix itself would try the next substituter).
    const nixKeys = trust === undefined ? await nixTrustedKeys().catch((err: Error) => { consola.warn(`reading the local Nix's trusted-public-keys failed (${err.message}); preferring only --prefer keys${args.discover === true ? ', and --discover finds nothing' : ''}`); return [] }) : []
    const prefer = [...repeatedArg(rawArgs, 'prefer').map(parsePublicKey), ...nixKeys]
    const discover = args.discover === true ? discoverOptionsOf(args, trust?.keys ?? nixKeys, trust === undefined, node.network) : undefined
    const upstreamKeys = [...repeatedArg(rawArgs, 'upstream-key').map(parsePublicKey), ...(trust?.keys ?? [])]
    if (upstreamUrls.length > 0 && upstreamKeys.length === 0) throw new UsageError('--upstream needs the keys its narinfos must be signed by: --upstream-key KEY (or --trust KEY)')
    // What comes through an upstream is written into the own cache, so it needs an own key.
    const upstreamKey = upstreamUrls.length > 0 ? await signingKey(repo, undefined, true) : undefined
    // A node that follows caches serves its own only if it has one (a repo may hold many followed records).
    const own = upstreamKey !== undefined && args.cache === undefined
      ? ipnsNameOf(upstreamKey.publicKey)
      : follow.length > 0 && args.cache === undefined ? await ownCacheName(repo) : await cacheName(repo, args.cache)
    if (own === undefined && follow.length === 0 && discover === undefined && pinTokens === undefined) throw new UsageError(await noCacheIn(repo, 'publish something first (nixipfs publish PATH), follow one with --follow KEY, or fall back to one with --upstream URL'))
    const graceHours = Number(args['expired-grace-hours'])
    if (!(graceHours >= 0)) throw new UsageError(`--expired-grace-hours must be a number ≥ 0, got ${args['expired-grace-hours']}`)
    const recordLifetimeMs = lifetimeMsOf(args)
    // Serving our own cache with its key at hand: keep its record from expiring.
    const ownKey = await signingKey(repo, undefined, false).catch(() => undefined)
    const keepFresh = ownKey !== undefined && ipnsNameOf(ownKey.publicKey) === own
    const daemon = await startDaemon({
      repo,
      own,
      ownKey: keepFresh ? ownKey : undefined,
      republish: { recordLifetimeMs, continueSequence: args['continue-sequence'] === true },
      retryQueued: { recordLifetimeMs, continueSequence: args['continue-sequence'] === true },
      follow,
      pin: 'index',
      closures: [],
      pinTokens,
      trust,
      prefer,
      discover,
      upstream: upstreamKey === undefined ? undefined : { urls: upstreamUrls, keys: upstreamKeys, key: upstreamKey },
      maxCacheBytes: args['max-cache'] === undefined ? undefined : parseSize(args['max-cache'], '--max-cache'),
      expiredGraceMs: graceHours * HOUR_MS,
      ...node
    })
    consola.info(trust === undefined
      ? 'trust: no --trust keys; a path is served from the first cache that has it (Nix checks its signature)'
      : trust.keys.length === 1
        ? `trust: a path is served only when this key signed it: ${formatPublicKey(trust.keys[0]!)}`
        : `trust: a path is served only when ${trust.threshold} of these ${trust.keys.length} keys signed the same NAR: ${trust.keys.map(formatPublicKey).join(', ')}`)
    if (node.network.offline) consola.info('p2p: off (--offline)')
    for (const address of daemon.network.addresses) consola.info(`p2p: listening on ${address}`)
    const names = [own, ...follow].filter(n => n !== undefined).map(n => `/ipns/${n}`)
    consola.success(`serving ${names.length > 0 ? names.join(', ') : 'no cache of its own and none followed (what discovery or an upstream finds)'} at ${daemon.gateway.url}`)
    // The exact nix.conf lines, key included: without a trusted key Nix refuses every built path.
    const conf = nixConfLines(daemon.gateway.url, await servedKeys(repo, rawArgs))
    consola.info(`use it from Nix: add to nix.conf (nixipfs use --write does), or NIX_CONFIG="$(nixipfs use)" for one command:\n${conf.map(l => `  ${l}`).join('\n')}`)
    await runUntilSignal(daemon.stop)
  }
})

/** What `--discover` needs: trusted keys, a deadline, a bound; and a network to ask. */
function discoverOptionsOf (args: Record<string, unknown>, keys: PublicKey[], requireSignature: boolean, network: DaemonOptions['network']): NonNullable<DaemonOptions['discover']> {
  // Providers answer "which caches hold this path" over libp2p: --offline cannot ask them.
  if (network.offline || ((network.bootstrap ?? []).length === 0 && (network.routing ?? []).length === 0)) throw new UsageError('--discover asks the network: give --bootstrap MULTIADDR or --routing URL (and no --offline)')
  const seconds = Number(args['discover-timeout'])
  if (!(seconds > 0)) throw new UsageError(`--discover-timeout must be a positive number of seconds, got ${String(args['discover-timeout'])}`)
  const maxCaches = Number(args['max-discovered'])
  if (!Number.isInteger(maxCaches) || maxCaches < 1) throw new UsageError(`--max-discovered must be a whole number ≥ 1, got ${String(args['max-discovered'])}`)
  return { keys, requireSignature, deadlineMs: seconds * 1000, maxCaches }
}
