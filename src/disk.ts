import { mkdir, stat, statfs } from 'node:fs/promises'
import { dirname } from 'node:path'
import { DiskError, FileAccessError, RepoError } from './errors.js'

/** errno codes of a disk that cannot take a write: full, over quota, failing, read-only. */
const DISK_ERRNOS = new Set(['ENOSPC', 'EDQUOT', 'EIO', 'EROFS'])

/** True for an error of the disk itself (not of the caller's arguments or a missing file). */
export function isDiskFailure (err: unknown): boolean {
  return err instanceof DiskError || DISK_ERRNOS.has((err as NodeJS.ErrnoException | undefined)?.code ?? '')
}

/** True for a write that failed for want of space (the disk full, or the user's quota). */
export function isDiskFull (err: unknown): boolean {
  const errno = err instanceof DiskError ? err.errno : (err as NodeJS.ErrnoException | undefined)?.code
  return errno === 'ENOSPC' || errno === 'EDQUOT'
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

/** What each errno of a file that cannot be used means, and what to do. */
const ACCESS_ERRNOS: Record<string, string> = {
  EACCES: 'permission denied (EACCES); run nixipfs as the user that owns it, or let this user read and write it',
  EPERM: 'not permitted (EPERM); run nixipfs as the user that owns it, or let this user read and write it',
  EISDIR: 'a directory stands where a file belongs (EISDIR); if it is in a repo, the repo is damaged: run `nixipfs fsck`, or choose another --repo',
  ENOTDIR: 'a file stands where a directory belongs (ENOTDIR); if it is in a repo, the repo is damaged: run `nixipfs fsck`, or choose another --repo'
}

/** `err` as a FileAccessError when a file or directory could not be used (permissions, a file where a directory belongs); other errors unchanged. */
export function asFileAccessError (err: unknown): unknown {
  const e = err as NodeJS.ErrnoException
  const why = ACCESS_ERRNOS[e?.code ?? '']
  return why === undefined || e.path === undefined ? err : new FileAccessError(`cannot ${e.syscall ?? 'use'} ${e.path}: ${why}`, { cause: err })
}

/**
 * Makes directory `path` and its missing parents, as `mkdir -p` does; `mode` is given to those it makes. Fails with
 * RepoError when it cannot be made, naming `flag`, the option that chose the place (but for a disk failure, which
 * keeps its errno).
 */
export async function makeDirectory (path: string, { mode, flag }: { mode?: number, flag?: string } = {}): Promise<void> {
  await makeDirectories(path, mode).catch((err: Error) => {
    throw isDiskFailure(err) ? err : new RepoError(`cannot make the directory ${path} (${err.message}); choose another place for it${flag === undefined ? '' : ` (${flag})`}`)
  })
}

async function makeDirectories (path: string, mode?: number): Promise<void> {
  // Not mkdir's `recursive`: on Node 20 it never returns for a path under /proc (a repo given as --repo /proc/x hung).
  try {
    await mkdir(path, { mode })
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'EEXIST' && await stat(path).then(s => s.isDirectory(), () => false)) return
    if (code !== 'ENOENT' || dirname(path) === path) throw err
    await makeDirectories(dirname(path), mode)
    await mkdir(path, { mode }).catch((again: NodeJS.ErrnoException) => { if (again.code !== 'EEXIST') throw again })
  }
}
