import { readdir, readFile, stat, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { writeFileAtomic } from '../atomic.js'
import { parseStorePath } from '../nix/store-path.js'
import { heardDir } from '../repo-layout.js'
import type { RebuildVote } from './quorum.js'
import { openAnnounced, type DisputeStatement } from './statement.js'
import { makeDirectory } from '../disk.js'

/** A statement heard from the network, checked against the key it names. */
export interface HeardStatement {
  statement: DisputeStatement
  /** IPNS name of the signer's cache */
  name: string
  /** exactly as signed, to hand on */
  text: string
}

/** How many statements by keys the node neither trusts nor follows it keeps by default (about 1 KB each). */
export const DEFAULT_MAX_OTHERS = 1000

/** One statement per signer and store path: `<hash>-<name>`. */
const idOf = (h: HeardStatement): string => `${parseStorePath(h.statement.storePath).hash}-${h.name}`

/** Every statement kept in the repo, oldest written first; files that do not check out are left out. */
export async function listHeard (repo: string): Promise<HeardStatement[]> {
  const dir = heardDir(repo)
  const files = (await readdir(dir).catch(() => [] as string[])).filter(f => f.endsWith('.json'))
  const read = await Promise.all(files.map(async f => {
    try {
      const text = await readFile(join(dir, f), 'utf8')
      return { heard: { ...openAnnounced(text), text }, mtimeMs: (await stat(join(dir, f))).mtimeMs }
    } catch { return undefined } // removed meanwhile, or not a statement: it counts for nothing
  }))
  return read.filter(r => r !== undefined).sort((a, b) => a.mtimeMs - b.mtimeMs).map(r => r.heard)
}

/**
 * The dispute statements a node keeps from the network, in
 * `<repo>/disputes/heard/`: one per signer and store path (the newest by its
 * date). Statements by keys in `keep` (trusted, followed, own) are all kept;
 * anyone can make keys, so of the others only the `maxOthers` heard most
 * recently are, and a flood of valid junk costs at most that many files.
 */
export class HeardStatements {
  private readonly kept = new Map<string, HeardStatement>()
  /** ids of statements by other keys, least recently heard first */
  private readonly others = new Set<string>()
  private writing = Promise.resolve()
  /** true for a repo on a read-only file system: statements heard are kept in memory only */
  private readOnly = false

  private constructor (private readonly repo: string, private readonly keep: (name: string) => boolean, private readonly maxOthers: number) {}

  /** Loads what the repo kept; statements by other keys beyond `maxOthers` (the trust set may have changed) are dropped. */
  static async open (repo: string, keep: (name: string) => boolean, maxOthers = DEFAULT_MAX_OTHERS): Promise<HeardStatements> {
    const store = new HeardStatements(repo, keep, maxOthers)
    // A repo on read-only media is still served (a gateway over a backup): what it hears lasts as long as the process.
    await makeDirectory(heardDir(repo), { flag: '--repo' }).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EROFS') throw err
      store.readOnly = true
    })
    for (const h of await listHeard(repo)) store.remember(h)
    await store.evict()
    return store
  }

  /**
   * Takes a statement heard from the network: 'new' when it was kept (a
   * first or newer statement by its signer on its path), 'known' when the
   * node had it or a newer one. Throws for one that does not check out.
   */
  async offer (text: string): Promise<'new' | 'known'> {
    const heard = { ...openAnnounced(text), text }
    const id = idOf(heard)
    const run = this.writing.then(async () => {
      const old = this.kept.get(id)
      if (old !== undefined && old.statement.date >= heard.statement.date) {
        if (this.others.delete(id)) this.others.add(id) // heard again: most recent
        return 'known' as const
      }
      if (!this.readOnly) await writeFileAtomic(join(heardDir(this.repo), `${id}.json`), text)
      this.remember(heard)
      await this.evict()
      return 'new' as const
    })
    this.writing = run.then(() => {}, () => {})
    return await run
  }

  /** The rebuild results kept for one store path (by its hash), as votes (see judge). */
  votes (hash: string): RebuildVote[] {
    return [...this.kept.entries()].filter(([id]) => id.startsWith(`${hash}-`)).map(([, { statement: s }]) => ({ key: s.by, storePath: s.storePath, ...s.rebuilt }))
  }

  /** Every statement kept, as signed: those by kept keys first, then the others, most recently heard first. */
  texts (): string[] {
    const mine = [...this.kept.entries()].filter(([id]) => !this.others.has(id)).map(([, h]) => h.text)
    return [...mine, ...[...this.others].reverse().map(id => this.kept.get(id)!.text)]
  }

  private remember (heard: HeardStatement): void {
    const id = idOf(heard)
    this.kept.set(id, heard)
    this.others.delete(id)
    if (!this.keep(heard.name)) this.others.add(id)
  }

  private async evict (): Promise<void> {
    for (const id of this.others) {
      if (this.others.size <= this.maxOthers) break
      this.others.delete(id)
      this.kept.delete(id)
      if (!this.readOnly) await unlink(join(heardDir(this.repo), `${id}.json`)).catch(() => {})
    }
  }
}
