import type { CID } from 'multiformats/cid'
import { isDiskFailure } from '../disk.js'
import type { BlockPutter } from '../ipfs/block.js'

/** Stores fetched (verified) blocks in the repo, so this node seeds them on; can be paused. */
export class BlockKeeper {
  private caching = true
  private readonly puts = new Set<Promise<unknown>>()

  constructor (private readonly local: BlockPutter, private readonly log?: { warn: (m: string) => void }) {}

  /** Stores `bytes` unless paused; a full or failing disk is logged, not thrown (the block is served all the same). Returns `bytes`. */
  async keep (cid: CID, bytes: Uint8Array): Promise<Uint8Array> {
    if (!this.caching) return bytes
    const put = Promise.resolve(this.local.put(cid, bytes))
    this.puts.add(put)
    try {
      await put
    } catch (err) {
      if (!isDiskFailure(err)) throw err
      // The block is verified, so it is served all the same. What a failed write lost is not taken
      // for stored: it is fetched again when asked for, and a follower's sync since then fails and retries.
      this.log?.warn(`cannot keep fetched blocks: ${(err as Error).message}`)
    } finally {
      this.puts.delete(put)
    }
    return bytes
  }

  /** Stops keeping blocks until the returned function is called; waits for writes under way. */
  async pause (): Promise<() => void> {
    this.caching = false
    await Promise.allSettled([...this.puts])
    return () => { this.caching = true }
  }
}
