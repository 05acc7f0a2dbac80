import { statfs } from 'node:fs/promises'
import { DiskError } from './errors.js'

/** errno codes of a disk that cannot take a write: full, over quota, failing, read-only. */
const DISK_ERRNOS = new Set(['ENOSPC', 'EDQUOT', 'EIO', 'EROFS'])

/** True for an error of the disk itself (not of the caller's arguments or a missing file). */
export function isDiskFailure (err: unknown): boolean {
  return err instanceof DiskError || DISK_ERRNOS.has((err as NodeJS.ErrnoException | undefined)?.code ?? '')
}

/** Bytes free to an unprivileged writer on the file system holding `path`, if it can be told. */
export async function freeBytes (path: string): Promise<number | undefined> {
  try {
    const s = await statfs(path)
    return s.bavail * s.bsize
  } catch {
    return undefined
  }
}

/**
 * `err` (a disk failure, see isDiskFailure) as a DiskError naming `where`
 * and the space the operation needed; other errors are returned unchanged.
 */
export async function asDiskError (err: unknown, where: string, neededBytes?: number): Promise<unknown> {
  if (!isDiskFailure(err)) return err
  const errno = err instanceof DiskError ? err.errno : (err as NodeJS.ErrnoException).code!
  const cause = err instanceof DiskError ? err.cause : err
  return new DiskError(where, errno, neededBytes ?? (err instanceof DiskError ? err.neededBytes : undefined), await freeBytes(where), { cause })
}
