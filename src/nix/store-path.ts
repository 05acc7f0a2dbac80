import { InvalidStorePathError } from '../errors.js'
import { STORE_DIR } from '../constants.js'
import { NIX32_ALPHABET } from './base32.js'

/** Length of the hash part of a store path base name (20 bytes in Nix base32). */
export const STORE_HASH_LENGTH = 32

/** Longest name part Nix accepts. */
export const MAX_NAME_LENGTH = 211

const HASH_RE = new RegExp(`^[${NIX32_ALPHABET}]{${STORE_HASH_LENGTH}}$`)
const NAME_RE = /^[A-Za-z0-9+\-._?=]+$/

/** A parsed store path: `/nix/store/<hash>-<name>`. */
export interface StorePath {
  /** 32 characters of Nix base32 */
  hash: string
  name: string
  /** `<hash>-<name>` */
  baseName: string
  /** `/nix/store/<hash>-<name>` */
  path: string
}

/** True when `hash` is a syntactically valid store path hash part. */
export function isStoreHash (hash: string): boolean {
  return HASH_RE.test(hash)
}

/** Parses a store path base name (`<hash>-<name>`), validating it as Nix does. */
export function parseStoreBaseName (baseName: string): StorePath {
  const hash = baseName.slice(0, STORE_HASH_LENGTH)
  const name = baseName.slice(STORE_HASH_LENGTH + 1)
  if (!isStoreHash(hash) || baseName[STORE_HASH_LENGTH] !== '-') {
    throw new InvalidStorePathError(`${JSON.stringify(baseName)} is not a store path base name: expected 32 Nix base32 characters, a dash and a name`)
  }
  if (name.length === 0 || name.length > MAX_NAME_LENGTH) throw new InvalidStorePathError(`store path name of ${JSON.stringify(baseName)} must be 1 to ${MAX_NAME_LENGTH} characters`)
  if (!NAME_RE.test(name)) throw new InvalidStorePathError(`store path name ${JSON.stringify(name)} has characters Nix does not allow`)
  // As Nix's checkName: "." and ".." may not be the first dash-separated component; ".envrc" is fine.
  if (/^\.\.?(-|$)/.test(name)) throw new InvalidStorePathError(`store path name ${JSON.stringify(name)} is not valid: its first dash-separated component is "." or ".."`)
  return { hash, name, baseName, path: `${STORE_DIR}/${baseName}` }
}

/** Parses an absolute store path; a path below one (`/nix/store/x-y/bin/z`) is an error. */
export function parseStorePath (path: string): StorePath {
  if (!path.startsWith(`${STORE_DIR}/`)) throw new InvalidStorePathError(`${JSON.stringify(path)} is not in ${STORE_DIR}`)
  const base = path.slice(STORE_DIR.length + 1)
  if (base.includes('/')) throw new InvalidStorePathError(`${JSON.stringify(path)} is inside a store path, not a store path`)
  return parseStoreBaseName(base)
}
