import { defineCommand } from 'citty'
import { consola } from 'consola'
import { STORE_DIR } from '../constants.js'
import { UsageError } from '../errors.js'
import { dryRun, publishOrQueue, retryQueue } from '../cache/publish-request.js'
import type { PublishRequest } from '../cache/queue.js'
import { watchStore } from '../watch.js'
import { lifetimeArgs, publishOptionsOf, repoArg, repoOf } from './common.js'
import { recipeOf } from './recipes.js'
import { runUntilSignal } from './run.js'

export default defineCommand({
  meta: {
    name: 'watch',
    description: 'Publish new store paths as Nix adds them (as cachix watch-store): runs beside Nix, so it never holds up a build.\n' +
      'A failed publish is queued in the repo and retried.\n\n' +
      'Example: nixipfs watch -r'
  },
  args: {
    recursive: { type: 'boolean', alias: 'r', description: 'Publish the whole closure of each new path' },
    ...repoArg,
    'secret-key-file': { type: 'string', description: 'Nix secret key that signs (default: the repo key, created on first use)', valueHint: 'FILE' },
    chunker: { type: 'string', default: 'cdc', description: 'CID recipe for new NARs: cdc or fixed' },
    interval: { type: 'string', default: '1', description: 'Seconds between checks of paths that appeared but are not valid yet (being built; 0.1 to 3600): a path still invalid is checked less and less often, down to once a minute, until news of it' },
    ...lifetimeArgs
  },
  async run ({ args }) {
    recipeOf(args.chunker) // an unknown chunker is refused before any work
    const interval = Number(args.interval)
    // Past an hour a path would wait that long after its build; below 0.1 s (or past what a timer can wait, as
    // Infinity) Node's timer fires every millisecond.
    if (!(interval >= 0.1 && interval <= 3600)) throw new UsageError(`--interval must be a number of seconds from 0.1 to 3600, got ${args.interval}`)
    const repo = repoOf(args)
    const options = publishOptionsOf(args)
    const request = (paths: string[]): PublishRequest => ({
      paths,
      recursive: args.recursive === true,
      chunker: args.chunker,
      ...(args['secret-key-file'] !== undefined ? { secretKeyFile: args['secret-key-file'] } : {})
    })
    // What would make every publish fail (a repo that cannot be made, a key that cannot be read) is said now, not at the first build.
    await dryRun(repo, request([]))
    const watcher = await watchStore({
      intervalMs: interval * 1000,
      log: consola,
      publish: async paths => {
        const outcome = await publishOrQueue(repo, request(paths), options)
        if ('error' in outcome) {
          consola.error(`publishing ${paths.length} new path(s) failed: ${outcome.error.message}`)
          if (outcome.queued !== undefined) consola.warn(`queued in ${outcome.queued}; retried after the next publish`)
          return
        }
        consola.success(`published ${outcome.result.published.length} new path(s), ${outcome.result.skipped} already there (sequence ${outcome.result.sequence})`)
        await retryQueue(repo, options)
      }
    })
    consola.success(`watching ${STORE_DIR}: publishing new valid paths into ${repo}`)
    await runUntilSignal(watcher.stop)
  }
})
