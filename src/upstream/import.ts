import type { CID } from 'multiformats/cid'
import { storeHashOf } from '../cache/closure.js'
import { addEntries, hasNarInfo, narUrl, type CacheEntry } from '../cache/directory.js'
import { updateOwnCache } from '../cache/own.js'
import type { CidRecipe, PublishComponents } from '../cache/publish.js'
import { asDiskError } from '../disk.js'
import { IntegrityError, NixipfsError, UpstreamError } from '../errors.js'
import type { BlockPutter } from '../ipfs/block.js'
import type { Chunker } from '../ipfs/chunker.js'
import { importFile } from '../ipfs/file-dag.js'
import { checkedNar } from '../nix/nar/check.js'
import { fingerprint, formatNarInfo, parseNarInfo, signersOf, type NarInfo } from '../nix/narinfo.js'
import { signFingerprint, type PublicKey, type SecretKey } from '../nix/signing.js'
import { parseStoreBaseName, parseStorePath } from '../nix/store-path.js'
import { decompress } from './decompress.js'
import type { HttpBinaryCache } from './http-cache.js'

export interface ImportOptions {
  upstream: HttpBinaryCache
  /** store paths (or their hashes) to import */
  paths: string[]
  /** with the closure each path's narinfos describe */
  recursive: boolean
  /** upstream keys: every narinfo must carry a valid signature by one of them */
  trust: PublicKey[]
  /** signs the record (and, with `sign`, each narinfo too) */
  key: SecretKey
  sign: boolean
  recipe: CidRecipe
  recordLifetimeMs: number
  /** NARs downloaded at once */
  concurrency?: number
  /** paths committed per record update, so that an interrupted import resumes from there */
  batch?: number
  onImported?: (path: string, narSize: number) => void
  /** called once, with the NarSize of the paths not yet in the cache, before they are downloaded */
  onTotal?: (bytes: number) => void
  /** NAR bytes (decompressed) taken in so far */
  onBytes?: (bytes: number) => void
}

export interface ImportResult {
  imported: number
  skipped: number
}


/** Fetches and checks the narinfos of `paths` (and their closure): signed by a trusted key, naming the path asked for. */
async function upstreamNarInfos (options: ImportOptions): Promise<Map<string, NarInfo>> {
  const infos = new Map<string, NarInfo>()
  const todo = options.paths.map(storeHashOf)
  while (todo.length > 0) {
    const hash = todo.pop()!
    if (infos.has(hash)) continue
    const text = await options.upstream.narInfo(hash)
    if (text === undefined) throw new UpstreamError('ERR_UPSTREAM_MISSING', `${options.upstream.url} has no narinfo for ${hash}; nothing was imported`)
    let info: NarInfo
    try {
      info = trustedNarInfo(text, hash, options.trust, options.upstream.url)
    } catch (err) {
      return noting('; nothing was imported')(err)
    }
    infos.set(hash, info)
    if (options.recursive) for (const ref of info.references) todo.push(parseStoreBaseName(ref).hash)
  }
  return infos
}

/** `infos` ordered so that every path comes after the paths it references. */
function referencesFirst (infos: Map<string, NarInfo>): NarInfo[] {
  const order: NarInfo[] = []
  const done = new Set<string>()
  const visit = (hash: string): void => {
    const info = infos.get(hash)
    if (info === undefined || done.has(hash)) return
    done.add(hash)
    for (const ref of info.references) visit(parseStoreBaseName(ref).hash)
    order.push(info)
  }
  for (const hash of infos.keys()) visit(hash)
  return order
}

/**
 * Parses a narinfo an upstream sent for `hash`; throws IntegrityError unless
 * it names that path and carries a valid signature by one of `keys`.
 */
export function trustedNarInfo (text: string, hash: string, keys: PublicKey[], from: string): NarInfo {
  const info = parseNarInfo(text)
  if (parseStorePath(info.storePath).hash !== hash) throw new IntegrityError(`${from}/${hash}.narinfo describes ${info.storePath}`)
  if (signersOf(info, keys).length === 0) {
    throw new IntegrityError(`${info.storePath} from ${from} has no valid signature by a trusted key (${keys.map(k => k.name).join(', ')})`)
  }
  return info
}

/**
 * Downloads, decompresses and stores an upstream NAR, checking it against its
 * narinfo (format, NarSize, NarHash); `onChunk` sees each chunk once checked.
 */
export async function importUpstreamNar (blocks: BlockPutter, info: NarInfo, upstream: HttpBinaryCache, chunker: Chunker, onChunk?: (chunk: Uint8Array) => Promise<void> | void): Promise<{ cid: CID, tsize: number }> {
  const checked = checkedNar(decompress(info.compression, await upstream.file(info.url)), info, `${info.storePath}: the NAR from ${upstream.url}`)
  async function * tapped (): AsyncGenerator<Uint8Array> {
    for await (const chunk of checked) {
      await onChunk?.(chunk)
      yield chunk
    }
  }
  return await importFile(blocks, onChunk === undefined ? checked : tapped(), chunker)
}

/** The narinfo the own cache serves for an imported upstream path: the upstream's (signatures kept), with the URL of the NAR's DAG, uncompressed. */
export function ownNarInfo (info: NarInfo, nar: CID): NarInfo {
  return { ...info, url: narUrl(nar), compression: 'none', fileHash: info.narHash, fileSize: info.narSize }
}

/** An error handler that rethrows, adding `suffix` to the message of an integrity or format error. */
function noting (suffix: string): (err: unknown) => never {
  return (err) => {
    if (err instanceof NixipfsError && (err.code === 'ERR_INTEGRITY' || err.code === 'ERR_NAR_FORMAT')) err.message += suffix
    throw err
  }
}

/**
 * Imports store paths from an HTTP binary cache into the repo's own cache:
 * every narinfo must be signed by a trusted upstream key, every NAR must
 * match its NarHash; the upstream signatures are kept (the URL changes, the
 * fingerprint does not). Paths already in the cache are skipped. Paths are
 * committed in batches, references first, so a failed or interrupted import
 * leaves only whole, verified paths and a second run resumes.
 */
export async function importFromUpstream ({ repo, blocks }: PublishComponents, options: ImportOptions): Promise<ImportResult> {
  let needed: number | undefined
  try {
    return await importLocked({ repo, blocks }, options, bytes => { needed = bytes })
  } catch (err) {
    // A full disk names the repo and what the paths needed (their NARs).
    throw await asDiskError(err, repo, needed)
  }
}

async function importLocked ({ repo, blocks }: PublishComponents, options: ImportOptions, onNeeded: (bytes: number) => void): Promise<ImportResult> {
  return await updateOwnCache(repo, blocks, options.key, { recordLifetimeMs: options.recordLifetimeMs, recipe: options.recipe.name }, async own => {
    const { dirs } = own
    let root = await own.root()
    const wanted = referencesFirst(await upstreamNarInfos(options))
    const todo: NarInfo[] = []
    for (const info of wanted) if (!await hasNarInfo(blocks, root, parseStorePath(info.storePath).hash, dirs)) todo.push(info)
    const needed = todo.reduce((sum, info) => sum + info.narSize, 0)
    onNeeded(needed)
    options.onTotal?.(needed)

    let pending: CacheEntry[] = []
    let imported = 0
    const commit = async (): Promise<void> => {
      if (pending.length === 0) return
      root = await addEntries(blocks, root, pending, dirs)
      await own.commit(root)
      imported += pending.length
      pending = []
    }
    // A few NARs download at once; they are committed in order, so a path never lands before its references.
    const concurrency = options.concurrency ?? 4
    const running: Array<Promise<{ info: NarInfo, entry: CacheEntry }>> = []
    let failure: Error | undefined
    try {
      for (let next = 0; next < todo.length || running.length > 0;) {
        while (failure === undefined && next < todo.length && running.length < concurrency) {
          const info = todo[next++]!
          const download = importUpstreamNar(blocks, info, options.upstream, options.recipe.chunker, chunk => options.onBytes?.(chunk.length))
            .catch(noting('; it was not imported'))
            .then(({ cid, tsize }) => ({
              info,
              entry: { hash: parseStorePath(info.storePath).hash, nar: cid, narTsize: tsize, narInfo: formatNarInfo(signedIf(options, ownNarInfo(info, cid))) }
            }))
          download.catch(() => {}) // observed in order below; a later one may fail while an earlier one is awaited
          running.push(download)
        }
        if (running.length === 0) break
        try {
          const { info, entry } = await running.shift()!
          pending.push(entry)
          options.onImported?.(info.storePath, info.narSize)
          if (pending.length >= (options.batch ?? 64)) await commit()
        } catch (err) {
          // Keep what came in whole before the failure; start nothing new; let the rest finish and drop them.
          failure ??= err as Error
          await Promise.allSettled(running.splice(0))
        }
      }
    } finally {
      await commit()
    }
    if (failure !== undefined) throw failure
    return { imported, skipped: wanted.length - todo.length }
  })
}

/** `info` with the own signature added when the import was asked to sign. */
function signedIf (options: ImportOptions, info: NarInfo): NarInfo {
  return options.sign ? { ...info, sigs: [...info.sigs, signFingerprint(options.key, fingerprint(info))] } : info
}
