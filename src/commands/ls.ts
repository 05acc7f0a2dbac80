import { defineCommand } from 'citty'
import { consola } from 'consola'
import { RepoError } from '../errors.js'
import { listNarInfos, openIndex } from '../cache/index.js'
import { loadRecord } from '../cache/records.js'
import { PackStore } from '../ipfs/pack-store.js'
import { cacheArg, cacheName, noCacheIn, repoArg, repoOf } from './common.js'

export default defineCommand({
  meta: {
    name: 'ls',
    description: 'List the store paths in the repo\'s cache, one per line: store path, NAR size, NAR URL. Streams, so it is fine for a million entries.\n\nExample: nixipfs ls | grep hello'
  },
  args: {
    ...repoArg,
    ...cacheArg
  },
  async run ({ args }) {
    const repo = repoOf(args)
    const name = await cacheName(repo, args.cache)
    const record = name === undefined ? undefined : await loadRecord(repo, name)
    if (name === undefined || record === undefined) throw new RepoError(await noCacheIn(repo, 'run `nixipfs publish` first'))
    const blocks = await PackStore.openRepo(repo)
    try {
      const index = await openIndex(blocks, record.root)
      for await (const { hash } of listNarInfos(blocks, record.root)) {
        const entry = await index.narInfo(hash)
        if (entry !== undefined) process.stdout.write(`${entry.info.storePath}\t${entry.info.narSize}\t${entry.info.url}\n`)
      }
    } finally {
      await blocks.close()
    }
    consola.debug(`listed /ipns/${name}`)
  }
})
