import { defineCommand } from 'citty'
import { consola } from 'consola'
import { collectGarbage } from '../cache/gc.js'
import type { BlockCount } from '../ipfs/pack-compact.js'
import { PackStore } from '../ipfs/pack-store.js'
import { existingRepoOf, repoArg } from './common.js'
import { formatBytes } from '../progress.js'

const count = (c: BlockCount): string => `${c.blocks} blocks, ${formatBytes(c.bytes)}`

export default defineCommand({
  meta: {
    name: 'gc',
    description: 'Drop the blocks that no cache root reaches and compact the block store.\n' +
      'Keeps everything reachable from the records in the repo (its own cache and followed caches) and the CIDs in <repo>/pins.\n\n' +
      'Example: nixipfs gc --dry-run, then nixipfs gc'
  },
  args: {
    ...repoArg,
    'dry-run': { type: 'boolean', description: 'Only count what would be dropped; change nothing' }
  },
  async run ({ args }) {
    const repo = await existingRepoOf(args)
    const dryRun = args['dry-run'] === true
    const blocks = await PackStore.openRepo(repo)
    try {
      const r = await collectGarbage(repo, blocks, {
        dryRun,
        onWait: pid => consola.info(`waiting for another process (pid ${pid}) to release the repo lock`)
      })
      consola.log(`roots:    ${r.roots.records} record(s), ${r.roots.pins} pin(s)`)
      consola.log(`before:   ${count(r.before)}`)
      consola.log(`kept:     ${count(r.kept)}`)
      consola.log(`${dryRun ? 'to drop' : 'dropped'}:  ${count(r.dropped)}`)
      if (r.missing > 0) consola.log(`missing:  ${r.missing} block(s) reachable but not in the repo (kept caches stored in part)`)
      consola.log(`packs:    ${formatBytes(r.packBytes.before)} -> ${formatBytes(r.packBytes.after)} on disk`)
      if (r.frames !== undefined) consola.log(`frames:   ${count(r.frames.before)} compressed ahead -> ${count(r.frames.kept)}`)
      if (!dryRun) consola.log(`table:    ${formatBytes(r.tableBytes.before)} -> ${formatBytes(r.tableBytes.after)} in the memory of a process serving the repo (mark set: ${formatBytes(r.markBytes)})`)
      if (dryRun) consola.info('dry run: nothing was changed')
    } finally {
      await blocks.close()
    }
  }
})
