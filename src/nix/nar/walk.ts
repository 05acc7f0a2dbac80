import { lstat, open, readdir, readlink } from 'node:fs/promises'
import type { Stats } from 'node:fs'
import { UnsupportedFileError } from '../../errors.js'
import type { NarEvent } from './events.js'

/** Size of each read from a regular file. */
const READ_BYTES = 1024 * 1024
/** Reads kept in flight ahead of the consumer, so hashing and disk overlap. */
const READ_AHEAD = 4

/** Streams the contents of a regular file, failing if it changes size underneath us. */
async function * readFile (path: Buffer, size: number): AsyncGenerator<Uint8Array> {
  const fh = await open(path, 'r')
  const inFlight: Array<Promise<Uint8Array>> = []
  let next = 0
  const readAt = async (offset: number): Promise<Uint8Array> => {
    const want = Math.min(READ_BYTES, size - offset)
    const chunk = Buffer.allocUnsafe(want)
    const { bytesRead } = await fh.read(chunk, 0, want, offset)
    if (bytesRead !== want) throw new UnsupportedFileError(`${path.toString()} changed size while it was being read`)
    return chunk
  }
  try {
    while (next < size || inFlight.length > 0) {
      while (next < size && inFlight.length < READ_AHEAD) {
        const p = readAt(next)
        p.catch(() => {}) // observed when awaited below; avoid an unhandled rejection meanwhile
        inFlight.push(p)
        next += READ_BYTES
      }
      yield await inFlight.shift()!
    }
  } finally {
    await Promise.allSettled(inFlight)
    await fh.close()
  }
}

function nodeEvent (path: Buffer, st: Stats, name: Uint8Array | undefined): Promise<NarEvent> | NarEvent {
  if (st.isFile()) {
    return { type: 'file', name, executable: (st.mode & 0o100) !== 0, size: st.size, contents: readFile(path, st.size) }
  }
  if (st.isSymbolicLink()) {
    return readlink(path, { encoding: 'buffer' }).then(target => ({ type: 'symlink', name, target }))
  }
  if (st.isDirectory()) return { type: 'directory', name }
  throw new UnsupportedFileError(`${path.toString()} is neither a regular file, a directory nor a symlink; it cannot be put into a NAR`)
}

/**
 * Walks a filesystem path into NAR events exactly as `nix-store --dump` orders
 * them: entries sorted by their bytes, executable bit from the owner's x bit.
 */
export async function * walkPath (root: string): AsyncGenerator<NarEvent> {
  const rootBuf = Buffer.from(root)
  const rootEvent = await nodeEvent(rootBuf, await lstat(rootBuf), undefined)
  yield rootEvent
  if (rootEvent.type !== 'directory') return
  // Iterative depth-first walk: deep trees must not grow the JS stack or nest generators.
  const stack: Array<{ dir: Buffer, names: Buffer[], next: number }> = [
    { dir: rootBuf, names: await sortedNames(rootBuf), next: 0 }
  ]
  while (stack.length > 0) {
    const frame = stack[stack.length - 1]!
    const name = frame.names[frame.next++]
    if (name === undefined) {
      stack.pop()
      yield { type: 'end' }
      continue
    }
    const path = Buffer.concat([frame.dir, Buffer.from('/'), name])
    const ev = await nodeEvent(path, await lstat(path), name)
    yield ev
    if (ev.type === 'directory') stack.push({ dir: path, names: await sortedNames(path), next: 0 })
  }
}

async function sortedNames (dir: Buffer): Promise<Buffer[]> {
  const names = await readdir(dir, { encoding: 'buffer' })
  return names.sort(Buffer.compare)
}
