import { defineCommand } from 'citty'
import { consola } from 'consola'
import { UsageError } from '../errors.js'
import { importFromUpstream } from '../upstream/import.js'
import { PackStore } from '../ipfs/pack-store.js'
import { formatBytes, Progress } from '../progress.js'
import { parsePublicKey } from '../nix/signing.js'
import { HttpBinaryCache } from '../upstream/http-cache.js'
import { lifetimeArgs, lifetimeMsOf, repeatedArg, repoArg, repoOf, signingKey } from './common.js'
import { recipeOf } from './recipes.js'

export default defineCommand({
  meta: {
    name: 'import',
    description: 'Import store paths from an HTTP binary cache (cache.nixos.org, Cachix, Attic, Harmonia…) into the repo\'s cache, keeping their signatures.\n' +
      'Every narinfo must be signed by a --trust key and every NAR must match its NarHash; paths already imported are skipped.\n\n' +
      'Example: nixipfs import --from https://cache.nixos.org --trust cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY= -r /nix/store/…-hello-2.12'
  },
  args: {
    path: { type: 'positional', required: true, description: 'Store paths (or their 32-character hashes) to import' },
    from: { type: 'string', required: true, description: 'URL of the binary cache to import from', valueHint: 'URL' },
    trust: { type: 'string', description: 'Upstream public key whose signature a narinfo must carry; repeatable', valueHint: 'KEY' },
    recursive: { type: 'boolean', alias: 'r', description: 'Import the closure each path\'s narinfo References describe' },
    sign: { type: 'boolean', description: 'Add the own signature to each imported narinfo (beside the upstream ones)' },
    concurrency: { type: 'string', default: '4', description: 'NARs downloaded at once' },
    timeout: { type: 'string', default: '30', description: 'Seconds an upstream may stay silent before the request fails (retried twice)' },
    ...repoArg,
    'secret-key-file': { type: 'string', description: 'Own key (signs the record, and narinfos with --sign)', valueHint: 'FILE' },
    ...lifetimeArgs
  },
  async run ({ args, rawArgs }) {
    const trust = repeatedArg(rawArgs, 'trust').map(parsePublicKey)
    if (trust.length === 0) throw new UsageError('name the upstream\'s public key with --trust KEY: imported narinfos must carry a valid signature by it')
    const concurrency = Number(args.concurrency)
    const timeout = Number(args.timeout)
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new UsageError(`--concurrency must be a whole number ≥ 1, got ${args.concurrency}`)
    if (!(timeout > 0)) throw new UsageError(`--timeout must be a positive number of seconds, got ${args.timeout}`)
    const repo = repoOf(args)
    const key = await signingKey(repo, args['secret-key-file'], true)
    const upstream = new HttpBinaryCache(args.from, { timeoutMs: timeout * 1000, connections: concurrency })
    const blocks = await PackStore.openRepo(repo)
    const progress = new Progress('importing')
    try {
      const r = await importFromUpstream({ repo, blocks }, {
        upstream,
        paths: args._,
        recursive: args.recursive === true,
        trust,
        key,
        sign: args.sign === true,
        recipe: recipeOf('cdc'),
        recordLifetimeMs: lifetimeMsOf(args),
        concurrency,
        onTotal: bytes => progress.setTotal(bytes),
        onBytes: bytes => progress.add(bytes),
        onImported: (path, narSize) => {
          progress.clear()
          consola.log(`${path} (${formatBytes(narSize)})`)
        }
      })
      progress.stop()
      consola.success(`imported ${r.imported} path(s), ${r.skipped} already there; NAR ${progress.status()}`)
    } finally {
      progress.stop()
      await blocks.close()
      await upstream.close()
    }
  }
})
