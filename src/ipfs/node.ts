import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { FsBlockstore } from 'blockstore-fs'
import { FsDatastore } from 'datastore-fs'
import { createHeliaLight, type Helia } from 'helia'

/** An embedded Helia node on an on-disk repo. */
export interface IpfsNode {
  helia: Helia
  /** the repo directory */
  repo: string
  stop: () => Promise<void>
}

/**
 * Opens (creating if needed) the embedded Helia node in `repo`: blocks under
 * `blocks/`, node state under `datastore/`. Offline: no networking, no routing.
 */
export async function openNode (repo: string): Promise<IpfsNode> {
  await mkdir(repo, { recursive: true })
  const blockstore = new FsBlockstore(join(repo, 'blocks'))
  const datastore = new FsDatastore(join(repo, 'datastore'))
  await blockstore.open()
  await datastore.open()
  const helia = createHeliaLight({ blockstore, datastore, blockBrokers: [], routers: [] })
  await helia.start()
  return {
    helia,
    repo,
    stop: async () => {
      await helia.stop()
      await blockstore.close()
      await datastore.close()
    }
  }
}
