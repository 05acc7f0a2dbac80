import { chmod, mkdir, open, readFile, rename, stat, unlink } from 'node:fs/promises'
import { homedir } from 'node:os'
import { dirname, join } from 'node:path'
import { InsecureKeyFileError, RepoError } from './errors.js'
import { formatPublicKey, formatSecretKey, parseSecretKey, publicKeyOf, type SecretKey } from './nix/signing.js'

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
  return { secret: join(repo, 'keys', 'cache.secret'), public: join(repo, 'keys', 'cache.public') }
}

/** Writes `data` to `path` so that readers see either the old or the new file, never a torn one. */
export async function writeFileAtomic (path: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  await mkdir(dirname(path), { recursive: true })
  const tmp = `${path}.tmp-${process.pid}-${Date.now()}`
  const fh = await open(tmp, 'w', mode)
  try {
    await fh.writeFile(data)
    await fh.sync()
  } finally {
    await fh.close()
  }
  try {
    await rename(tmp, path)
  } catch (err) {
    await unlink(tmp).catch(() => {})
    throw err
  }
  // Make the rename itself durable.
  const dir = await open(dirname(path), 'r')
  try { await dir.sync() } finally { await dir.close() }
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

/** Writes a key pair in Nix's formats: the secret file 0600, the public file 0644. Never overwrites. */
export async function writeKeyFiles (key: SecretKey, secretPath: string, publicPath: string): Promise<void> {
  for (const p of [secretPath, publicPath]) {
    if (await stat(p).then(() => true, () => false)) throw new RepoError(`${p} already exists; refusing to overwrite a key (move it away first)`)
  }
  await mkdir(dirname(secretPath), { recursive: true, mode: 0o700 })
  await writeFileAtomic(secretPath, formatSecretKey(key), 0o600)
  await chmod(secretPath, 0o600) // the umask may have narrowed, never widened, but be explicit
  await writeFileAtomic(publicPath, formatPublicKey(publicKeyOf(key)) + '\n', 0o644)
}
