import { chmod, readFile, stat, unlink, utimes, writeFile } from 'node:fs/promises'
import { createHash } from 'node:crypto'
import { homedir, hostname } from 'node:os'
import { dirname, join } from 'node:path'
import { writeFileAtomic } from './atomic.js'
import { fetcherPidPath, keysDir, lockPath } from './repo-layout.js'
import { InsecureKeyFileError, RepoError } from './errors.js'
import { encodeNix32 } from './nix/base32.js'
import { formatPublicKey, formatSecretKey, generateSecretKey, parseSecretKey, publicKeyOf, type SecretKey } from './nix/signing.js'
import { isDiskFull, makeDirectory } from './disk.js'

/** The repo directory: `--repo`, else `$NIXIPFS_REPO`, else `$XDG_DATA_HOME/nixipfs` (`~/.local/share/nixipfs`). */
export function resolveRepo (flag?: string): string {
  if (flag !== undefined && flag !== '') return flag
  const env = process.env.NIXIPFS_REPO
  if (env !== undefined && env !== '') return env
  const xdg = process.env.XDG_DATA_HOME
  return join(xdg !== undefined && xdg !== '' ? xdg : join(homedir(), '.local', 'share'), 'nixipfs')
}

/** Where the repo keeps its publishing key pair. */
export function repoKeyPaths (repo: string): { secret: string, public: string } {
  return { secret: join(keysDir(repo), 'cache.secret'), public: join(keysDir(repo), 'cache.public') }
}

/** Reads a Nix secret key file, refusing files that other users can read. */
export async function readSecretKeyFile (path: string): Promise<SecretKey> {
  let st
  try {
    st = await stat(path)
  } catch {
    throw new RepoError(`secret key file ${path} does not exist; create one with \`nixipfs keygen NAME\``)
  }
  if ((st.mode & 0o077) !== 0) throw new InsecureKeyFileError(path, st.mode)
  return parseSecretKey(await readFile(path, 'utf8'))
}

/** Writes a key pair in Nix's formats: the secret file 0600, the public file 0644 (`flag` chose where). Never overwrites. */
export async function writeKeyFiles (key: SecretKey, secretPath: string, publicPath: string, flag = '--repo'): Promise<void> {
  for (const p of [secretPath, publicPath]) {
    if (await stat(p).then(() => true, () => false)) throw new RepoError(`${p} already exists; refusing to overwrite a key (move it away first)`)
  }
  await makeDirectory(dirname(secretPath), { mode: 0o700, flag })
  await writeFileAtomic(secretPath, formatSecretKey(key), 0o600)
  try {
    await chmod(secretPath, 0o600) // the umask may have narrowed, never widened, but be explicit
    await writeFileAtomic(publicPath, formatPublicKey(publicKeyOf(key)) + '\n', 0o644)
  } catch (err) {
    // Half a pair is no key: left behind, it blocked the next keygen ("already exists") after an error that said nothing changed.
    await unlink(secretPath).catch(() => {})
    throw err
  }
}

/**
 * A new key pair for a repo, named `<host>-nixipfs-<tag>` with a tag taken
 * from the public key: Nix looks trusted keys up by name, so two repos on one
 * host must never share a key name (both could not be trusted at once).
 */
export function newRepoKey (): SecretKey {
  const key = generateSecretKey('nixipfs')
  const tag = encodeNix32(createHash('sha256').update(key.publicKey).digest()).slice(0, 8)
  return { ...key, name: `${hostname().split('.')[0] || 'nixipfs'}-nixipfs-${tag}` }
}

/**
 * The repo's signing key; with `create`, a repo without one gets a new one,
 * announced through `onCreated`. Throws RepoError when there is none and `create` is false.
 */
export async function repoSigningKey (repo: string, create: boolean, onCreated?: (message: string) => void): Promise<SecretKey> {
  const paths = repoKeyPaths(repo)
  try {
    return await readSecretKeyFile(paths.secret)
  } catch (err) {
    if (!create || !(err instanceof RepoError)) throw err
  }
  const key = newRepoKey()
  await writeKeyFiles(key, paths.secret, paths.public)
  onCreated?.(`Created signing key ${paths.secret}; its public key is ${formatPublicKey(publicKeyOf(key))}`)
  return key
}

/** How often a waiting process checks whether the repo lock was released. */
const LOCK_POLL_MS = 200
/** A lock file still empty after this long was left by a process that died while creating it. */
const LOCK_WRITE_GRACE_MS = 5000

function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/**
 * Runs `fn` holding the repo's writer lock, so that two publishers never race
 * for the next record sequence. A lock left by a dead process is taken over.
 */
export async function withRepoLock<T> (repo: string, fn: () => Promise<T>, onWait?: (pid: number) => void): Promise<T> {
  const path = lockPath(repo)
  await makeDirectory(repo, { flag: '--repo' })
  let warned = false
  let heartbeat: NodeJS.Timeout | undefined
  for (;;) {
    try {
      await writeFile(path, String(process.pid), { flag: 'wx' })
      break
    } catch (err) {
      // A full disk made the lock but had no room for its pid: held as an empty lock whose time is kept fresh (no
      // data written), so others wait as for one being written; otherwise gc, which frees space, could not run.
      if (isDiskFull(err) && await stat(path).then(s => s.size === 0, () => false)) {
        heartbeat = setInterval(() => { const now = new Date(); utimes(path, now, now).catch(() => {}) }, LOCK_WRITE_GRACE_MS / 5)
        break
      }
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      const text = await readFile(path, 'utf8').catch(() => '')
      const pid = Number(text)
      // An empty lock file is one its holder is still writing; only an old one is abandoned.
      const unreadable = !/^\d+$/.test(text)
      const abandoned = unreadable
        ? await stat(path).then(s => Date.now() - s.mtimeMs > LOCK_WRITE_GRACE_MS, () => true)
        : !alive(pid)
      if (abandoned) {
        await unlink(path).catch(() => {})
        continue
      }
      if (!warned && !unreadable) { onWait?.(pid); warned = true }
      await new Promise(resolve => setTimeout(resolve, LOCK_POLL_MS))
    }
  }
  try {
    return await fn()
  } finally {
    clearInterval(heartbeat)
    await unlink(path).catch(() => {})
  }
}

/** Records that this process writes fetched blocks into `repo` until the returned function is called. */
export async function registerFetcher (repo: string): Promise<() => Promise<void>> {
  await writeFileAtomic(fetcherPidPath(repo), String(process.pid))
  return async () => { await unlink(fetcherPidPath(repo)).catch(() => {}) }
}

/** The pid of a live process that writes fetched blocks into `repo`, if any. */
export async function runningFetcher (repo: string): Promise<number | undefined> {
  const pid = Number(await readFile(fetcherPidPath(repo), 'utf8').catch(() => ''))
  return Number.isInteger(pid) && pid > 0 && pid !== process.pid && alive(pid) ? pid : undefined
}
