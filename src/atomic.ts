import { open, rename, unlink, writeFile, type FileHandle } from 'node:fs/promises'
import { dirname } from 'node:path'
import { makeDirectory } from './disk.js'

/**
 * Writes a temp file beside `path` with `write`, syncs it and renames it into
 * place: readers see the old file or the complete new one, never a torn one,
 * and a failed write leaves no temp file behind.
 */
async function replaceAtomically (path: string, write: (fh: FileHandle) => Promise<void>, mode: number): Promise<void> {
  await makeDirectory(dirname(path))
  const tmp = `${path}.tmp-${process.pid}-${Date.now()}`
  const fh = await open(tmp, 'wx', mode)
  try {
    await write(fh)
    await fh.sync()
    await fh.close()
    await rename(tmp, path)
  } catch (err) {
    await fh.close().catch(() => {})
    await unlink(tmp).catch(() => {})
    throw err
  }
  // Make the rename itself durable.
  const dir = await open(dirname(path), 'r')
  try { await dir.sync() } finally { await dir.close() }
}

/** Writes `data` to `path` so that readers see either the old or the new file, never a torn one. */
export async function writeFileAtomic (path: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  await replaceAtomically(path, async fh => await fh.writeFile(data), mode)
}

/** Bytes gathered before one write, so that many small chunks do not each cost a system call. */
const WRITE_BATCH_BYTES = 1024 * 1024

async function * batched (source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  let parts: Uint8Array[] = []
  let size = 0
  for await (const chunk of source) {
    parts.push(chunk)
    size += chunk.length
    if (size >= WRITE_BATCH_BYTES) {
      yield parts.length === 1 ? chunk : Buffer.concat(parts, size)
      parts = []
      size = 0
    }
  }
  if (size > 0) yield Buffer.concat(parts, size)
}

/**
 * Streams `source` into `path` so that `path` is either absent (or its old
 * contents) or complete: the file is renamed into place only once the source
 * has ended without error.
 */
export async function writeStreamAtomic (path: string, source: AsyncIterable<Uint8Array>, mode = 0o644): Promise<void> {
  await replaceAtomically(path, async fh => await writeFile(fh, batched(source)), mode)
}
