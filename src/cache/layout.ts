import type { CID } from 'multiformats/cid'
import { DAG_PB_CODE } from '../ipfs/block.js'
import { DRV_BASE_NAME } from '../nix/build-log.js'
import { CACHE_INFO_FILE, DISPUTES_DIR, LOG_DIR, NAR_DIR, NAR_SUFFIX, REALISATIONS_DIR } from './directory.js'

/**
 * What a block of a cache root's DAG is, as the binary cache layout says:
 * the root directory, one of its directories (`nar/`, `realisations/`,
 * `disputes/`, `log/`), a small file (`nix-cache-info`, a narinfo, a
 * realisation, a dispute statement), part of a NAR, or part of a build log.
 */
export type LayoutRole = 'root' | 'nar' | 'realisations' | 'disputes' | 'log' | 'file' | 'nar-data' | 'log-data'

const NARINFO = /^[0-9a-df-np-sv-z]{32}\.narinfo$/
const STATEMENT = /^[0-9a-df-np-sv-z]{32}\.json$/
const REALISATION = /^[^/]{1,200}\.doi$/
/** A HAMT shard's link to a sub-shard is named by its slot alone (upper-case hex, 2 digits for a fanout of 256). */
const SHARD_LINK = /^[0-9A-F]{1,4}$/

/** True when `name` is `wanted`, or is `wanted` after a HAMT shard's slot prefix. */
function named (name: string, wanted: (entry: string) => boolean): boolean {
  for (let width = 0; width <= 4; width++) {
    if ((width === 0 || /^[0-9A-F]+$/.test(name.slice(0, width))) && wanted(name.slice(width))) return true
  }
  return false
}

/** The role of the block a link named `name` leads to from a block of role `role`; undefined when the layout has no such entry. */
export function childRole (role: LayoutRole, name: string | undefined, withNars: boolean): LayoutRole | undefined {
  const link = name ?? ''
  switch (role) {
    case 'file': return link === '' ? 'file' : undefined // a file's blocks have unnamed links
    case 'nar-data': return 'nar-data'
    case 'log-data': return 'log-data'
    default:
      if (SHARD_LINK.test(link)) return role // the same directory, one shard down
  }
  switch (role) {
    case 'root':
      if (named(link, n => n === CACHE_INFO_FILE || NARINFO.test(n))) return 'file'
      if (named(link, n => n === NAR_DIR)) return 'nar'
      if (named(link, n => n === REALISATIONS_DIR)) return 'realisations'
      if (named(link, n => n === DISPUTES_DIR)) return 'disputes'
      if (named(link, n => n === LOG_DIR)) return 'log'
      return undefined
    case 'nar': return withNars && named(link, n => n.endsWith(NAR_SUFFIX)) ? 'nar-data' : undefined
    case 'realisations': return named(link, n => REALISATION.test(n)) ? 'file' : undefined
    case 'disputes': return named(link, n => STATEMENT.test(n)) ? 'file' : undefined
    // Logs can be megabytes, like NARs: an index walk leaves them to be fetched when asked for.
    case 'log': return withNars && named(link, n => DRV_BASE_NAME.test(n)) ? 'log-data' : undefined
  }
}

/**
 * Tracks the layout role of each block a depth-first walk from a cache root
 * reaches, and says which links leave the layout (anything else a root links,
 * such as a hostile cache's large extra files) so the walk skips them. With
 * `withNars`, NARs under `nar/` and build logs under `log/` are part of it;
 * without, only the index is.
 */
export class CacheLayout {
  /** roles of blocks queued but not yet visited (dag-pb only: raw blocks have no links to judge) */
  private readonly roles = new Map<string, LayoutRole>()
  private parent = ''
  private parentRole: LayoutRole | undefined

  constructor (root: CID, private readonly withNars: boolean) {
    this.roles.set(root.toString(), 'root')
  }

  /** The role of a dag-pb block reached, until its links were judged. */
  roleOf (cid: CID): LayoutRole | undefined {
    return cid.toString() === this.parent ? this.parentRole : this.roles.get(cid.toString())
  }

  /** Leaves the links of `cid` out of the walk (a file read otherwise). */
  skipLinksOf (cid: CID): void {
    this.roles.delete(cid.toString())
  }

  /** For WalkOptions.skipLink: true when the link from `parent` leaves the layout. */
  readonly skipLink = (name: string | undefined, parent: CID, cid: CID): boolean => {
    const key = parent.toString()
    if (key !== this.parent) {
      // A walk judges all of a block's links together, once: its role is needed no longer.
      this.parent = key
      this.parentRole = this.roles.get(key)
      this.roles.delete(key)
    }
    const role = this.parentRole === undefined ? undefined : childRole(this.parentRole, name, this.withNars)
    if (role === undefined) return true
    if (cid.code === DAG_PB_CODE) this.roles.set(cid.toString(), role)
    return false
  }
}
