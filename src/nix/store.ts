import { spawn } from 'node:child_process'
import { realpath } from 'node:fs/promises'
import { STORE_DIR } from '../constants.js'
import { InvalidStorePathError, NixCommandError } from '../errors.js'
import { parseSha256, formatSha256 } from './hash.js'
import { parseRealisation, type Realisation } from './realisation.js'
import { parseStorePath } from './store-path.js'
import { parsePublicKey, type PublicKey } from './signing.js'

/** What the local Nix database knows about a valid store path. */
export interface PathInfo {
  path: string
  narHash: string
  narSize: number
  /** base names */
  references: string[]
  /** base name of the `.drv`, if known */
  deriver?: string
  ca?: string
  sigs: string[]
}

/** Extra arguments for every `nix` call: the new CLI is experimental in older Nix. */
const NIX_FLAGS = ['--extra-experimental-features', 'nix-command']

/** Runs a Nix command and returns its stdout; fails with the command's stderr. */
export async function runNix (cmd: string, args: string[], input?: string): Promise<string> {
  return await new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] })
    const out: Buffer[] = []
    const err: Buffer[] = []
    child.stdout.on('data', (b: Buffer) => out.push(b))
    child.stderr.on('data', (b: Buffer) => err.push(b))
    child.on('error', (e: NodeJS.ErrnoException) => {
      reject(e.code === 'ENOENT'
        ? new NixCommandError(`${cmd} is not installed or not on PATH; install Nix (e.g. apt-get install nix-bin)`)
        : new NixCommandError(`${cmd} failed to start: ${e.message}`))
    })
    child.on('close', code => {
      if (code === 0) resolve(Buffer.concat(out).toString())
      else reject(new NixCommandError(`${cmd} ${args.join(' ')} exited with ${code}: ${Buffer.concat(err).toString().trim().slice(-2000)}`))
    })
    // A command that exits without reading its input (nix show-config, a failing nix-store) makes the write fail
    // with EPIPE; its exit status, seen on 'close', is the outcome, and the error must not end the process.
    child.stdin.on('error', () => {})
    child.stdin.end(input ?? '')
  })
}

interface RawPathInfo {
  path?: string
  narHash: string
  narSize: number
  references?: string[]
  deriver?: string | null
  ca?: string | null
  signatures?: string[]
  valid?: boolean
}

const base = (p: string): string => parseStorePath(p).baseName

/** Path infos of `paths` (with `recursive`, of their whole closure), from the local Nix database (or the chroot store at `storeRoot`). */
export async function queryPathInfos (paths: string[], recursive = false, storeRoot?: string): Promise<PathInfo[]> {
  if (paths.length === 0) return []
  for (const path of paths) {
    // Nix takes a path outside the store for a flake and says so: the user meant a file to publish.
    const inStore = (p: string): boolean => p.startsWith(`${STORE_DIR}/`)
    if (path.replace(/\/+$/, '') === STORE_DIR) throw new InvalidStorePathError(`${path} is the store itself; name paths in it (${STORE_DIR}/<hash>-<name>)`)
    if (!inStore(path) && (storeRoot !== undefined || !inStore(await realpath(path).catch(() => path)))) {
      throw new InvalidStorePathError(`${path} is not a store path; add it with nix-store${storeRoot === undefined ? '' : ` --store ${storeRoot}`} --add ${path}, then publish the path that prints`)
    }
  }
  // No substituters: a query of the local store must never wait on the network.
  const json = await runNix('nix', [...NIX_FLAGS, '--option', 'substituters', '', ...(storeRoot === undefined ? [] : ['--store', storeRoot]), 'path-info', '--json', ...(recursive ? ['--recursive'] : []), '--', ...paths])
    .catch((err: Error) => {
      if (/don't know how to build|is not valid|does not exist/.test(err.message)) {
        throw new NixCommandError(`not every path is valid in the local Nix store (${paths.join(' ')}); build or fetch it first:\n${err.message}`)
      }
      throw err
    })
  const parsed = JSON.parse(json) as RawPathInfo[] | Record<string, RawPathInfo | null>
  // Nix ≤ 2.18 prints an array with `path`; newer Nix prints an object keyed by path.
  const entries: Array<[string, RawPathInfo | null]> = Array.isArray(parsed)
    ? parsed.map(p => [p.path ?? '', p])
    : Object.entries(parsed)
  return entries.map(([path, raw]) => {
    if (raw === null || raw.valid === false) throw new NixCommandError(`${path} is not a valid path in the local Nix store; build or fetch it first`)
    return {
      path,
      narHash: formatSha256(parseSha256(raw.narHash)),
      narSize: raw.narSize,
      references: (raw.references ?? []).map(base).sort(),
      ...(raw.deriver != null ? { deriver: base(raw.deriver) } : {}),
      ...(raw.ca != null ? { ca: raw.ca } : {}),
      sigs: raw.signatures ?? []
    }
  })
}

/** What a local rebuild (`nix-store --realise --check`) of a store path's derivation gave. */
export interface Rebuild {
  /** true when the rebuild is bit-identical to the path in the store */
  same: boolean
  /** where the differing rebuild was kept (`<path>.check`), when it differs */
  checkPath?: string
}

/**
 * Builds the derivation of `path` again (`--check`, locally, no substituters)
 * and says whether the output came out the same as the one in the store.
 */
export async function rebuildAndCompare (drv: string, path: string): Promise<Rebuild> {
  try {
    await runNix('nix-store', ['--realise', drv, '--check', '--keep-failed', '--option', 'substituters', ''])
    return { same: true }
  } catch (err) {
    // Nix says "may not be deterministic: output … differs from '….check'" and keeps the second build.
    if (err instanceof NixCommandError && /may not be deterministic/.test(err.message)) return { same: false, checkPath: `${path}.check` }
    throw err
  }
}

/** The realisations Nix recorded for the outputs of a content-addressed derivation (none when it has none, or the .drv is gone). */
export async function queryRealisations (drv: string, storeRoot?: string): Promise<Realisation[]> {
  const json = await runNix('nix', ['--extra-experimental-features', 'nix-command ca-derivations', '--option', 'substituters', '', ...(storeRoot === undefined ? [] : ['--store', storeRoot]), 'realisation', 'info', '--json', drv])
    .catch(() => '[]') // a Nix without ca-derivations, or a .drv no longer in the store: nothing to publish
  const parsed = JSON.parse(json) as unknown[]
  return parsed.map(r => parseRealisation(JSON.stringify(r)))
}

/** The public keys the local Nix trusts (`trusted-public-keys` of `nix show-config`); malformed ones are left out. */
export async function nixTrustedKeys (): Promise<PublicKey[]> {
  const config = await runNix('nix', [...NIX_FLAGS, 'show-config'])
  const line = /^trusted-public-keys = (.*)$/m.exec(config)?.[1] ?? ''
  return line.split(/\s+/).filter(k => k !== '').flatMap(k => { try { return [parsePublicKey(k)] } catch { return [] } })
}

/**
 * The output paths of a derivation (`nix-store --query --outputs`): what a
 * post-build hook publishes when Nix leaves `$OUT_PATHS` empty (Nix 2.8, NixOS/nix#6446).
 */
export async function derivationOutputs (drv: string): Promise<string[]> {
  const out = await runNix('nix-store', ['--query', '--outputs', drv])
  return out.split('\n').filter(p => p !== '')
}

/** Which of `paths` are valid in the local Nix store (`nix-store --check-validity --print-invalid`). */
export async function validPaths (paths: string[]): Promise<string[]> {
  if (paths.length === 0) return []
  const invalid = new Set((await runNix('nix-store', ['--check-validity', '--print-invalid', ...paths])).split('\n'))
  return paths.filter(p => !invalid.has(p))
}
