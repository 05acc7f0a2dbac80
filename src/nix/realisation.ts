import { NarInfoParseError } from '../errors.js'
import { signFingerprint, verifyFingerprint, type PublicKey, type SecretKey } from './signing.js'

/** A realisation: which store path a content-addressed derivation output turned out to be. */
export interface Realisation {
  /** `sha256:<hash of the derivation modulo>!<output name>` */
  id: string
  /** base name of the output path */
  outPath: string
  signatures: string[]
  dependentRealisations: Record<string, string>
}

/** What a realisation signature covers: the JSON without signatures, keys sorted (as Nix's nlohmann::json prints it). */
export function realisationFingerprint (r: Realisation): string {
  const deps = Object.fromEntries(Object.entries(r.dependentRealisations).sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0))
  return JSON.stringify({ dependentRealisations: deps, id: r.id, outPath: r.outPath })
}

/** Parses a `realisations/<id>.doi` document. */
export function parseRealisation (text: string): Realisation {
  let v: Partial<Realisation> | null
  try { v = JSON.parse(text) } catch { throw new NarInfoParseError(1, 'realisation', 'not JSON') }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new NarInfoParseError(1, 'realisation', 'not a JSON object')
  if (typeof v.id !== 'string' || !/^sha256:[0-9a-f]{64}![A-Za-z0-9+\-._?=]+$/.test(v.id)) throw new NarInfoParseError(1, 'realisation', 'bad id')
  if (typeof v.outPath !== 'string' || !/^[0-9a-df-np-sv-z]{32}-/.test(v.outPath)) throw new NarInfoParseError(1, 'realisation', 'bad outPath')
  const deps = typeof v.dependentRealisations === 'object' && v.dependentRealisations !== null ? v.dependentRealisations : {}
  return { id: v.id, outPath: v.outPath, signatures: Array.isArray(v.signatures) ? v.signatures.filter(s => typeof s === 'string') : [], dependentRealisations: deps }
}

/** The document as Nix writes it (keys sorted, no spaces). */
export function formatRealisation (r: Realisation): string {
  const deps = JSON.parse(realisationFingerprint(r)).dependentRealisations as Record<string, string>
  return JSON.stringify({ dependentRealisations: deps, id: r.id, outPath: r.outPath, signatures: [...r.signatures].sort() })
}

/** Adds `key`'s signature to a realisation. */
export function signRealisation (key: SecretKey, r: Realisation): Realisation {
  const sig = signFingerprint(key, realisationFingerprint(r))
  return { ...r, signatures: [...new Set([...r.signatures, sig])] }
}

/** The keys among `keys` whose valid signature a realisation carries, each with that signature. */
export function realisationSigners (r: Realisation, keys: PublicKey[]): Array<{ key: PublicKey, sig: string }> {
  const fp = realisationFingerprint(r)
  return keys.flatMap(key => {
    const sig = r.signatures.find(s => verifyFingerprint([key], fp, s))
    return sig === undefined ? [] : [{ key, sig }]
  })
}
