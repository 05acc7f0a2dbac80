import { NarInfoParseError } from '../errors.js'

/** The `nix-cache-info` file at the root of a binary cache. */
export interface CacheInfo {
  storeDir: string
  wantMassQuery: boolean
  priority?: number
  /** fields Nix ignores, e.g. `X-CID-Recipe` */
  extra: Record<string, string>
}

/** Formats `nix-cache-info` text. */
export function formatCacheInfo (info: CacheInfo): string {
  let out = `StoreDir: ${info.storeDir}\nWantMassQuery: ${info.wantMassQuery ? 1 : 0}\n`
  if (info.priority !== undefined) out += `Priority: ${info.priority}\n`
  for (const [k, v] of Object.entries(info.extra)) out += `${k}: ${v}\n`
  return out
}

/** Parses `nix-cache-info` text; StoreDir is required, as for Nix. */
export function parseCacheInfo (text: string): CacheInfo {
  const info: CacheInfo = { storeDir: '', wantMassQuery: false, extra: {} }
  text.split('\n').forEach((line, i) => {
    if (line === '') return
    const colon = line.indexOf(':')
    if (colon <= 0) throw new NarInfoParseError(i + 1, 'line', `expected "Field: value", got ${JSON.stringify(line.slice(0, 80))}`)
    const field = line.slice(0, colon)
    const value = line.slice(colon + 1).trim()
    if (field === 'StoreDir') info.storeDir = value
    else if (field === 'WantMassQuery') info.wantMassQuery = value === '1'
    else if (field === 'Priority') {
      if (!/^[0-9]{1,9}$/.test(value)) throw new NarInfoParseError(i + 1, field, `not a number: ${JSON.stringify(value)}`)
      info.priority = Number(value)
    } else info.extra[field] = value
  })
  if (info.storeDir === '') throw new NarInfoParseError(1, 'StoreDir', 'missing')
  return info
}
