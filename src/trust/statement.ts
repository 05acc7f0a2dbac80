import { RecordError } from '../errors.js'
import { ipnsNameOf } from '../ipfs/ipns.js'
import { parseStorePath } from '../nix/store-path.js'
import { formatPublicKey, parsePublicKey, publicKeyOf, signFingerprint, verifyFingerprint, type SecretKey } from '../nix/signing.js'

/** What a builder states when its rebuild of a path differs from what others signed. */
export interface DisputeStatement {
  type: 'nixipfs-dispute-v1'
  storePath: string
  deriver?: string
  /** what the stating builder's rebuild gave */
  rebuilt: { narHash: string, narSize: number }
  /** what followed builders signed for the path */
  signed: Array<{ key: string, narHash: string, narSize: number }>
  /** the stating builder's public key (`name:base64`); its cache is the one the statement is published in */
  by: string
  date: string
}

/** Signs a statement: the file `disputes/<hash>.json` in the builder's cache. */
export function signStatement (key: SecretKey, statement: Omit<DisputeStatement, 'type' | 'by'>): string {
  const full: DisputeStatement = {
    type: 'nixipfs-dispute-v1',
    storePath: statement.storePath,
    ...(statement.deriver === undefined ? {} : { deriver: statement.deriver }),
    rebuilt: statement.rebuilt,
    signed: statement.signed,
    by: formatPublicKey(publicKeyOf(key)),
    date: statement.date
  }
  const body = JSON.stringify(full)
  return JSON.stringify({ statement: full, sig: signFingerprint(key, body) }, null, 2) + '\n'
}

/**
 * Reads a published statement and checks it: signed by the key it names,
 * and that key is the one whose cache (IPNS name `cacheName`) published it.
 */
export function openStatement (text: string, cacheName: string): DisputeStatement {
  let parsed: { statement?: DisputeStatement, sig?: string } | null
  try { parsed = JSON.parse(text) } catch { throw new RecordError('ERR_STATEMENT', `a dispute statement in /ipns/${cacheName} is not JSON`) }
  const { statement, sig } = typeof parsed === 'object' && parsed !== null ? parsed : {}
  if (statement?.type !== 'nixipfs-dispute-v1' || typeof sig !== 'string' || typeof statement.by !== 'string') {
    throw new RecordError('ERR_STATEMENT', `a dispute statement in /ipns/${cacheName} is malformed`)
  }
  const key = parsePublicKey(statement.by) // InvalidKeyError for a malformed key
  if (ipnsNameOf(key.key) !== cacheName) throw new RecordError('ERR_STATEMENT', `a dispute statement in /ipns/${cacheName} names another key (${statement.by})`)
  if (!verifyFingerprint([key], JSON.stringify(statement), sig)) throw new RecordError('ERR_STATEMENT', `a dispute statement in /ipns/${cacheName} has a bad signature`)
  return statement
}

/** Reads a statement announced on the network: as openStatement, for the cache of the key it names; also checks what a vote needs. */
export function openAnnounced (text: string): { statement: DisputeStatement, name: string } {
  let by: unknown
  try { by = (JSON.parse(text) as { statement?: { by?: unknown } } | null)?.statement?.by } catch { throw new RecordError('ERR_STATEMENT', 'an announced dispute statement is not JSON') }
  if (typeof by !== 'string') throw new RecordError('ERR_STATEMENT', 'an announced dispute statement names no key')
  const name = ipnsNameOf(parsePublicKey(by).key)
  const statement = openStatement(text, name)
  parseStorePath(statement.storePath) // its hash names the file the statement is kept in
  if (typeof statement.rebuilt?.narHash !== 'string' || !Number.isSafeInteger(statement.rebuilt.narSize) || typeof statement.date !== 'string' || !Array.isArray(statement.signed)) {
    throw new RecordError('ERR_STATEMENT', `a dispute statement by ${by} is malformed (rebuilt NarHash, NarSize, signed or date)`)
  }
  return { statement, name }
}
