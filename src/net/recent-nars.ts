import type { CID } from 'multiformats/cid'

/** NARs in the order they were last asked for: what --max-cache keeps longest. */
export class RecentNars {
  /** oldest first (a Map keeps insertion order) */
  private readonly used = new Map<string, { root: CID, size: number }>()

  /** Notes that the NAR under `root` (of `size` bytes) was just asked for. */
  touch (root: CID, size: number): void {
    const key = root.toString()
    this.used.delete(key)
    this.used.set(key, { root, size })
  }

  /** NARs asked for, most recent first. */
  mostRecentFirst (): Array<{ root: CID, size: number }> {
    return [...this.used.values()].reverse()
  }
}
