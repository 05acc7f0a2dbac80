import { spawn } from 'node:child_process'
import { readFile, stat } from 'node:fs/promises'
import { loadRecord } from './cache/records.js'
import { InsecureKeyFileError, NixipfsError } from './errors.js'
import { ipnsNameOf } from './ipfs/ipns.js'
import { PackStore } from './ipfs/pack-store.js'
import { discard, HttpPool } from './net/http-get.js'
import { narInfoDiskCachePath, scanNarInfoDiskCache } from './nix/narinfo-disk-cache.js'
import { parsePublicKey, type PublicKey } from './nix/signing.js'
import { runNix } from './nix/store.js'
import { readSecretKeyFile, repoKeyPaths } from './repo.js'

/** One finding: what was checked, whether it is fine, and what to do when it is not. */
export interface Finding {
  check: string
  ok: boolean
  /** false for advice that does not stop anything from working */
  required: boolean
  message: string
}

export interface DoctorOptions {
  repo: string
  /** the gateway Nix should use */
  gateway: string
  /** HTTP peers to check are reachable */
  httpGateways: string[]
  /** keys the gateway follows or trusts (Nix format), checked for names shared with other keys */
  keys?: string[]
}

/** Nix's settings (`nix show-config`), asked for once. */
async function nixSettings (): Promise<Record<string, { value: unknown }>> {
  return JSON.parse(await runNix('nix', ['--extra-experimental-features', 'nix-command', 'show-config', '--json'])) as Record<string, { value: unknown }>
}

async function reachable (url: string): Promise<string | undefined> {
  const pool = new HttpPool({ connections: 1, idleMs: 3_000 })
  try {
    const res = await pool.get(`${url.replace(/\/+$/, '')}/nix-cache-info`)
    discard(res)
    return res.status === 200 ? undefined : `answered HTTP ${res.status}`
  } catch (err) {
    return (err as Error).message
  } finally {
    pool.close()
  }
}

/** Checks Nix's configuration, the repo, its keys and record, and the gateway and peers; says what to fix. */
export async function diagnose (options: DoctorOptions): Promise<Finding[]> {
  const found: Finding[] = []
  const add = (check: string, ok: boolean, message: string, required = true): void => { found.push({ check, ok, required, message }) }

  // Nix
  let substituters: string[] = []
  let trusted: string[] = []
  let settings: Record<string, { value: unknown }> = {}
  try {
    settings = await nixSettings()
    substituters = (settings.substituters?.value as string[] | undefined) ?? []
    trusted = (settings['trusted-public-keys']?.value as string[] | undefined) ?? []
    add('nix', true, 'nix is installed and answers')
  } catch (err) {
    add('nix', false, `cannot ask nix for its configuration (${(err as Error).message}); install Nix`)
  }
  const gw = options.gateway.replace(/\/+$/, '')
  add('substituters', substituters.some(s => s.replace(/\/+$/, '') === gw),
    substituters.some(s => s.replace(/\/+$/, '') === gw) ? `Nix uses ${gw} as a substituter` : `Nix does not use the gateway: add \`extra-substituters = ${gw}\` to nix.conf (substituters now: ${substituters.join(' ') || 'none'})`)

  // Keys and record
  const keys = repoKeyPaths(options.repo)
  const pub = await readFile(keys.public, 'utf8').then(t => parsePublicKey(t.trim()), () => undefined)
  if (pub === undefined) {
    add('keys', true, `the repo has no key yet (one is made by the first publish)`, false)
  } else {
    try {
      await readSecretKeyFile(keys.secret)
      add('keys', true, `${keys.secret} is readable by its owner only`)
    } catch (err) {
      add('keys', false, err instanceof InsecureKeyFileError ? err.message : `${keys.secret}: ${(err as Error).message}`)
    }
    const text = `${pub.name}:${Buffer.from(pub.key).toString('base64')}`
    add('trusted-public-keys', trusted.includes(text),
      trusted.includes(text) ? `Nix trusts the repo's key ${pub.name}` : `Nix does not trust the repo's key: add \`extra-trusted-public-keys = ${text}\` to nix.conf`, false)
    const record = await loadRecord(options.repo, ipnsNameOf(pub.key)).catch((err: Error) => err)
    if (record instanceof Error) add('record', false, `the repo's record is unreadable (${record.message}); publish again`)
    else if (record === undefined) add('record', true, 'nothing published yet', false)
    else {
      const expired = Date.parse(record.validity) < Date.now()
      add('record', !expired, expired ? `the record (sequence ${record.sequence}) expired at ${record.validity}; run \`nixipfs republish\` (a running gateway does it by itself)` : `record ${record.sequence} is valid until ${record.validity}`)
    }
  }

  // Repo
  const packs = await stat(`${options.repo}/packs`).then(() => true, () => false)
  if (packs) {
    try {
      const blocks = await PackStore.openRepo(options.repo)
      add('repo', true, `${options.repo} opens: ${blocks.size} blocks`)
      await blocks.close()
    } catch (err) {
      add('repo', false, `${options.repo} does not open (${err instanceof NixipfsError ? err.message : (err as Error).message})`)
    }
  } else add('repo', true, `${options.repo} has no blocks yet`, false)

  // Gateway and peers
  const down = await reachable(gw)
  add('gateway', down === undefined, down === undefined ? `${gw} answers` : `${gw} does not answer (${down}); start it: nixipfs gateway`)
  for (const peer of options.httpGateways) {
    const why = await reachable(peer)
    add('peer', why === undefined, why === undefined ? `${peer} answers` : `peer ${peer} does not answer (${why})`, false)
  }

  // Keys by name: Nix keeps one key per name, so paths signed by the other "lack a valid signature".
  for (const clash of sharedNames([...trusted, ...(pub === undefined ? [] : [`${pub.name}:${Buffer.from(pub.key).toString('base64')}`]), ...(options.keys ?? [])])) {
    add('key names', false, `${clash.keys.join(' and ')} share the name ${clash.name}: Nix looks keys up by name and keeps one, so paths signed by the others "lack a valid signature"; give all but one a new key with its own name (nixipfs keygen NAME)`, false)
  }

  if (pub !== undefined) {
    const stale = await staleNarInfos(gw, pub.name)
    // A machine that ran many test gateways on one port has hundreds of such keys: a few are named, the rest counted.
    const named = stale.length <= STALE_KEYS_NAMED ? stale.join(', ') : `${stale.slice(0, STALE_KEYS_NAMED).join(', ')} and ${stale.length - STALE_KEYS_NAMED} other keys`
    if (stale.length > 0) add('nix narinfo cache', false, `Nix's narinfo cache ${narInfoDiskCachePath()} knows ${gw} and holds narinfos signed by ${named}, not by the repo's key ${pub.name}: if a repo with that key was served at this URL before, Nix rejects its cached narinfos with "lacks a valid signature" for up to 30 days (narinfo-cache-positive-ttl); remove ${narInfoDiskCachePath()}* (Nix makes it again) or serve this repo on another port`, false)
  }

  // The post-build hook is advice (publishing by hand works too), but a hook that fails fails every build.
  const hook = (settings['post-build-hook']?.value as string | undefined) ?? ''
  if (hook === '') add('post-build-hook', true, 'builds are not published automatically: set post-build-hook in nix.conf (see README), or run nixipfs watch', false)
  else found.push(await checkHook(hook))
  return found
}

/**
 * Names of earlier nixipfs keys of this host (`<host>-nixipfs-<tag>`, another
 * tag than `own`) whose signatures Nix's narinfo disk cache holds, when it
 * also holds the gateway's URL: Nix keeps a URL's narinfos after the repo
 * behind it changed.
 */
/** Keys named in the narinfo cache finding at most. */
const STALE_KEYS_NAMED = 3

async function staleNarInfos (gw: string, own: string): Promise<string[]> {
  const host = /^(.*)-nixipfs-[0-9a-z]{8}$/.exec(own)?.[1]
  if (host === undefined) return []
  const escape = (t: string): string => t.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
  const found = await scanNarInfoDiskCache(new RegExp(`${escape(gw)}|${escape(host)}-nixipfs-[0-9a-z]{8}:`, 'g'))
  if (!found.has(gw)) return []
  return [...found].filter(t => t.endsWith(':') && t !== `${own}:`).map(t => t.slice(0, -1))
}

/** Groups of distinct keys (Nix format) that share a name. */
function sharedNames (keys: string[]): Array<{ name: string, keys: string[] }> {
  const byName = new Map<string, Set<string>>()
  for (const text of keys) {
    let key: PublicKey
    try { key = parsePublicKey(text) } catch { continue }
    const b64 = Buffer.from(key.key).toString('base64')
    byName.set(key.name, (byName.get(key.name) ?? new Set()).add(`${key.name}:${b64}`))
  }
  return [...byName].filter(([, set]) => set.size > 1).map(([name, set]) => ({ name, keys: [...set] }))
}

/** How long the hook's dry run may take. */
const HOOK_DRY_RUN_MS = 60_000

/** Runs the post-build hook as Nix would, but as a dry run (NIXIPFS_DRY_RUN=1): does it work, and is it nixipfs's? */
async function checkHook (hook: string): Promise<Finding> {
  const text = await readFile(hook, 'utf8').catch((err: Error) => err)
  if (text instanceof Error) return { check: 'post-build-hook', ok: false, required: true, message: `${hook} cannot be read (${text.message}); Nix fails every build while post-build-hook names it` }
  if (!text.includes('nixipfs')) return { check: 'post-build-hook', ok: true, required: false, message: `${hook} does not run nixipfs, so builds are not published (see README)` }
  const run = await new Promise<{ code: number | null, out: string }>(resolve => {
    const child = spawn(hook, [], { env: { ...process.env, NIXIPFS_DRY_RUN: '1', OUT_PATHS: '', DRV_PATH: '' }, stdio: ['ignore', 'pipe', 'pipe'], timeout: HOOK_DRY_RUN_MS })
    let out = ''
    child.stdout.on('data', (b: Buffer) => { out += b.toString() })
    child.stderr.on('data', (b: Buffer) => { out += b.toString() })
    child.on('error', err => resolve({ code: -1, out: err.message }))
    child.on('close', code => resolve({ code, out }))
  })
  const tail = run.out.trim().split('\n').slice(-3).join(' / ')
  if (run.code !== 0 || !/dry run: publishing would work/.test(run.out)) {
    return { check: 'post-build-hook', ok: false, required: true, message: `${hook} fails its dry run (exit ${run.code ?? 'by signal'}: ${tail}); Nix fails every build while it does` }
  }
  if (!/as a hook/.test(run.out)) {
    return { check: 'post-build-hook', ok: false, required: false, message: `${hook} runs \`nixipfs publish\` without --hook: a failed publish fails the build; use \`publish --hook\` (README)` }
  }
  return { check: 'post-build-hook', ok: true, required: true, message: `builds are published by ${hook} (its dry run passed)` }
}
