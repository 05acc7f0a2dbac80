import { open, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { packName } from './pack-format.js'

/**
 * The read handles of one generation of a pack store, opened on first use.
 * A retired pool (the store was compacted) closes its handles once the
 * reads using them are done: on Linux a deleted pack stays readable through
 * a handle opened before, so reads in flight finish, and closing is what
 * finally frees the disk space.
 */
export class PackHandles {
  private readonly handles = new Map<number, Promise<FileHandle>>()
  private users = 0
  private retired = false

  constructor (private readonly dir: string) {}

  /** The handle of a pack; the promise is shared, so concurrent first reads open one handle. */
  async get (pack: number): Promise<FileHandle> {
    let fh = this.handles.get(pack)
    if (fh === undefined) {
      fh = open(join(this.dir, packName(pack)), 'r')
      this.handles.set(pack, fh)
      fh.catch(() => this.handles.delete(pack))
    }
    return await fh
  }

  /** Runs `fn` as a user of the pool: a retired pool is not closed under it. */
  async use<T> (fn: (pool: PackHandles) => Promise<T> | T): Promise<T> {
    this.users++
    try {
      return await fn(this)
    } finally {
      this.users--
      if (this.retired && this.users === 0) await this.closeAll()
    }
  }

  /** No new users will come: closes the handles now, or when the last user is done. */
  async retire (): Promise<void> {
    this.retired = true
    if (this.users === 0) await this.closeAll()
  }

  private async closeAll (): Promise<void> {
    const all = [...this.handles.values()]
    this.handles.clear()
    for (const fh of all) await fh.then(async h => await h.close(), () => {})
  }
}
