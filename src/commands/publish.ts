import { defineCommand } from 'citty'
import { consola } from 'consola'
import { UsageError } from '../errors.js'
import { publish } from '../cache/publish.js'
import { PackStore } from '../ipfs/pack-store.js'
import { formatBytes, Progress } from '../progress.js'
import { lifetimeArgs, lifetimeMsOf, repoArg, repoOf, signingKey } from './common.js'
import { recipeOf } from './recipes.js'

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
      'With no PATH, publishes $OUT_PATHS, so it works as a Nix post-build-hook.\n\n' +
      'Example: nixipfs publish -r $(nix-build -A hello)'
  },
  args: {
    path: { type: 'positional', required: false, description: 'Store paths to publish (default: $OUT_PATHS)' },
    recursive: { type: 'boolean', alias: 'r', description: 'Publish the whole closure of each path' },
    ...repoArg,
    'secret-key-file': { type: 'string', description: 'Nix secret key that signs narinfos and the record (default: the repo key, created on first use)', valueHint: 'FILE' },
    store: { type: 'string', description: 'Publish from a chroot Nix store in DIR (as made by nix build --store DIR; local?root=DIR too) instead of /nix/store', valueHint: 'DIR' },
    chunker: { type: 'string', default: 'cdc', description: 'CID recipe for new NARs: cdc (content-defined, recipe cdc-v1) or fixed (256 KiB chunks, like ipfs add)' },
    ...lifetimeArgs
  },
  async run ({ args }) {
    const paths = args._.length > 0 ? args._ : (process.env.OUT_PATHS ?? '').split(/\s+/).filter(p => p !== '')
    if (paths.length === 0) throw new UsageError('no store paths given, and $OUT_PATHS is empty')
    const recordLifetimeMs = lifetimeMsOf(args)
    const recipe = recipeOf(args.chunker)
    const storeRoot = args.store === undefined ? undefined : storeRootOf(args.store)
    const repo = repoOf(args)
    const key = await signingKey(repo, args['secret-key-file'], true)
    const blocks = await PackStore.openRepo(repo)
    const progress = new Progress('publishing')
    try {
      const result = await publish({ repo, blocks }, {
        paths,
        recursive: args.recursive === true,
        storeRoot,
        key,
        recipe,
        recordLifetimeMs,
        continueSequence: args['continue-sequence'] === true,
        onTotal: bytes => progress.setTotal(bytes),
        onBytes: bytes => progress.add(bytes),
        onPublished: (path, nar, narSize) => {
          progress.clear()
          consola.log(`${path} -> ${nar.toString()} (${formatBytes(narSize)})`)
        },
        onWait: pid => consola.info(`waiting for another publish (pid ${pid}) to finish`)
      })
      progress.stop()
      consola.success(`published ${result.published.length} path(s), ${result.skipped} already there; NAR ${progress.status()}`)
      consola.log(`root:     /ipfs/${result.root.toString()}`)
      consola.log(`name:     /ipns/${result.name} (sequence ${result.sequence})`)
    } finally {
      progress.stop()
      await blocks.close()
    }
  }
})
