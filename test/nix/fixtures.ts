// Helpers shared by the tests of src/nix: where fixtures/ is, how to rebuild
// the fixture trees, and how to turn NAR event streams into plain data.
import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { NarEvent } from '../../src/nix/nar/events.js'
import { narString } from '../../src/nix/nar/wire.js'

/** Absolute path of the repository's fixtures/ directory. */
export const FIXTURES = fileURLToPath(new URL('../../fixtures/', import.meta.url))

/** Reads a fixture file as bytes. */
export function fixture (path: string): Buffer {
  return readFileSync(join(FIXTURES, path))
}

/** Reads a fixture file as text. */
export function fixtureText (path: string): string {
  return readFileSync(join(FIXTURES, path), 'utf8')
}

/** Names of the NAR cases in fixtures/nar (one per tree made by make-trees.sh). */
export const NAR_CASES: string[] = readdirSync(join(FIXTURES, 'nar'))
  .filter(f => f.endsWith('.nar'))
  .map(f => f.slice(0, -4))
  .sort()

/** Runs fixtures/make-trees.sh into a fresh temporary directory; returns it and a cleanup function. */
export function makeTrees (): { dir: string, cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'nixipfs-trees-'))
  execFileSync('bash', [join(FIXTURES, 'make-trees.sh'), dir], { stdio: ['ignore', 'ignore', 'pipe'] })
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) }
}

/** Collects an async byte stream into one buffer. */
export async function collect (source: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = []
  for await (const chunk of source) parts.push(Uint8Array.from(chunk))
  return Buffer.concat(parts)
}

/** Feeds `bytes` as a stream of chunks of `size` bytes (the last one shorter). */
export async function * chunked (bytes: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  if (bytes.length === 0) return
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size)
}

/** A NAR event with file contents read into memory and names as buffers: comparable with toEqual. */
export type PlainEvent =
  | { type: 'directory', name?: Buffer }
  | { type: 'end' }
  | { type: 'file', name?: Buffer, executable: boolean, size: number, contents: Buffer }
  | { type: 'symlink', name?: Buffer, target: Buffer }

const buf = (b: Uint8Array | undefined): Buffer | undefined => b === undefined ? undefined : Buffer.from(b)

function withName<T extends object> (ev: T, name: Uint8Array | undefined): T & { name?: Buffer } {
  return name === undefined ? ev : { ...ev, name: Buffer.from(name) }
}

/** Reads a whole event stream, reading each file's contents before pulling the next event. */
export async function materialize (events: AsyncIterable<NarEvent>): Promise<PlainEvent[]> {
  const out: PlainEvent[] = []
  for await (const ev of events) {
    switch (ev.type) {
      case 'end': out.push({ type: 'end' }); break
      case 'directory': out.push(withName({ type: 'directory' as const }, ev.name)); break
      case 'symlink': out.push(withName({ type: 'symlink' as const, target: Buffer.from(ev.target) }, ev.name)); break
      case 'file': out.push(withName({ type: 'file' as const, executable: ev.executable, size: ev.size, contents: await collect(ev.contents) }, ev.name)); break
    }
  }
  return out
}

/** Plain events with file contents replaced by their SHA-256 (hex): deep equality of large files is slow. */
export function digested (events: PlainEvent[]): unknown[] {
  return events.map(e => e.type === 'file' ? { ...e, contents: createHash('sha256').update(e.contents).digest('hex') } : e)
}

/** Turns plain events back into a NAR event stream (file contents in chunks of `chunk` bytes). */
export async function * replay (events: PlainEvent[], chunk = 1 << 20): AsyncGenerator<NarEvent> {
  for (const ev of events) {
    if (ev.type === 'file') yield { ...ev, name: buf(ev.name), contents: chunked(ev.contents, chunk) }
    else yield ev
  }
}

/** A NAR (or a piece of one) from its strings: every NAR is a sequence of length-prefixed, padded strings. */
export function narOf (...tokens: Array<string | Uint8Array>): Buffer {
  return Buffer.concat(tokens.map(t => narString(t)))
}

/** Tokens of a directory NAR whose entries are regular files named `names` with contents `x`, in the given order. */
export function dirTokens (names: Array<string | Uint8Array>): Array<string | Uint8Array> {
  const tokens: Array<string | Uint8Array> = ['nix-archive-1', '(', 'type', 'directory']
  for (const name of names) tokens.push('entry', '(', 'name', name, 'node', '(', 'type', 'regular', 'contents', 'x', ')', ')')
  tokens.push(')')
  return tokens
}

/** Path-info of the fixture binary cache: role (dep, top, ca) → store path base name. */
export function fixturePaths (): Record<'dep' | 'top' | 'ca', string> {
  const out: Record<string, string> = {}
  for (const line of fixtureText('binary-cache/paths.txt').trim().split('\n')) {
    const [role, base] = line.split(' ')
    out[role!] = base!
  }
  return out as Record<'dep' | 'top' | 'ca', string>
}
