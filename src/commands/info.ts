import { defineCommand } from 'citty'
import { consola } from 'consola'
import { listNarInfos } from '../cache/index.js'
import { loadRecord } from '../cache/records.js'
import { PackStore } from '../ipfs/pack-store.js'
import { cacheArg, cacheName, existingRepoOf, repoArg } from './common.js'

export default defineCommand({
  meta: {
    name: 'info',
    description: 'Show the repo\'s cache: IPNS name, root CID, sequence, expiry and entry count.\n\nExample: nixipfs info'
  },
  args: {
    ...repoArg,
    ...cacheArg
  },
  async run ({ args }) {
    const repo = await existingRepoOf(args)
    const name = await cacheName(repo, args.cache)
    consola.log(`repo:     ${repo}`)
    if (name === undefined) { consola.log('cache:    none yet (run nixipfs publish)'); return }
    consola.log(`name:     /ipns/${name}`)
    const record = await loadRecord(repo, name)
    if (record === undefined) { consola.log('record:   none yet (run nixipfs publish)'); return }
    consola.log(`root:     /ipfs/${record.root.toString()}`)
    consola.log(`sequence: ${record.sequence}`)
    consola.log(`expires:  ${record.validity}${Date.parse(record.validity) < Date.now() ? ' (EXPIRED)' : ''}`)
    const blocks = await PackStore.openRepo(repo)
    try {
      let entries = 0
      for await (const _ of listNarInfos(blocks, record.root)) entries++
      consola.log(`entries:  ${entries}`)
    } finally {
      await blocks.close()
    }
  }
})
