import { createReadStream } from 'node:fs'
import { homedir } from 'node:os'
import { join } from 'node:path'

/** Nix's on-disk narinfo cache: narinfos by substituter URL, kept for narinfo-cache-positive-ttl (30 days). */
export function narInfoDiskCachePath (env: NodeJS.ProcessEnv = process.env): string {
  return join(env.XDG_CACHE_HOME ?? join(env.HOME ?? homedir(), '.cache'), 'nix', 'binary-cache-v6.sqlite')
}

/** Longest text a scan looks for: a match cut by a chunk boundary is found in the overlap. */
const OVERLAP = 512

/**
 * The texts matching `pattern` (global) in Nix's narinfo disk cache and its
 * write-ahead log, read as bytes: SQLite keeps text as it is, and Node 20
 * has no SQLite reader. Enough to tell whether a substituter URL and
 * signatures by a key name are in it; empty when there is no cache.
 */
export async function scanNarInfoDiskCache (pattern: RegExp, path = narInfoDiskCachePath()): Promise<Set<string>> {
  const found = new Set<string>()
  for (const file of [path, `${path}-wal`]) {
    let tail = ''
    try {
      for await (const chunk of createReadStream(file, { encoding: 'latin1' })) {
        const text = tail + (chunk as string)
        for (const m of text.matchAll(pattern)) found.add(m[0])
        tail = text.slice(-OVERLAP)
      }
    } catch { /* no such file: nothing cached */ }
  }
  return found
}
