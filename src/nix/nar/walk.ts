import { closeSync, lstatSync, openSync, readdirSync, readlinkSync, readSync, type Stats } from 'node:fs'
import { open } from 'node:fs/promises'
import { UnsupportedFileError } from '../../errors.js'
import type { NarEvent } from './events.js'

/** Size of each read from a large file. */
const READ_BYTES = 1024 * 1024
/** Reads of a large file kept in flight ahead of the consumer, so hashing and disk overlap. */
const READ_AHEAD = 4

/**
 * Reads a small file in one synchronous call. Store paths hold thousands of
 * small files; a trip through the thread pool per open/read/close costs more
 * than the read itself, and a publisher has no other clients to keep waiting.
 */
function readSmallFile (path: Buffer, size: number): Uint8Array {
  const fd = openSync(path, 'r')
  try {
    const buf = new Uint8Array(size)
    let got = 0
    while (got < size) {
      const n = readSync(fd, buf, got, size - got, got)
      if (n === 0) throw new UnsupportedFileError(`${path.toString()} changed size while it was being read`)
      got += n
    }
    return buf
  } finally {
    closeSync(fd)
  }
}

/** Streams a large file with reads kept in flight, failing if it changes size underneath us. */
async function * readLargeFile (path: Buffer, size: number): AsyncGenerator<Uint8Array> {
  const fh = await open(path, 'r')
  const inFlight: Array<Promise<Uint8Array>> = []
  let next = 0
  const readAt = async (offset: number): Promise<Uint8Array> => {
    const want = Math.min(READ_BYTES, size - offset)
    const chunk = Buffer.allocUnsafeSlow(want)
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

async function * once (bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  if (bytes.length > 0) yield bytes
}

function nodeEvent (path: Buffer, st: Stats, name: Uint8Array | undefined): NarEvent {
  if (st.isFile()) {
    const contents = st.size <= READ_BYTES ? once(readSmallFile(path, st.size)) : readLargeFile(path, st.size)
    return { type: 'file', name, executable: (st.mode & 0o100) !== 0, size: st.size, contents }
  }
  if (st.isSymbolicLink()) return { type: 'symlink', name, target: readlinkSync(path, { encoding: 'buffer' }) }
  if (st.isDirectory()) return { type: 'directory', name }
  throw new UnsupportedFileError(`${path.toString()} is neither a regular file, a directory nor a symlink; it cannot be put into a NAR`)
}

function sortedNames (dir: Buffer): Buffer[] {
  return readdirSync(dir, { encoding: 'buffer' }).sort(Buffer.compare)
}

/**
 * Walks a filesystem path into NAR events exactly as `nix-store --dump` orders
 * them: entries sorted by their bytes, executable bit from the owner's x bit.
 */
export async function * walkPath (root: string): AsyncGenerator<NarEvent> {
  const rootBuf = Buffer.from(root)
  const rootEvent = nodeEvent(rootBuf, lstatSync(rootBuf), undefined)
  yield rootEvent
  if (rootEvent.type !== 'directory') return
  // Iterative depth-first walk: deep trees must not grow the JS stack or nest generators.
  const stack: Array<{ dir: Buffer, names: Buffer[], next: number }> = [{ dir: rootBuf, names: sortedNames(rootBuf), next: 0 }]
  while (stack.length > 0) {
    const frame = stack[stack.length - 1]!
    const name = frame.names[frame.next++]
    if (name === undefined) {
      stack.pop()
      yield { type: 'end' }
      continue
    }
    const path = Buffer.concat([frame.dir, Buffer.from('/'), name])
    const ev = nodeEvent(path, lstatSync(path), name)
    yield ev
    if (ev.type === 'directory') stack.push({ dir: path, names: sortedNames(path), next: 0 })
  }
}
