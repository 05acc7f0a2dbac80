import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'

// The one module that names the files and folders of a repo; the others ask it.

/** What an IPNS name (base36 CIDv1 of a libp2p key) looks like: also keeps names from peers out of path tricks. */
export const IPNS_NAME = /^k[0-9a-z]{40,100}$/

/** The folder of the repo's pack store (block packs and their index). */
export function packsDir (repo: string): string {
  return join(repo, 'packs')
}

/** The folder of the frames of blocks compressed ahead (`nixipfs precompress`): a pack store of its own, keyed by the blocks' CIDs. */
export function precompressedDir (repo: string): string {
  return join(repo, 'packs-zstd')
}

/** File holding the newest record the repo has for an IPNS name. */
export function recordPath (repo: string, name: string): string {
  return join(repo, 'records', `${name}.ipns`)
}

/** The IPNS names the repo holds a record for (own and followed caches), sorted. */
export async function recordNames (repo: string): Promise<string[]> {
  const files = await readdir(join(repo, 'records')).catch(() => [] as string[])
  return files.filter(f => f.endsWith('.ipns')).sort().map(f => f.slice(0, -'.ipns'.length))
}

/** The stored record bytes for `name` exactly as signed, or undefined (also for names that are not IPNS names). */
export async function loadRecordBytes (repo: string, name: string): Promise<Uint8Array | undefined> {
  if (!IPNS_NAME.test(name)) return undefined
  try {
    return await readFile(recordPath(repo, name))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
}

/** The file listing CIDs that gc keeps besides the roots of records: one CID per line, `#` comments. */
export function pinsPath (repo: string): string {
  return join(repo, 'pins')
}

/** File holding the pin requests taken over the Pinning Service API (JSON; their CIDs are kept by gc like `pins`). */
export function remotePinsPath (repo: string): string {
  return join(repo, 'remote-pins.json')
}

/** The folder of this node's dispute ledger (`<hash>.json` per disputed store path). */
export function disputesDir (repo: string): string {
  return join(repo, 'disputes')
}

/** The folder of dispute statements heard from the network (`<hash>-<IPNS name of the signer>.json`, as signed). */
export function heardDir (repo: string): string {
  return join(repo, 'disputes', 'heard')
}

/** The folder of publish requests that failed and wait for a retry (one file each). */
export function queueDir (repo: string): string {
  return join(repo, 'queue')
}

/** The folder of the repo's keys: the cache's signing key pair and the libp2p identity. */
export function keysDir (repo: string): string {
  return join(repo, 'keys')
}

/** The libp2p datastore's folder (peer book, DHT state). */
export function datastoreDir (repo: string): string {
  return join(repo, 'datastore')
}

/** The repo's lock file (one writer at a time). */
export function lockPath (repo: string): string {
  return join(repo, 'lock')
}

/** File naming the process (gateway or mirror) that writes fetched blocks into the repo while it runs. */
export function fetcherPidPath (repo: string): string {
  return join(repo, 'fetcher.pid')
}
