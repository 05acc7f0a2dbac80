import { defineCommand } from 'citty'
import { consola } from 'consola'
import { IntegrityError, UsageError } from '../errors.js'
import { PackStore } from '../ipfs/pack-store.js'
import { PRECOMPRESS_LEVEL, precompressBlocks, type PrecompressResult } from '../ipfs/precompressed.js'
import { formatBytes, Progress } from '../progress.js'
import { withRepoLock } from '../repo.js'
import { existingRepoOf, repoArg } from './common.js'

export default defineCommand({
  meta: {
    name: 'precompress',
    description: 'Compress the repo\'s blocks ahead, for peers that fetch them with zstd.\n' +
      'A gateway or mirror over the repo then sends those frames as they are instead of compressing each response: ' +
      'no compression CPU per client. Each block is a frame of its own at a slow level: on binaries a little smaller ' +
      'than compressing on the fly, on very repetitive text (where 1 MiB frames see more) larger. Only blocks that ' +
      'match their CIDs are compressed, and frames found damaged are made again. Compresses only blocks not done yet, ' +
      'so it can run again after each publish or follow (from cron, say); a running gateway takes the new frames ' +
      'within seconds. Needs disk for the frames: about a third of the packs for binaries. gc drops the frames of ' +
      'the blocks it drops.\n\n' +
      'Example: nixipfs precompress --repo /srv/nixipfs'
  },
  args: {
    ...repoArg,
    level: { type: 'string', default: String(PRECOMPRESS_LEVEL), description: 'zstd level, 1–19: 9 compresses 25–45 MB/s on one core; 19 a little smaller, many times slower' }
  },
  async run ({ args }) {
    const level = /^\d{1,2}$/.test(args.level) ? Number(args.level) : NaN
    if (!(level >= 1 && level <= 19)) throw new UsageError(`--level must be a whole number from 1 to 19, got ${JSON.stringify(args.level)}`)
    const repo = await existingRepoOf(args)
    const blocks = await PackStore.openRepo(repo)
    const progress = new Progress('precompressing')
    let r: PrecompressResult
    try {
      r = await withRepoLock(repo, async () => await precompressBlocks(repo, blocks, { level, onBlock: bytes => progress.add(bytes) }),
        pid => consola.info(`waiting for another process (pid ${pid}) to release the repo lock`))
    } finally {
      progress.stop()
      await blocks.close()
    }
    const { compressed: c } = r
    const ratio = c.frameBytes === 0 ? '' : ` (${(c.bytes / c.frameBytes).toFixed(2)}×)`
    consola.log(`compressed: ${c.blocks} blocks, ${formatBytes(c.bytes)} -> ${formatBytes(c.frameBytes)}${ratio} at level ${level}`)
    consola.log(`already:    ${r.already} blocks`)
    if (r.replaced > 0) consola.log(`replaced:   ${r.replaced} damaged frames (CRC-32 mismatch)`)
    if (r.corrupt.length > 0) throw new IntegrityError(`${r.corrupt.length} block(s) do not match their CIDs and were not compressed (the first: ${r.corrupt[0]!}); run nixipfs fsck --repair, then precompress again`)
  }
})
