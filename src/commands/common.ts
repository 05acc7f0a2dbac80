import { readdir, readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { consola } from 'consola'
import { DEFAULT_RECORD_LIFETIME_MS, HOUR_MS } from '../constants.js'
import { RepoError, UsageError } from '../errors.js'
import type { RequestOptions } from '../cache/publish-request.js'
import { ipnsNameOf } from '../ipfs/ipns.js'
import { repeatedArg } from '../config.js'
import { parsePublicKey, type SecretKey } from '../nix/signing.js'
import { formatBytes } from '../progress.js'
import { packsDir } from '../repo-layout.js'
import { readSecretKeyFile, repoKeyPaths, repoSigningKey, resolveRepo } from '../repo.js'

/** The `--repo` flag every command that touches the repo takes. */
export const repoArg = {
  repo: {
    type: 'string',
    // Resolved here, so help and `nixipfs config` show the directory a command would use.
    default: resolveRepo(),
    description: 'Repo directory: $NIXIPFS_REPO, else $XDG_DATA_HOME/nixipfs',
    valueHint: 'DIR'
  }
} as const

/** The `--cache` flag of commands that act on one cache the repo holds. */
export const cacheArg = {
  cache: { type: 'string', description: 'Which cache: an IPNS name (k51…) or a Nix public key (default: the repo\'s own)', valueHint: 'NAME|KEY' }
} as const

/** The repo directory from `--repo` and the environment. */
export function repoOf (args: { repo?: string }): string {
  // An empty value is a mistake (an unset shell variable), not a wish for the default repo.
  if (args.repo === '') throw new UsageError(`--repo is empty (given on the command line or as "repo" in the config file): give the repo's directory, or leave it out for the default, ${resolveRepo()}`)
  return resolveRepo(args.repo)
}

/** Why `repo` holds no cache and what to do: `advice` when it has none yet or is missing, else to choose another. */
export async function noCacheIn (repo: string, advice: string): Promise<string> {
  const s = await stat(repo).catch((err: NodeJS.ErrnoException) => err)
  if (!(s instanceof Error)) return s.isDirectory() ? `the repo ${repo} has no cache yet; ${advice}` : `the repo ${repo} is not a directory; choose another --repo`
  const code = (s as NodeJS.ErrnoException).code
  if (code === 'ENOENT') return `there is no repo at ${repo}; ${advice}`
  return `${code === 'ENOTDIR' ? `the repo ${repo} is not a directory` : `the repo ${repo} cannot be read (${code ?? s.message})`}; choose another --repo`
}

/** The repo of a command that only reads or tidies one: a path with no repo is an error, not made into an empty repo. */
export async function existingRepoOf (args: { repo?: string }): Promise<string> {
  const repo = repoOf(args)
  // A mistyped --repo made an empty repo, and fsck then found "no damage" in it; so did a directory that is no repo.
  if (await stat(packsDir(repo)).then(s => s.isDirectory(), () => false)) return repo
  const advice = 'check --repo (a repo is made by publish, import, mirror or gateway, not by this command)'
  if (!await stat(repo).then(s => s.isDirectory(), () => false)) throw new RepoError(await noCacheIn(repo, advice))
  throw new RepoError(`${repo} is a directory but no repo (it has no packs folder); ${advice}`)
}

/** Flags of every command that signs a record. */
export const lifetimeArgs = {
  'lifetime-hours': { type: 'string', default: String(DEFAULT_RECORD_LIFETIME_MS / HOUR_MS), description: 'How long the signed IPNS record stays valid, in hours (a running gateway re-signs it at half-life)' },
  'continue-sequence': { type: 'boolean', description: 'Sign on top of a repo that is behind this key\'s sequence ledger (a repo restored from an old backup)' }
} as const

/** The longest record lifetime, in hours (ten years). */
const MAX_LIFETIME_HOURS = 87_600

/** The record lifetime from `--lifetime-hours`. */
export function lifetimeMsOf (args: { 'lifetime-hours': string }): number {
  const hours = Number(args['lifetime-hours'])
  // A record's validity is an RFC 3339 date, four digits of year: 1e9 hours made one no IPNS implementation reads.
  if (!(hours > 0 && hours <= MAX_LIFETIME_HOURS)) throw new UsageError(`--lifetime-hours must be a positive number of hours up to ${MAX_LIFETIME_HOURS} (ten years), got ${args['lifetime-hours']}`)
  return hours * HOUR_MS
}

/** Options of a publish from `lifetimeArgs`: a line per published path (after `beforeLine`, which clears a progress line) and one while waiting for the lock. */
export function publishOptionsOf (args: { 'lifetime-hours': string, 'continue-sequence'?: boolean }, beforeLine = (): void => {}): RequestOptions {
  return {
    recordLifetimeMs: lifetimeMsOf(args),
    continueSequence: args['continue-sequence'] === true,
    log: consola,
    onPublished: (path, nar, narSize) => {
      beforeLine()
      consola.log(`${path} -> ${nar.toString()} (${formatBytes(narSize)})`)
    },
    onWait: pid => consola.info(`waiting for another publish (pid ${pid}) to finish`)
  }
}

/**
 * The signing key: `--secret-key-file`, else the repo's own key; with
 * `create`, a missing repo key is generated (and announced) rather than an error.
 */
export async function signingKey (repo: string, secretKeyFile: string | undefined, create: boolean): Promise<SecretKey> {
  if (secretKeyFile !== undefined) return await readSecretKeyFile(secretKeyFile)
  return await repoSigningKey(repo, create, m => consola.info(m))
}

/**
 * The keys (Nix format) Nix must trust for what a gateway serves: the repo's
 * own key, if it has one, and the `--follow` and `--trust` values that are keys
 * (a cache followed by IPNS name names no Nix key).
 */
export async function servedKeys (repo: string, rawArgs: string[]): Promise<string[]> {
  const own = (await readFile(repoKeyPaths(repo).public, 'utf8').catch(() => '')).trim()
  return [...(own === '' ? [] : [own]), ...repeatedArg(rawArgs, 'follow'), ...repeatedArg(rawArgs, 'trust')].filter(k => k.includes(':'))
}

/** The IPNS name of the repo's own key, if it has one. */
export async function ownCacheName (repo: string): Promise<string | undefined> {
  const own = await readFile(repoKeyPaths(repo).public, 'utf8').catch(() => undefined)
  return own === undefined ? undefined : ipnsNameOf(parsePublicKey(own).key)
}

/**
 * The IPNS name of the cache to serve: `--cache` (an IPNS name or a Nix
 * public key), else the repo's own key, else the only record in the repo.
 */
export async function cacheName (repo: string, flag: string | undefined): Promise<string | undefined> {
  if (flag !== undefined) return flag.includes(':') ? ipnsNameOf(parsePublicKey(flag).key) : flag
  const own = await ownCacheName(repo)
  if (own !== undefined) return own
  const records = (await readdir(join(repo, 'records')).catch(() => [] as string[])).filter(f => f.endsWith('.ipns'))
  if (records.length === 1) return records[0]!.slice(0, -'.ipns'.length)
  if (records.length === 0) return undefined
  throw new UsageError(`the repo holds records for several caches; choose one with --cache (${records.map(r => r.slice(0, -5)).join(', ')})`)
}

export { repeatedArg }
