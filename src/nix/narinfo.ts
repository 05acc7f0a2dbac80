import { NarInfoParseError } from '../errors.js'
import { STORE_DIR } from '../constants.js'
import { formatSha256, parseSha256 } from './hash.js'
import { verifyFingerprint, type PublicKey } from './signing.js'
import { parseStoreBaseName, parseStorePath } from './store-path.js'

/** A narinfo: what a binary cache says about one store path. */
export interface NarInfo {
  /** absolute store path */
  storePath: string
  url: string
  /** `none`, `xz`, `zstd`, `bzip2`…; a narinfo without the field means bzip2 */
  compression: string
  fileHash?: string
  fileSize?: number
  /** `sha256:<nix32>` */
  narHash: string
  narSize: number
  /** base names of referenced store paths */
  references: string[]
  /** base name of the deriver `.drv` */
  deriver?: string
  /** `keyname:base64` signatures over the fingerprint */
  sigs: string[]
  ca?: string
}

/** Longest narinfo text accepted (cache.nixos.org narinfos with many references stay far below). */
export const MAX_NARINFO_BYTES = 1024 * 1024

function parseSize (value: string, line: number, field: string): number {
  if (!/^[0-9]{1,16}$/.test(value) || !Number.isSafeInteger(Number(value))) throw new NarInfoParseError(line, field, `not a byte count: ${JSON.stringify(value)}`)
  return Number(value)
}

function normalizeHash (value: string, line: number, field: string): string {
  try {
    return formatSha256(parseSha256(value))
  } catch (err) {
    throw new NarInfoParseError(line, field, (err as Error).message)
  }
}

/** Parses narinfo text as Nix does: unknown fields are ignored, required ones checked. */
export function parseNarInfo (text: string): NarInfo {
  if (text.length > MAX_NARINFO_BYTES) throw new NarInfoParseError(1, 'narinfo', `text is longer than ${MAX_NARINFO_BYTES} bytes`)
  const info: Partial<NarInfo> & { sigs: string[] } = { sigs: [] }
  const lines = text.split('\n')
  if (lines[lines.length - 1] === '') lines.pop()
  lines.forEach((raw, i) => {
    const n = i + 1
    const colon = raw.indexOf(': ')
    if (colon <= 0) throw new NarInfoParseError(n, 'line', `expected "Field: value", got ${JSON.stringify(raw.slice(0, 80))}`)
    const field = raw.slice(0, colon)
    const value = raw.slice(colon + 2)
    const wrap = <T>(fn: () => T): T => {
      try { return fn() } catch (err) {
        if (err instanceof NarInfoParseError) throw err
        throw new NarInfoParseError(n, field, (err as Error).message)
      }
    }
    switch (field) {
      case 'StorePath': info.storePath = wrap(() => parseStorePath(value).path); break
      case 'URL':
        if (value === '') throw new NarInfoParseError(n, field, 'empty')
        info.url = value; break
      case 'Compression': info.compression = value; break
      case 'FileHash': info.fileHash = normalizeHash(value, n, field); break
      case 'FileSize': info.fileSize = parseSize(value, n, field); break
      case 'NarHash': info.narHash = normalizeHash(value, n, field); break
      case 'NarSize':
        info.narSize = parseSize(value, n, field)
        if (info.narSize === 0) throw new NarInfoParseError(n, field, 'zero') // Nix: "NarSize missing or zero"
        break
      case 'References':
        // Nix tokenizes on spaces and ignores empty tokens.
        info.references = value.split(' ').filter(ref => ref !== '').map(ref => wrap(() => parseStoreBaseName(ref).baseName)); break
      case 'Deriver':
        if (value !== 'unknown-deriver') info.deriver = wrap(() => parseStoreBaseName(value).baseName)
        break
      case 'Sig': info.sigs.push(value); break
      case 'CA': info.ca = value; break
      default: // Nix ignores fields it does not know; so do we.
    }
  })
  const end = Math.max(1, lines.length)
  if (info.storePath === undefined) throw new NarInfoParseError(end, 'StorePath', 'missing')
  if (info.url === undefined) throw new NarInfoParseError(end, 'URL', 'missing')
  if (info.narHash === undefined) throw new NarInfoParseError(end, 'NarHash', 'missing')
  if (info.narSize === undefined) throw new NarInfoParseError(end, 'NarSize', 'missing')
  return {
    ...info,
    compression: info.compression ?? 'bzip2',
    references: info.references ?? []
  } as NarInfo
}

/** Formats a narinfo byte-identical to Nix's own `NarInfo::to_string` (signatures sorted, as Nix keeps them in a set). */
export function formatNarInfo (info: NarInfo): string {
  let out = `StorePath: ${info.storePath}\nURL: ${info.url}\nCompression: ${info.compression}\n`
  if (info.fileHash !== undefined) out += `FileHash: ${info.fileHash}\n`
  if (info.fileSize !== undefined) out += `FileSize: ${info.fileSize}\n`
  out += `NarHash: ${info.narHash}\nNarSize: ${info.narSize}\nReferences: ${info.references.join(' ')}\n`
  if (info.deriver !== undefined) out += `Deriver: ${info.deriver}\n`
  for (const sig of [...new Set(info.sigs)].sort()) out += `Sig: ${sig}\n`
  if (info.ca !== undefined) out += `CA: ${info.ca}\n`
  return out
}

/** The string a Nix signature covers: `1;<path>;<narHash>;<narSize>;<refs,comma-separated>`. */
export function fingerprint (info: Pick<NarInfo, 'storePath' | 'narHash' | 'narSize' | 'references'>): string {
  const refs = [...info.references].sort().map(ref => `${STORE_DIR}/${ref}`).join(',')
  return `1;${info.storePath};${info.narHash};${info.narSize};${refs}`
}

/** Those of `keys` that signed `info` (their signature of its fingerprint verifies). */
export function signersOf (info: NarInfo, keys: PublicKey[]): PublicKey[] {
  const fp = fingerprint(info)
  return keys.filter(k => info.sigs.some(s => verifyFingerprint([k], fp, s)))
}

/**
 * The narinfo `text` pointing at its NAR compressed on the fly: `URL:` gains
 * `extension`, `Compression:` becomes `compression`, and FileHash/FileSize
 * go (a stream compressed as it is sent has neither in advance; Nix then
 * checks only NarHash and NarSize). The signature stays valid: it covers only
 * the fingerprint. Undefined unless the NAR is an uncompressed `nar/….nar`.
 */
export function withCompressedNar (text: string, compression: string, extension: string): string | undefined {
  if (!/^URL: nar\/[^/\n]+\.nar$/m.test(text) || !/^Compression: none$/m.test(text)) return undefined
  return text
    .replace(/^(URL: nar\/[^/\n]+\.nar)$/m, `$1.${extension}`)
    .replace(/^Compression: none$/m, `Compression: ${compression}`)
    .replace(/^File(Hash|Size): .*\n/gm, '')
}
