import { readFile, stat } from 'node:fs/promises'
import { loadRecord } from './cache/records.js'
import { InsecureKeyFileError, NixipfsError } from './errors.js'
import { ipnsNameOf } from './ipfs/ipns.js'
import { PackStore } from './ipfs/pack-store.js'
import { discard, HttpPool } from './net/http-get.js'
import { parsePublicKey } from './nix/signing.js'
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
}

async function nixSetting (name: string): Promise<unknown> {
  const json = JSON.parse(await runNix('nix', ['--extra-experimental-features', 'nix-command', 'show-config', '--json'])) as Record<string, { value: unknown }>
  return json[name]?.value
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
  try {
    substituters = (await nixSetting('substituters') as string[] | undefined) ?? []
    trusted = (await nixSetting('trusted-public-keys') as string[] | undefined) ?? []
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

  // The post-build hook is advice: publishing by hand works too.
  const hook = await nixSetting('post-build-hook').catch(() => '') as string
  add('post-build-hook', hook !== '', hook !== '' ? `builds are published by ${hook}` : 'builds are not published automatically: set post-build-hook in nix.conf (see README)', false)
  return found
}
