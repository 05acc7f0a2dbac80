import { join } from 'node:path'

/** A derivation's store path base name (`<hash>-<name>.drv`): what a build log is named by. */
export const DRV_BASE_NAME = /^[0-9a-df-np-sv-z]{32}-[A-Za-z0-9+\-._?=]{1,207}\.drv$/

/** Where Nix keeps build logs unless NIX_LOG_DIR says otherwise. */
export const DEFAULT_NIX_LOG_DIR = '/nix/var/log/nix'

/**
 * Nix's log directory: a chroot store's (`local?root=DIR`) is always under
 * its root, as Nix's LocalFSStore puts it; the system store's is
 * NIX_LOG_DIR, else the default.
 */
export function nixLogDir (storeRoot?: string, env: NodeJS.ProcessEnv = process.env): string {
  if (storeRoot !== undefined) return join(storeRoot, DEFAULT_NIX_LOG_DIR)
  return env.NIX_LOG_DIR !== undefined && env.NIX_LOG_DIR !== '' ? env.NIX_LOG_DIR : DEFAULT_NIX_LOG_DIR
}

/**
 * The file holding the bzip2-compressed build log of derivation `drv` (its
 * base name, `<hash>-<name>.drv`): `drvs/<first 2 characters>/<the rest>.bz2`,
 * as Nix writes it with compress-build-log on (its default).
 */
export function buildLogFile (logDir: string, drv: string): string {
  return join(logDir, 'drvs', drv.slice(0, 2), `${drv.slice(2)}.bz2`)
}
