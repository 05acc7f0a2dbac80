import { defineCommand } from 'citty'
import { consola } from 'consola'
import { UsageError } from '../errors.js'
import type { PublishResult } from '../cache/publish.js'
import { dryRun, publishOrQueue, publishRequest, retryQueue, type RequestOptions } from '../cache/publish-request.js'
import type { PublishRequest } from '../cache/queue.js'
import { Progress } from '../progress.js'
import { lifetimeArgs, lifetimeMsOf, publishOptionsOf, repeatedArg, repoArg, repoOf } from './common.js'
import { recipeOf } from './recipes.js'
import { networkOptionsOf, nodeArgs } from './network-args.js'
import { loadRecord } from '../cache/records.js'

/** The directory of a chroot store given as DIR or as Nix's `local?root=DIR`: its files are read from there. */
function storeRootOf (store: string): string {
  const root = store.startsWith('/') ? store : /^local\?(?:.*&)?root=([^&]+)/.exec(store)?.[1]
  if (root === undefined) throw new UsageError(`--store takes a chroot store directory (DIR or local?root=DIR), got ${JSON.stringify(store)}`)
  return decodeURIComponent(root)
}

export default defineCommand({
  meta: {
    name: 'publish',
    description: 'Publish store paths into the repo\'s IPFS cache and sign a new IPNS record.\n' +
      'With no PATH, publishes $OUT_PATHS, else the outputs of $DRV_PATH (what Nix gives a post-build hook).\n' +
      'Failed publishes queued in the repo are retried after each publish.\n\n' +
      'Example: nixipfs publish -r $(nix-build -A hello)   As a post-build hook: nixipfs publish --hook'
  },
  args: {
    path: { type: 'positional', required: false, description: 'Store paths to publish (default: $OUT_PATHS, else the outputs of $DRV_PATH)' },
    recursive: { type: 'boolean', alias: 'r', description: 'Publish the whole closure of each path' },
    hook: { type: 'boolean', description: 'Run as a Nix post-build-hook: never fail the build; a failed publish is logged and queued in the repo (retried by the next publish or a running gateway)' },
    'dry-run': { type: 'boolean', description: 'Check that a publish could work (Nix, repo, key) and publish nothing' },
    ...repoArg,
    'secret-key-file': { type: 'string', description: 'Nix secret key that signs narinfos and the record (default: the repo key, created on first use)', valueHint: 'FILE' },
    store: { type: 'string', description: 'Publish from a chroot Nix store in DIR (as made by nix build --store DIR; local?root=DIR too) instead of /nix/store', valueHint: 'DIR' },
    bootstrap: { ...nodeArgs.bootstrap, description: 'After publishing, put the new IPNS record into the IPFS DHT through this libp2p peer (repeatable; "public" for the public IPFS network). A running gateway announces the rest' },
    routing: nodeArgs.routing,
    chunker: { type: 'string', default: 'cdc', description: 'CID recipe for new NARs: cdc (content-defined, recipe cdc-v1) or fixed (256 KiB chunks, like ipfs add)' },
    ...lifetimeArgs
  },
  async run ({ args, rawArgs }) {
    recipeOf(args.chunker) // an unknown chunker is refused before any work
    const network = networkOptionsOf({}, rawArgs) // a bad --bootstrap too
    lifetimeMsOf(args) // a bad --lifetime-hours is refused before any work, a dry run included
    const outPaths = (process.env.OUT_PATHS ?? '').split(/\s+/).filter(p => p !== '')
    const drv = process.env.DRV_PATH === undefined || process.env.DRV_PATH === '' ? undefined : process.env.DRV_PATH
    const request: PublishRequest = {
      paths: args._.length > 0 ? args._ : outPaths,
      ...(args._.length === 0 && outPaths.length === 0 && drv !== undefined ? { drv } : {}),
      recursive: args.recursive === true,
      ...(args.store !== undefined ? { storeRoot: storeRootOf(args.store) } : {}),
      ...(args['secret-key-file'] !== undefined ? { secretKeyFile: args['secret-key-file'] } : {}),
      chunker: args.chunker
    }
    const repo = repoOf(args)
    if (args['dry-run'] === true) {
      for (const line of await dryRun(repo, request)) consola.log(line)
      if (args.hook === true) consola.log('as a hook: a failed publish is queued and never fails the build')
      consola.success('dry run: publishing would work')
      return
    }
    if (request.paths.length === 0 && request.drv === undefined) {
      if (args.hook === true) { consola.warn('nixipfs publish --hook: $OUT_PATHS and $DRV_PATH are empty; nothing to publish'); return }
      throw new UsageError('no store paths given, and $OUT_PATHS and $DRV_PATH are empty')
    }
    const progress = new Progress('publishing')
    const options: RequestOptions = {
      ...publishOptionsOf(args, () => progress.clear()),
      onTotal: bytes => progress.setTotal(bytes),
      onBytes: bytes => progress.add(bytes)
    }
    let published: string | undefined
    const report = async (result: PublishResult): Promise<void> => {
      published = result.name
      progress.stop()
      consola.success(`published ${result.published.length} path(s), ${result.skipped} already there; NAR ${progress.status()}`)
      consola.log(`root:     /ipfs/${result.root.toString()}`)
      consola.log(`name:     /ipns/${result.name} (sequence ${result.sequence})`)
      const routing = repeatedArg(rawArgs, 'routing')
      const record = routing.length === 0 ? undefined : await loadRecord(repo, result.name)
      // Loaded only when used: the network modules take longer to load than a small publish takes to run.
      if (record !== undefined) await (await import('../net/record-push.js')).putToRoutingServers(record, routing, consola)
    }
    try {
      if (args.hook === true) {
        // A post-build hook that exits non-zero fails the build: publishing must never do that.
        const outcome = await publishOrQueue(repo, request, options)
        if ('error' in outcome) {
          consola.error(`nixipfs publish --hook: ${outcome.error.message}`)
          if (outcome.queued !== undefined) consola.warn(`queued in ${outcome.queued}; the next publish or a running gateway retries it`)
          return
        }
        await report(outcome.result)
      } else {
        await report(await publishRequest(repo, request, options))
      }
      // Queued requests report their own paths, not this run's progress.
      await retryQueue(repo, { ...options, onTotal: undefined, onBytes: undefined }).catch((err: Error) => consola.warn(`retrying queued publishes failed: ${err.message}`))
    } finally {
      progress.stop()
    }
    if (published !== undefined && (network.bootstrap ?? []).length > 0) {
      const name = published
      await putIntoDht(repo, name, network).then(
        () => consola.success(`put the record of /ipns/${name} into the DHT`),
        (err: Error) => consola.warn(`the record of /ipns/${name} is published in the repo, but putting it into the DHT failed: ${err.message}; a gateway running on this repo with --bootstrap puts it there`))
    }
  }
})

/** Joins the DHT on a free loopback port for as long as putting the record of `name` there takes. */
async function putIntoDht (repo: string, name: string, options: ReturnType<typeof networkOptionsOf>): Promise<void> {
  const [{ PackStore }, { startNetwork }, { putRecordOnce }] = await Promise.all([import('../ipfs/pack-store.js'), import('../net/network.js'), import('../cache/announce.js')])
  const blocks = await PackStore.openRepo(repo)
  const network = await startNetwork(repo, blocks, { ...options, listen: ['/ip4/127.0.0.1/tcp/0'], log: { info: () => {}, warn: (m: string) => consola.warn(m), debug: (m: string) => consola.debug(m) } })
  try {
    await putRecordOnce(repo, name, network.routing!)
  } finally {
    await network.stop()
    await blocks.close()
  }
}
