import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { FsDatastore } from 'datastore-fs'
import { createHeliaLight, type Helia } from 'helia'
import { PackStore } from './pack-store.js'

/** An embedded Helia node on an on-disk repo. */
export interface IpfsNode {
  helia: Helia
  /** the repo's own block store (local blocks only, unverified reads) */
  blocks: PackStore
  /** the repo directory */
  repo: string
  stop: () => Promise<void>
}

/**
 * Opens (creating if needed) the embedded Helia node in `repo`: blocks in
 * pack files under `packs/`, node state under `datastore/`. Offline: no
 * networking, no routing. Loading Helia takes seconds, so commands that only
 * touch local blocks use `PackStore.openRepo` instead.
 */
export async function openNode (repo: string): Promise<IpfsNode> {
  await mkdir(repo, { recursive: true })
  const blocks = await PackStore.openRepo(repo)
  const datastore = new FsDatastore(join(repo, 'datastore'))
  await datastore.open()
  const helia = createHeliaLight({ blockstore: blocks, datastore, blockBrokers: [], routers: [] })
  await helia.start()
  return {
    helia,
    blocks,
    repo,
    stop: async () => {
      await helia.stop()
      await blocks.close()
      await datastore.close()
    }
  }
}
