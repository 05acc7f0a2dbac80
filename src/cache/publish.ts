import type { CID } from 'multiformats/cid'
import { STORE_DIR } from '../constants.js'
import { asDiskError } from '../disk.js'
import { IntegrityError } from '../errors.js'
import { NarHasher } from '../nix/hash.js'
import { encodeNar } from '../nix/nar/encode.js'
import { walkPath } from '../nix/nar/walk.js'
import { fingerprint, formatNarInfo, type NarInfo } from '../nix/narinfo.js'
import { signFingerprint, type SecretKey } from '../nix/signing.js'
import { queryPathInfos, queryRealisations, type PathInfo } from '../nix/store.js'
import { formatRealisation, signRealisation } from '../nix/realisation.js'
import { parseStorePath } from '../nix/store-path.js'
import type { BlockPutter } from '../ipfs/block.js'
import type { Chunker } from '../ipfs/chunker.js'
import { importFile } from '../ipfs/file-dag.js'
import type { CacheRecord } from '../ipfs/ipns.js'
import type { CacheBlocks } from '../ipfs/blocks.js'
import { importBuildLogs } from './build-logs.js'
import { DISPUTES_DIR, LOG_DIR, REALISATIONS_DIR, addEntries, addFiles, addLinksUnder, hasNarInfo, narUrl, type CacheEntry } from './directory.js'
import { updateOwnCache, type OwnCache } from './own.js'

/** How NARs become blocks; its name is written into `nix-cache-info`. */
export interface CidRecipe {
  name: string
  chunker: Chunker
}

export interface PublishOptions {
  /** store paths to publish */
  paths: string[]
  /** publish the whole closure of `paths` */
  recursive: boolean
  /** a chroot Nix store (its /nix/store lives under this directory) instead of the system one */
  storeRoot?: string
  key: SecretKey
  recipe: CidRecipe
  recordLifetimeMs: number
  /** publish on top of a repo restored from an old backup (see `nextSequence`) */
  continueSequence?: boolean
  /** called once, with the NAR bytes of the paths not yet in the cache, before they are published */
  onTotal?: (bytes: number) => void
  /** NAR bytes of the paths being published, as they are read */
  onBytes?: (bytes: number) => void
  /** called once per store path as it is published */
  onPublished?: (path: string, nar: CID, narSize: number) => void
  /** called when another process holds the repo lock and publish waits for it */
  onWait?: (pid: number) => void
}

export interface PublishResult {
  name: string
  root: CID
  sequence: bigint
  published: Array<{ path: string, nar: CID, narSize: number }>
  skipped: number
}

/** What publishing needs: the repo directory and its block store. */
export interface PublishComponents {
  repo: string
  blocks: CacheBlocks
}

/** Serializes a store path to NAR, stores its blocks, and checks the hash against Nix's database. */
async function importStorePath (blocks: BlockPutter, info: PathInfo, recipe: CidRecipe, storeRoot = '', onBytes?: (bytes: number) => void): Promise<{ cid: CID, tsize: number }> {
  const hasher = new NarHasher()
  async function * hashed (): AsyncGenerator<Uint8Array> {
    // The chunker copies what it keeps, so the NAR is read into reused buffers.
    for await (const chunk of encodeNar(walkPath(storeRoot + info.path, { reuseBuffers: true }), { reuseBuffer: true })) {
      hasher.update(chunk)
      onBytes?.(chunk.length)
      yield chunk
    }
  }
  const { cid, tsize } = await importFile(blocks, hashed(), recipe.chunker)
  const narHash = hasher.digest()
  if (narHash !== info.narHash || hasher.size !== info.narSize) {
    throw new IntegrityError(`${info.path} on disk (${narHash}, ${hasher.size} bytes) differs from what Nix registered (${info.narHash}, ${info.narSize} bytes); repair it with \`nix-store --verify --check-contents --repair\``)
  }
  return { cid, tsize }
}

/** The signed narinfo for a published store path; signatures already in the Nix database are kept. */
function makeNarInfo (info: PathInfo, nar: CID, key: SecretKey): NarInfo {
  const base: NarInfo = {
    storePath: info.path,
    url: narUrl(nar),
    compression: 'none',
    fileHash: info.narHash,
    fileSize: info.narSize,
    narHash: info.narHash,
    narSize: info.narSize,
    references: info.references,
    ...(info.deriver !== undefined ? { deriver: info.deriver } : {}),
    ...(info.ca !== undefined ? { ca: info.ca } : {}),
    sigs: info.sigs
  }
  return { ...base, sigs: [...base.sigs, signFingerprint(key, fingerprint(base))] }
}

/**
 * The signed realisations (`<id>.doi`) of the content-addressed paths among
 * `infos` that Nix has realisations for: with them a CA output needs trust
 * only for which derivation produced it, not for its bytes.
 */
async function realisationsOf (infos: PathInfo[], key: SecretKey, storeRoot?: string): Promise<Array<{ name: string, text: string }>> {
  const files: Array<{ name: string, text: string }> = []
  for (const info of infos) {
    if (info.ca === undefined || info.deriver === undefined || info.ca.startsWith('text:')) continue
    const base = info.path.slice(STORE_DIR.length + 1)
    for (const r of await queryRealisations(`${STORE_DIR}/${info.deriver}`, storeRoot)) {
      if (r.outPath === base) files.push({ name: `${r.id}.doi`, text: formatRealisation(signRealisation(key, r)) })
    }
  }
  return files
}

/** Adds entries (NARs already stored, since `writeEpoch` if given) to the key's cache and signs a new record. */
export async function appendEntries (components: PublishComponents, key: SecretKey, entries: CacheEntry[], options: { recordLifetimeMs: number, recipe: CidRecipe, writeEpoch?: number }): Promise<CacheRecord> {
  const { repo, blocks } = components
  const update = { recordLifetimeMs: options.recordLifetimeMs, recipe: options.recipe.name, writtenSince: options.writeEpoch ?? 'unreported' as const }
  return await updateOwnCache(repo, blocks, key, update, async own => await own.commit(await addEntries(blocks, await own.root(), entries, own.dirs)))
}

/** Adds signed dispute statements (`disputes/<hash>.json`) to the key's cache and signs a new record. */
export async function publishDisputes (components: PublishComponents, options: Pick<PublishOptions, 'key' | 'recordLifetimeMs' | 'continueSequence' | 'onWait'> & { recipe: string, statements: Array<{ hash: string, text: string }> }): Promise<CacheRecord> {
  const { repo, blocks } = components
  return await updateOwnCache(repo, blocks, options.key, options, async own => {
    const files = options.statements.map(f => ({ name: `${f.hash}.json`, text: f.text }))
    return await own.commit(await addFiles(blocks, await own.root(), DISPUTES_DIR, files, own.dirs))
  })
}

/**
 * Publishes store paths (and with `recursive` their closures) into the repo's
 * cache, with their realisations and build logs: paths already in it are skipped; the record moves only after every
 * block it reaches is stored, so a crash leaves the previous record in force.
 */
export async function publish ({ repo, blocks }: PublishComponents, options: PublishOptions): Promise<PublishResult> {
  return await updateOwnCache(repo, blocks, options.key, { ...options, recipe: options.recipe.name }, async own => {
    const root = await own.root() // fails before the work when no record could be signed, not after
    const infos = await queryPathInfos(options.paths, options.recursive, options.storeRoot)
    const missing: PathInfo[] = []
    for (const info of infos) if (!await hasNarInfo(blocks, root, parseStorePath(info.path).hash, own.dirs)) missing.push(info)
    try {
      return await publishMissing(blocks, options, own, { root, infos, missing })
    } catch (err) {
      // A full disk names the repo and what the paths needed: the NARs, plus a little for directories and narinfos.
      throw await asDiskError(err, repo, missing.reduce((sum, i) => sum + i.narSize, 0))
    }
  })
}

interface PublishState { root: CID, infos: PathInfo[], missing: PathInfo[] }

async function publishMissing (blocks: CacheBlocks, options: PublishOptions, own: OwnCache, { root, infos, missing }: PublishState): Promise<PublishResult> {
  const { name, record: current, dirs } = own
  const entries: CacheEntry[] = []
  const published: PublishResult['published'] = []
  const skipped = infos.length - missing.length
  options.onTotal?.(missing.reduce((bytes, info) => bytes + info.narSize, 0))
  for (const info of missing) {
    const { hash } = parseStorePath(info.path)
    const { cid: nar, tsize } = await importStorePath(blocks, info, options.recipe, options.storeRoot, options.onBytes)
    entries.push({ hash, nar, narTsize: tsize, narInfo: formatNarInfo(makeNarInfo(info, nar, options.key)) })
    published.push({ path: info.path, nar, narSize: info.narSize })
    options.onPublished?.(info.path, nar, info.narSize)
  }
  if (current !== undefined && entries.length === 0) {
    return { name, root, sequence: current.sequence, published, skipped }
  }
  const withEntries = await addEntries(blocks, root, entries, dirs)
  const publishedInfos = infos.filter(i => published.some(p => p.path === i.path))
  const realisations = await realisationsOf(publishedInfos, options.key, options.storeRoot)
  const logs = await importBuildLogs(blocks, publishedInfos, options.recipe.chunker, options.storeRoot)
  const newRoot = await addLinksUnder(blocks, await addFiles(blocks, withEntries, REALISATIONS_DIR, realisations, dirs), LOG_DIR, logs, dirs)
  const record = await own.commit(newRoot)
  return { name, root: newRoot, sequence: record.sequence, published, skipped }
}
