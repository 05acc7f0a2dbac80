import { randomBytes } from 'node:crypto'
import { readdir, readFile, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { writeFileAtomic } from '../atomic.js'
import { queueDir } from '../repo-layout.js'

/** What a publish was asked to do, kept so that it can be done again later. */
export interface PublishRequest {
  /** store paths (empty when only `drv` is known) */
  paths: string[]
  /** the derivation whose outputs are to be published, when the paths were not known */
  drv?: string
  recursive: boolean
  storeRoot?: string
  /** the key file to sign with (never the key itself); default: the repo's key */
  secretKeyFile?: string
  chunker: string
}

/** A publish request that failed and waits in `<repo>/queue/` to be done again. */
export interface QueuedRequest {
  file: string
  request: PublishRequest
  /** why it failed last */
  reason: string
  queuedAt: string
}

/** Keeps a failed publish request in `<repo>/queue/` (one file each); returns its file. */
export async function enqueue (repo: string, request: PublishRequest, reason: string): Promise<string> {
  const file = join(queueDir(repo), `${Date.now()}-${process.pid}-${randomBytes(4).toString('hex')}.json`)
  await writeFileAtomic(file, JSON.stringify({ request, reason, queuedAt: new Date().toISOString() }, null, 2) + '\n')
  return file
}

/** The queued requests, oldest first; a file that is not a request is named as the reason and skipped. */
export async function queuedRequests (repo: string): Promise<QueuedRequest[]> {
  const names = (await readdir(queueDir(repo)).catch(() => [] as string[])).filter(n => n.endsWith('.json')).sort()
  const queued: QueuedRequest[] = []
  for (const name of names) {
    const file = join(queueDir(repo), name)
    const parsed = await readFile(file, 'utf8').then(t => JSON.parse(t) as Omit<QueuedRequest, 'file'>, () => undefined)
    if (parsed?.request === undefined || !Array.isArray(parsed.request.paths)) continue // being written, or not ours
    queued.push({ file, ...parsed })
  }
  return queued
}

/** Removes a queued request once it is done (another process may have removed it first). */
export async function dequeue (queued: QueuedRequest): Promise<void> {
  await unlink(queued.file).catch(() => {})
}
