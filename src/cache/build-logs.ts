import { open } from 'node:fs/promises'
import type { CID } from 'multiformats/cid'
import type { BlockPutter } from '../ipfs/block.js'
import type { Chunker } from '../ipfs/chunker.js'
import { importFile } from '../ipfs/file-dag.js'
import { buildLogFile, nixLogDir } from '../nix/build-log.js'
import type { PathInfo } from '../nix/store.js'

/**
 * Stores the build logs Nix kept for the derivers of `infos` (from the log
 * directory of the store at `storeRoot`, or the system's), each as a file DAG
 * of its bzip2 bytes as Nix wrote them, and returns them as links for
 * `log/<drv>`. A deriver without a log (built elsewhere, substituted, log
 * deleted) simply has none.
 */
export async function importBuildLogs (blocks: BlockPutter, infos: PathInfo[], chunker: Chunker, storeRoot?: string): Promise<Array<{ name: string, cid: CID, tsize: number }>> {
  const logDir = nixLogDir(storeRoot)
  // The outputs of one derivation share its log.
  const drvs = new Set(infos.flatMap(i => i.deriver?.endsWith('.drv') === true ? [i.deriver] : []))
  const links: Array<{ name: string, cid: CID, tsize: number }> = []
  for (const drv of drvs) {
    const file = await open(buildLogFile(logDir, drv)).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined
      throw err
    })
    if (file === undefined) continue
    try {
      const { cid, tsize } = await importFile(blocks, file.createReadStream({ autoClose: false }), chunker)
      links.push({ name: drv, cid, tsize })
    } finally {
      await file.close()
    }
  }
  return links
}
