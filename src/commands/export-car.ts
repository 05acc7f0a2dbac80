import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { defineCommand } from 'citty'
import { consola } from 'consola'
import { CID } from 'multiformats/cid'
import { closureExport, dagExport, type CarSelection } from '../cache/export.js'
import { loadRecord } from '../cache/records.js'
import { RepoError, UsageError } from '../errors.js'
import { carBytes } from '../ipfs/car.js'
import { PackStore } from '../ipfs/pack-store.js'
import { writeStreamAtomic } from '../atomic.js'
import { cacheArg, cacheName, existingRepoOf, noCacheIn, repeatedArg, repoArg } from './common.js'
import { formatBytes } from '../progress.js'

/** Passes `source` through, adding each item and its size to `tally`. */
async function * tallied<T> (source: AsyncIterable<T>, size: (item: T) => number, tally: { n: number, bytes: number }): AsyncGenerator<T> {
  for await (const item of source) {
    tally.n++
    tally.bytes += size(item)
    yield item
  }
}

export default defineCommand({
  meta: {
    name: 'export-car',
    description: [
      'Write blocks of the repo as a CARv1 file: the whole cache (default), one DAG (--root), or the closure of store paths as the cache knows it (--closure, repeatable).',
      'Any IPFS node imports it (ipfs dag import); a file is written atomically.',
      '',
      'Example: nixipfs export-car -o cache.car',
      'Example: nixipfs export-car --closure /nix/store/…-hello-2.12 --closure /nix/store/…-bash-5.2 -o hello.car'
    ].join('\n')
  },
  args: {
    ...repoArg,
    ...cacheArg,
    output: { type: 'string', alias: 'o', description: 'File to write, or - for stdout (default: -, refused when stdout is a terminal)', valueHint: 'FILE|-' },
    root: { type: 'string', description: 'Export the DAG under this CID instead of the cache root', valueHint: 'CID' },
    closure: { type: 'string', description: 'Export the closure of this store path (or its 32-character hash) as the cache\'s narinfos describe it: its narinfos and NARs; repeat for several paths', valueHint: 'STORE_PATH' }
  },
  async run ({ args, rawArgs }) {
    const repo = await existingRepoOf(args)
    const closure = repeatedArg(rawArgs, 'closure')
    if (args.root !== undefined && closure.length > 0) throw new UsageError('give either --root or --closure, not both')
    const output = args.output === undefined || args.output === '' ? '-' : args.output
    if (output === '-' && process.stdout.isTTY === true) throw new UsageError('refusing to write a CAR to a terminal; give -o FILE or redirect stdout')
    let root: CID | undefined
    if (args.root !== undefined) {
      try { root = CID.parse(args.root) } catch { throw new UsageError(`--root ${args.root} is not a CID`) }
    }
    // A CAR on stdout must not be mixed with messages.
    const log = consola.create({ stdout: process.stderr })
    const blocks = await PackStore.openRepo(repo)
    try {
      let selection: CarSelection
      if (root !== undefined) selection = dagExport(blocks, root)
      else {
        const name = await cacheName(repo, args.cache)
        const record = name === undefined ? undefined : await loadRecord(repo, name)
        if (record === undefined) throw new RepoError(await noCacheIn(repo, 'run `nixipfs publish` first, or give --root'))
        selection = closure.length > 0 ? await closureExport(blocks, record.root, closure) : dagExport(blocks, record.root)
      }
      const sent = { n: 0, bytes: 0 }
      const written = { n: 0, bytes: 0 }
      const car = tallied(carBytes(selection.roots, tallied(selection.blocks, b => b.bytes.length, sent)), c => c.length, written)
      if (output === '-') await pipeline(Readable.from(car), process.stdout, { end: false })
      else await writeStreamAtomic(output, car)
      log.success(`wrote ${sent.n} blocks, ${formatBytes(written.bytes)} (${selection.roots.length} root${selection.roots.length === 1 ? '' : 's'}) to ${output === '-' ? 'stdout' : output}`)
    } finally {
      await blocks.close()
    }
  }
})
