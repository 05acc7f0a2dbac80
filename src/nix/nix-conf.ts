import { readFile, stat } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { writeFileAtomic } from '../atomic.js'
import { isDiskFailure } from '../disk.js'
import { NixConfError } from '../errors.js'
import { formatPublicKey, parsePublicKey } from './signing.js'

/** The nix.conf lines that make Nix use `substituter` and trust `keys` (Nix format), besides what it uses already. */
export function nixConfLines (substituter: string, keys: string[]): string[] {
  const unique = [...new Set(keys.map(k => formatPublicKey(parsePublicKey(k))))]
  return [`extra-substituters = ${substituter}`, ...(unique.length > 0 ? [`extra-trusted-public-keys = ${unique.join(' ')}`] : [])]
}

/** The nix.conf the current user edits: `$NIX_CONF_DIR/nix.conf` (`/etc/nix`) for root, else `$XDG_CONFIG_HOME/nix/nix.conf`. */
export function userNixConfPath (env: NodeJS.ProcessEnv = process.env): string {
  if (process.getuid?.() === 0) return join(env.NIX_CONF_DIR !== undefined && env.NIX_CONF_DIR !== '' ? env.NIX_CONF_DIR : '/etc/nix', 'nix.conf')
  const xdg = env.XDG_CONFIG_HOME !== undefined && env.XDG_CONFIG_HOME !== '' ? env.XDG_CONFIG_HOME : join(homedir(), '.config')
  return join(xdg, 'nix', 'nix.conf')
}

/** Appends to `file` (creating it) the lines it does not have yet; returns the lines added. */
export async function appendNixConf (file: string, lines: string[]): Promise<string[]> {
  try {
    const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => { if (err.code === 'ENOENT') return ''; throw err })
    const present = new Set(text.split('\n').map(l => l.trim()))
    const added = lines.filter(l => !present.has(l))
    if (added.length === 0) return []
    const mode = await stat(file).then(s => s.mode & 0o777, () => 0o644)
    await writeFileAtomic(file, `${text}${text === '' || text.endsWith('\n') ? '' : '\n'}# added by nixipfs use\n${added.join('\n')}\n`, mode)
    return added
  } catch (err) {
    if (isDiskFailure(err)) throw err
    throw new NixConfError(`cannot add the lines to ${file} (${(err as Error).message}); give a file you can write (--nix-conf FILE, by default ${userNixConfPath()}), or print the lines without --write`, { cause: err })
  }
}
