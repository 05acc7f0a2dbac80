import { access, constants as fsConstants, stat } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import { RepoError } from '../errors.js'
import type { CacheBlocks } from '../ipfs/blocks.js'
import { PackStore } from '../ipfs/pack-store.js'
import type { SecretKey } from '../nix/signing.js'
import { derivationOutputs, runNix, validPaths } from '../nix/store.js'
import { readSecretKeyFile, repoSigningKey } from '../repo.js'
import { publish, type PublishOptions, type PublishResult } from './publish.js'
import { dequeue, enqueue, queuedRequests, type PublishRequest } from './queue.js'
import { RECIPES } from './recipes.js'
import { packsDir } from '../repo-layout.js'

/** How often a running gateway publishes the requests a failed publish queued. */
export const QUEUE_RETRY_MS = 30_000

export interface RequestOptions extends Pick<PublishOptions, 'recordLifetimeMs' | 'continueSequence' | 'onTotal' | 'onBytes' | 'onPublished' | 'onWait'> {
  log: { info: (m: string) => void, warn: (m: string) => void }
}

/** The store paths a request names: its paths, else the outputs of its derivation. */
async function requestPaths (request: PublishRequest): Promise<string[]> {
  if (request.paths.length > 0 || request.drv === undefined) return request.paths
  return await derivationOutputs(request.drv)
}

/** The key a request signs with: its key file, else the repo's key (created on first use). */
async function requestKey (repo: string, request: PublishRequest, log: RequestOptions['log']): Promise<SecretKey> {
  if (request.secretKeyFile !== undefined) return await readSecretKeyFile(request.secretKeyFile)
  return await repoSigningKey(repo, true, m => log.info(m))
}

/** Runs `fn` on `blocks`, or on the repo's block store opened (and closed) for it. */
async function withBlocks<T> (repo: string, blocks: CacheBlocks | undefined, fn: (blocks: CacheBlocks) => Promise<T>): Promise<T> {
  if (blocks !== undefined) return await fn(blocks)
  const opened = await PackStore.openRepo(repo)
  try { return await fn(opened) } finally { await opened.close() }
}

/** Publishes what a request names into the repo's cache. */
export async function publishRequest (repo: string, request: PublishRequest, options: RequestOptions, blocks?: CacheBlocks): Promise<PublishResult> {
  const recipe = (RECIPES as Record<string, typeof RECIPES.cdc | undefined>)[request.chunker] ?? RECIPES.cdc
  const paths = await requestPaths(request)
  const key = await requestKey(repo, request, options.log)
  return await withBlocks(repo, blocks, async b => await publish({ repo, blocks: b }, {
    ...options,
    paths,
    recursive: request.recursive,
    storeRoot: request.storeRoot,
    key,
    recipe
  }))
}

/** What became of a publish that must not fail (a post-build hook, `watch`). */
export type Outcome = { result: PublishResult } | { error: Error, queued?: string }

/**
 * Publishes a request; when that fails, the request is queued in the repo
 * (to be retried by the next publish or a running gateway) instead of failing.
 * Never throws: the error (and whether queuing failed too) is in the outcome.
 */
export async function publishOrQueue (repo: string, request: PublishRequest, options: RequestOptions, blocks?: CacheBlocks): Promise<Outcome> {
  try {
    return { result: await publishRequest(repo, request, options, blocks) }
  } catch (err) {
    const error = err as Error
    try {
      return { error, queued: await enqueue(repo, request, error.message) }
    } catch (queueErr) {
      return { error: new RepoError(`${error.message}; and it could not be queued either: ${(queueErr as Error).message}`) }
    }
  }
}

/**
 * Publishes every queued request: done ones leave the queue, paths no longer
 * in the store are dropped (nothing is left to publish), failures stay queued.
 */
export async function retryQueue (repo: string, options: RequestOptions, blocks?: CacheBlocks): Promise<{ published: number, dropped: number, failed: number }> {
  const counts = { published: 0, dropped: 0, failed: 0 }
  for (const queued of await queuedRequests(repo)) {
    const { request } = queued
    const named = request.paths.length > 0 ? request.paths : request.drv === undefined ? [] : [request.drv]
    const valid = request.storeRoot === undefined ? await validPaths(named).catch(() => named) : named
    if (valid.length === 0) {
      options.log.warn(`dropped a queued publish of ${named.join(' ') || 'nothing'}: no longer in the Nix store`)
      await dequeue(queued)
      counts.dropped++
      continue
    }
    const current = request.paths.length > 0 ? { ...request, paths: valid } : request
    try {
      const result = await publishRequest(repo, current, options, blocks)
      await dequeue(queued)
      counts.published++
      options.log.info(`published a queued request (${queued.queuedAt}): ${result.published.length} path(s), ${result.skipped} already there`)
    } catch (err) {
      counts.failed++
      options.log.warn(`a queued publish (${queued.queuedAt}) failed again and stays queued: ${(err as Error).message}`)
    }
  }
  return counts
}

/** Retries the repo's publish queue at once and every QUEUE_RETRY_MS while a gateway runs; `stop` waits for a retry in progress. */
export function startQueueRetry (repo: string, blocks: CacheBlocks, options: RequestOptions, onPublished: () => void): { stop: () => Promise<void> } {
  let running: Promise<void> | undefined
  const run = (): void => {
    running ??= retryQueue(repo, options, blocks)
      .then(r => { if (r.published > 0) onPublished() }, (err: Error) => options.log.warn(`retrying queued publishes failed: ${err.message}`))
      .finally(() => { running = undefined })
  }
  run()
  const timer = setInterval(run, QUEUE_RETRY_MS)
  timer.unref()
  return { stop: async () => { clearInterval(timer); await running } }
}

/**
 * Checks, without publishing, that a publish into `repo` could work: Nix
 * answers, the repo and its block store are writable, the key is readable.
 * Returns what was checked; throws the first problem.
 */
export async function dryRun (repo: string, request: PublishRequest): Promise<string[]> {
  const lines: string[] = []
  lines.push(`nix answers: ${(await runNix('nix-store', ['--version'])).trim()}`)
  if (request.secretKeyFile !== undefined) {
    lines.push(`signs with ${(await readSecretKeyFile(request.secretKeyFile)).name} (${request.secretKeyFile})`)
  } else {
    const key = await repoSigningKey(repo, false).catch((err: Error) => err)
    if (key instanceof RepoError) lines.push(`the repo has no key yet; the first publish creates one`)
    else if (key instanceof Error) throw key
    else lines.push(`signs with the repo's key ${key.name}`)
  }
  // The repo, or the directory it will be made in, must be writable.
  let dir = resolve(repo)
  while (!await stat(dir).then(() => true, () => false) && dirname(dir) !== dir) dir = dirname(dir)
  if (!(await stat(dir)).isDirectory()) throw new RepoError(`the repo ${repo} cannot be made: ${dir} is a file, not a directory; choose another --repo`)
  await access(dir, fsConstants.W_OK).catch((err: Error) => { throw new RepoError(`the repo ${repo} is not writable: ${err.message}`) })
  if (await stat(packsDir(repo)).then(() => true, () => false)) {
    // The store opens on read-only media too (to be read): whether it takes writes is asked of its directory.
    const blocks = await access(packsDir(repo), fsConstants.W_OK).then(async () => await PackStore.openRepo(repo)).catch((err: Error) => {
      throw new RepoError(`the repo's block store ${packsDir(repo)} cannot be opened for writing (${err.message}); make it writable, or free space`)
    })
    lines.push(`the repo ${repo} opens for writing: ${blocks.size} blocks`)
    await blocks.close()
  } else lines.push(`the repo ${repo} is writable (nothing published yet)`)
  const queued = await queuedRequests(repo)
  if (queued.length > 0) lines.push(`${queued.length} failed publish(es) queued, retried by the next publish or a running gateway`)
  const paths = request.paths.length > 0 ? request.paths.join(' ') : request.drv !== undefined ? `the outputs of ${request.drv}` : "the outputs of Nix's $OUT_PATHS or $DRV_PATH"
  lines.push(`would publish ${paths}`)
  return lines
}
