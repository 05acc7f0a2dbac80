import { importUpstreamNar, ownNarInfo, trustedNarInfo } from './import.js'
import { appendEntries, type CidRecipe } from '../cache/publish.js'
import { UnavailableError } from '../errors.js'
import { Lru } from '../lru.js'
import type { CacheBlocks } from '../ipfs/blocks.js'
import type { BlockPutter } from '../ipfs/block.js'
import { formatNarInfo, type NarInfo } from '../nix/narinfo.js'
import type { PublicKey, SecretKey } from '../nix/signing.js'
import { parseStorePath } from '../nix/store-path.js'
import type { HttpBinaryCache } from './http-cache.js'

/** How long "no upstream has it" is remembered: Nix asks again for every build. */
const NEGATIVE_TTL_MS = 60_000

/** What the upstream fallback did so far. */
export interface FallbackCounters {
  /** narinfos found upstream (and served with an upstream URL) */
  narInfoHits: number
  /** narinfos no upstream had (answered from the negative cache, too) */
  narInfoMisses: number
  /** NARs streamed from upstream and imported into the own cache */
  imported: number
  /** upstream failures and refusals (bad signature, NarHash mismatch, outage) */
  errors: number
  /** NAR bytes streamed from upstream (uncompressed) */
  narBytes: number
  /** blocks of those NARs stored in the own cache as they streamed */
  narBlocks: number
}

export interface FallbackOptions {
  upstreams: HttpBinaryCache[]
  /** keys an upstream narinfo must be signed by */
  keys: PublicKey[]
  repo: string
  blocks: CacheBlocks
  /** signs the own cache's records as imported paths are added */
  key: SecretKey
  recipe: CidRecipe
  recordLifetimeMs: number
  log: { warn: (m: string) => void, info: (m: string) => void }
  /** called once an imported path is in the own cache's record */
  onImported?: () => void
}

/** A NAR being streamed to Nix while it is imported. */
export interface UpstreamNar {
  narSize: number
  /** writes the verified NAR through `write` (awaiting each call), then adds it to the own cache */
  stream: (write: (chunk: Uint8Array) => Promise<void>) => Promise<void>
}

/**
 * Answers what the served caches miss from HTTP binary caches: a narinfo
 * signed by a trusted key is served with a URL of this gateway, and its NAR
 * is streamed to Nix while it is checked and imported into the own cache
 * (write-through), so the next request is local and peers can fetch it.
 */
export class UpstreamFallback {
  readonly counters: FallbackCounters = { narInfoHits: 0, narInfoMisses: 0, imported: 0, errors: 0, narBytes: 0, narBlocks: 0 }
  // Bounded: clients choose the hashes asked for.
  private readonly missing = new Lru<number>(100_000)
  private readonly found = new Lru<{ info: NarInfo, upstream: HttpBinaryCache }>(10_000)

  constructor (private readonly options: FallbackOptions) {}

  /**
   * The narinfo text for `hash` from the first upstream that has a trusted one, its URL pointing at `nar/upstream/<hash>.nar`;
   * undefined when every upstream answered that it has none; UnavailableError when one that failed might have it.
   */
  async narInfo (hash: string): Promise<string | undefined> {
    const missedAt = this.missing.get(hash)
    if (missedAt !== undefined && Date.now() - missedAt < NEGATIVE_TTL_MS) { this.counters.narInfoMisses++; return undefined }
    const failures: string[] = []
    for (const upstream of this.options.upstreams) {
      let text: string | undefined
      try {
        text = await upstream.narInfo(hash)
      } catch (err) {
        this.counters.errors++
        this.options.log.warn(`upstream ${upstream.url}: ${(err as Error).message}`)
        failures.push((err as Error).message)
        continue
      }
      if (text === undefined) continue
      let info: NarInfo
      try {
        info = trustedNarInfo(text, hash, this.options.keys, upstream.url)
      } catch (err) {
        this.counters.errors++
        this.options.log.warn(`upstream ${upstream.url}: ${(err as Error).message}; ignored`)
        continue
      }
      this.found.set(hash, { info, upstream })
      this.counters.narInfoHits++
      return formatNarInfo({ ...info, url: `nar/upstream/${hash}.nar`, compression: 'none', fileHash: info.narHash, fileSize: info.narSize })
    }
    // An outage is no miss: answered 503 (which Nix does not remember), and asked again next time.
    if (failures.length > 0) throw new UnavailableError(`no upstream could be asked for ${hash} (${failures.join('; ')}); try again once it is back`)
    this.missing.set(hash, Date.now())
    this.counters.narInfoMisses++
    return undefined
  }

  /** The upstream NAR for a narinfo served by `narInfo`, or undefined when none was. */
  nar (hash: string): UpstreamNar | undefined {
    const hit = this.found.get(hash)
    if (hit === undefined) return undefined
    const { info, upstream } = hit
    return {
      narSize: info.narSize,
      stream: async (write) => {
        try {
          await this.streamAndImport(info, upstream, write)
          this.found.delete(hash)
          this.counters.imported++
          this.options.onImported?.()
          this.options.log.info(`upstream: imported ${info.storePath} from ${upstream.url}`)
        } catch (err) {
          this.counters.errors++
          throw err
        }
      }
    }
  }

  private async streamAndImport (info: NarInfo, upstream: HttpBinaryCache, write: (chunk: Uint8Array) => Promise<void>): Promise<void> {
    // The last chunk is held back until the NAR matched its narinfo: a complete response is a correct one.
    let held: Uint8Array | undefined
    const writeEpoch = this.options.blocks.writeEpoch
    const counted: BlockPutter = { put: async (cid, bytes, options) => { this.counters.narBlocks++; return await this.options.blocks.put(cid, bytes, options) } }
    const { cid, tsize } = await importUpstreamNar(counted, info, upstream, this.options.recipe.chunker, async chunk => {
      this.counters.narBytes += chunk.length
      if (held !== undefined) await write(held)
      held = chunk
    })
    if (held !== undefined) await write(held)
    await appendEntries({ repo: this.options.repo, blocks: this.options.blocks }, this.options.key, [{ hash: parseStorePath(info.storePath).hash, nar: cid, narTsize: tsize, narInfo: formatNarInfo(ownNarInfo(info, cid)) }], { ...this.options, writeEpoch })
  }
}
