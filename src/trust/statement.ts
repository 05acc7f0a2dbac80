import { RecordError } from '../errors.js'
import { ipnsNameOf } from '../ipfs/ipns.js'
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
