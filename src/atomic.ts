import { lstat, open, readlink, realpath, rename, stat, unlink, writeFile, type FileHandle } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import { makeDirectory } from './disk.js'
import { UsageError } from './errors.js'

/**
 * Writes a temp file beside `path` with `write`, syncs it and renames it into
 * place: readers see the old file or the complete new one, never a torn one,
 * and a failed write leaves no temp file behind. A symbolic link is written
 * through (the file it names is replaced, the link stays), and what is no
 * regular file (a device, a FIFO) is written to as it is: a rename would put
 * a file in its place (`-o /dev/null`, as root, replaced the device).
 */
async function replaceAtomically (path: string, write: (fh: FileHandle) => Promise<void>, mode: number): Promise<void> {
  const existing = await stat(path).catch((err: NodeJS.ErrnoException) => { if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return undefined; throw err })
  if (existing?.isDirectory() === true) throw new UsageError(`${path} is a directory; give the path of a file`)
  if (existing !== undefined && !existing.isFile()) {
    const fh = await open(path, 'w')
    try { await write(fh) } finally { await fh.close() }
    return
  }
  const target = existing !== undefined ? await realpath(path) : await danglingTarget(path)
  await makeDirectory(dirname(target))
  const tmp = `${target}.tmp-${process.pid}-${Date.now()}`
  // A failure is told of the file the caller named, not of the temp file it never heard of.
  const named = (err: unknown): unknown => {
    if ((err as NodeJS.ErrnoException).path === tmp) (err as NodeJS.ErrnoException).path = path
    return err
  }
  const fh = await open(tmp, 'wx', mode).catch((err: unknown) => { throw named(err) })
  try {
    // The file keeps its owner where this process may give it (root editing another user's nix.conf).
    if (existing !== undefined && process.getuid?.() === 0) await fh.chown(existing.uid, existing.gid)
    await write(fh)
    await fh.sync()
    await fh.close()
    await rename(tmp, target)
  } catch (err) {
    await fh.close().catch(() => {})
    await unlink(tmp).catch(() => {})
    throw named(err)
  }
  // Make the rename itself durable.
  const dir = await open(dirname(target), 'r')
  try { await dir.sync() } finally { await dir.close() }
}

/** Where a new file at `path` goes: `path` itself, or what it names if it is a symbolic link to nothing yet. */
async function danglingTarget (path: string): Promise<string> {
  const link = await lstat(path).then(s => s.isSymbolicLink(), () => false)
  return link ? resolve(dirname(path), await readlink(path)) : path
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
