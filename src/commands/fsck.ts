import { defineCommand } from 'citty'
import { consola } from 'consola'
import { fsck, type FsckResult } from '../fsck.js'
import { RepoDamagedError, RepoError } from '../errors.js'
import { PackStore } from '../ipfs/pack-store.js'
import { startNetwork } from '../net/network.js'
import { runningFetcher, withRepoLock } from '../repo.js'
import { HttpBinaryCache } from '../upstream/http-cache.js'
import { existingRepoOf, ownCacheName, repeatedArg, repoArg } from './common.js'
import { networkOptionsOf, nodeArgs } from './network-args.js'
import { formatBytes } from '../progress.js'

function summary (r: FsckResult): string {
  return `checked ${r.blocks.checked} blocks (${formatBytes(r.blocks.bytes)}), ${r.nars.checked} NARs` +
    (r.nars.notHeld > 0 ? ` (${r.nars.notHeld} NARs of followed caches not held, fetched when asked for)` : '')
}

export default defineCommand({
  meta: {
    name: 'fsck',
    description: 'Check the repo: every block against its pack bytes and its CID, every NAR the records reach against its NarHash.\n' +
      'With --repair, drops the records of damaged blocks and fetches them again from --http-gateway / --peer peers, and takes NARs still damaged back from the local Nix store (paths still valid there) or imports them again from --upstream caches. Exit 1 while damage remains.\n\n' +
      'Example: nixipfs fsck, then nixipfs fsck --repair --http-gateway http://mirror.example:8080'
  },
  args: {
    ...repoArg,
    repair: { type: 'boolean', description: 'Drop the records of damaged blocks and fetch those blocks again from peers' },
    'http-gateway': nodeArgs['http-gateway'],
    upstream: { type: 'string', description: 'HTTP binary cache to import a NAR still damaged after the peers from again (checked against the cache\'s own NarHash); repeatable', valueHint: 'URL' },
    peer: nodeArgs.peer,
    'peer-timeout': nodeArgs['peer-timeout'],
    'peer-connections': nodeArgs['peer-connections']
  },
  async run ({ args, rawArgs }) {
    const repo = await existingRepoOf(args)
    const repair = args.repair === true
    const blocks = await PackStore.openRepo(repo)
    try {
      let fetched = 0
      const check = async (): Promise<FsckResult> => {
        // libp2p only when a --peer is named: a check should not listen on ports.
        const options = networkOptionsOf({ ...args, offline: !rawArgs.includes('--peer') }, rawArgs)
        const network = repair && (options.httpGateways.length > 0 || options.peers.length > 0)
          ? await startNetwork(repo, blocks, { ...options, listen: options.listen.map(a => a.replace(/\/tcp\/\d+/, '/tcp/0')), log: consola })
          : undefined
        const upstreams = repeatedArg(rawArgs, 'upstream').map(url => new HttpBinaryCache(url, { timeoutMs: options.peerTimeoutMs }))
        try {
          return await fsck(repo, blocks, {
            own: await ownCacheName(repo),
            repair,
            fetch: network?.blocks,
            upstreams,
            onDamage: d => consola.log(`damaged ${d.kind} ${d.what}: ${d.reason}`)
          })
        } finally {
          const c = network?.blocks.counters
          fetched = c === undefined ? 0 : c.http + c.car + c.bitswap
          await network?.stop()
          for (const u of upstreams) await u.close()
        }
      }
      const r = repair
        ? await withRepoLock(repo, async () => {
          const fetcher = await runningFetcher(repo)
          if (fetcher !== undefined) throw new RepoError(`a gateway or mirror (pid ${fetcher}) writes into ${repo}; stop it, run fsck --repair, start it again`)
          return await check()
        }, pid => consola.info(`waiting for another process (pid ${pid}) to release the repo lock`))
        : await check()
      consola.log(summary(r))
      const repaired = repair && (r.repaired.dropped > 0 || fetched > 0 || r.nars.fromStore > 0 || r.nars.fromUpstream > 0)
      if (repaired) consola.log(`repaired: dropped ${r.repaired.dropped} damaged block record(s); fetched ${fetched} block(s) again from peers; took ${r.nars.fromStore} NAR(s) back from the local Nix store; imported ${r.nars.fromUpstream} NAR(s) again from upstreams`)
      if (r.damage.length > 0) {
        const items = r.damage.length === 1 ? '1 damaged item' : `${r.damage.length} damaged items`
        throw new RepoDamagedError(repair
          ? `${items} in ${repo} ${r.damage.length === 1 ? 'remains' : 'remain'} after the repair: no peer, upstream or the local Nix store had them (add --http-gateway, --peer or --upstream)`
          : `${items} in ${repo}; run \`nixipfs fsck --repair --http-gateway URL\` to drop them and fetch them again`)
      }
      consola.log(repaired ? 'no damage left' : 'no damage found')
    } finally {
      await blocks.close()
    }
  }
})
