import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { expect } from 'vitest'

/** Flips one byte of `needle`'s first occurrence in the repo's first pack file (a stored block damaged on disk). */
export function flipPackedByte (repo: string, needle: Uint8Array): void {
  const pack = join(repo, 'packs', readdirSync(join(repo, 'packs')).find(f => f.endsWith('.pack'))!)
  const bytes = readFileSync(pack)
  const at = bytes.indexOf(needle)
  expect(at).toBeGreaterThan(0)
  bytes[at]! ^= 0xff
  writeFileSync(pack, bytes)
}
