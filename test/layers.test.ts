import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve, sep } from 'node:path'
import { describe, expect, it } from 'vitest'

// The import graph runs one way (issue 21). A module is a folder of src/ or a
// file at src/'s top level; each has a rank, and a module may import only
// modules of a lower rank. Rank 0 is the base layer: small leaves anyone may
// import; they may import each other as long as no circle forms.
const RANK: Record<string, number> = {
  // base: errors, constants, byte and LRU helpers, disk checks, atomic writes, the repo's layout on disk
  errors: 0,
  constants: 0,
  bytes: 0,
  lru: 0,
  ed25519: 0,
  shim: 0,
  // CPU-heavy work taking turns on the event loop (compression for many responses at once)
  turns: 0,
  disk: 0,
  atomic: 0,
  'repo-layout': 0,
  types: 0,
  // streaming bzip2 decompression (build logs, upstream NARs)
  bunzip2: 0,
  // HTTP content codings (zstd, br, gzip): compressors and decompressors both ends use; zstd frames (WebAssembly before Node 22.15)
  codings: 0,
  zstd: 0,
  // progress lines and flag checking (no project imports beyond errors)
  progress: 0,
  flags: 0,
  // formats: Nix's (knows nothing of IPFS) and IPFS's (knows nothing of Nix or HTTP)
  nix: 1,
  ipfs: 1,
  // the repo's keys and lock (Nix key formats)
  repo: 2,
  // fetching blocks and records from peers
  net: 3,
  // the own cache and followed caches
  cache: 4,
  // HTTP binary caches: import, fallback
  upstream: 5,
  // serving and trusting
  gateway: 6,
  trust: 6,
  // wiring of the long-running processes, and the checks (doctor, fsck: cache, peers and upstream together) and config the commands use
  daemon: 7,
  doctor: 7,
  watch: 7,
  fsck: 7,
  config: 7,
  help: 7,
  // argument parsing
  commands: 8,
  cli: 9
}

const SRC = resolve(__dirname, '../src')

/** Imports that break the rules and are allowed for now, "file:line imports target" to a one-line reason. */
const EXCEPTIONS: Record<string, string> = {}

/**
 * Files outside src/ipfs that may name the PackStore (a path ending in / allows a folder), to a
 * one-line reason: those that open the repo's store or check its pack files. The rest take the
 * narrow interfaces of src/ipfs/blocks.ts (and block.ts), as Helia's modules take a Blockstore.
 */
const PACK_STORE_USERS: Record<string, string> = {
  'daemon.ts': 'opens the repo\'s store and hands it to the network, the caches and the server',
  'commands/': 'each command opens the repo it works on',
  'doctor.ts': 'checks that the repo\'s store opens',
  'fsck.ts': 'checks the pack files themselves (their index records and locations)',
  'trust/verify.ts': 'opens the repo for `nixipfs verify` (a command\'s wiring)',
  'cache/publish-request.ts': 'opens the repo for a publish request when the caller has no store open (the hook, the queue, its checks)',
  'net/network.ts': 'hands the store to Helia as its whole Blockstore, which bitswap serves from',
  'net/p2p.ts': 'takes the store as Helia\'s whole Blockstore'
}

interface Edge { file: string, line: number, target: string, from: string, to: string }

function sources (dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap(e => {
    const path = join(dir, e.name)
    return e.isDirectory() ? sources(path) : (path.endsWith('.ts') ? [path] : [])
  })
}

function moduleOf (file: string): string {
  const parts = relative(SRC, file).split(sep)
  return parts.length > 1 ? parts[0]! : parts[0]!.replace(/(\.d)?\.ts$/, '')
}

/** The relative imports of every source file: `import … from`, `export … from`, `import(…)`. */
function edges (): Edge[] {
  const out: Edge[] = []
  for (const file of sources(SRC)) {
    const text = readFileSync(file, 'utf8')
    const re = /(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)['"](\.{1,2}\/[^'"]*)['"]/gm
    for (const m of text.matchAll(re)) {
      const target = resolve(dirname(file), m[1]!).replace(/\.js$/, '.ts')
      const from = moduleOf(file)
      const to = moduleOf(target)
      if (from === to) continue
      const line = text.slice(0, m.index).split('\n').length
      out.push({ file: relative(SRC, file), line, target: relative(SRC, target), from, to })
    }
  }
  return out
}

function ruleBroken (e: Edge): string | undefined {
  const a = RANK[e.from]
  const b = RANK[e.to]
  if (a === undefined) return `module ${e.from} has no rank in test/layers.test.ts`
  if (b === undefined) return `module ${e.to} has no rank in test/layers.test.ts`
  if (a === 0 && b === 0) return undefined
  if (b < a) return undefined
  return `${e.from} (rank ${a}) may import only lower ranks, and ${e.to} has rank ${b}`
}

const key = (e: Edge): string => `${e.file}:${e.line} imports ${e.target}`

describe('layers', () => {
  const all = edges()

  it('finds the imports it checks', () => {
    // A parser that finds nothing passes everything.
    expect(all.length).toBeGreaterThan(300)
    expect(all.some(e => e.from === 'commands' && e.to === 'cache')).toBe(true)
  })

  it('every import between modules goes down the rank table', () => {
    const broken = all.flatMap(e => {
      const rule = ruleBroken(e)
      return rule === undefined || EXCEPTIONS[key(e)] !== undefined ? [] : [`${key(e)}: ${rule}`]
    })
    expect(broken, broken.join('\n')).toEqual([])
  })

  it('no circle between modules', () => {
    const graph = new Map<string, Set<string>>()
    for (const e of all) {
      if (EXCEPTIONS[key(e)] !== undefined) continue
      if (!graph.has(e.from)) graph.set(e.from, new Set())
      graph.get(e.from)!.add(e.to)
    }
    const circles: string[] = []
    const state = new Map<string, 'open' | 'done'>()
    const visit = (m: string, path: string[]): void => {
      if (state.get(m) === 'done') return
      if (state.get(m) === 'open') { circles.push([...path.slice(path.indexOf(m)), m].join(' → ')); return }
      state.set(m, 'open')
      for (const n of graph.get(m) ?? []) visit(n, [...path, m])
      state.set(m, 'done')
    }
    for (const m of graph.keys()) visit(m, [])
    const where = circles.map(c => {
      const hops = c.split(' → ')
      const sample = hops.slice(1).map((b, i) => all.find(e => e.from === hops[i] && e.to === b)!).map(key)
      return `${c} (${sample.join('; ')})`
    })
    expect(where, where.join('\n')).toEqual([])
  })

  it('outside src/ipfs only the files that open the repo name the PackStore', () => {
    const files = sources(SRC).map(f => relative(SRC, f).split(sep).join('/'))
    const allowed = (file: string): boolean => Object.keys(PACK_STORE_USERS).some(a => a.endsWith('/') ? file.startsWith(a) : file === a)
    const naming = files.filter(f => !f.startsWith('ipfs/') && /\bPackStore\b/.test(readFileSync(join(SRC, f), 'utf8')))
    expect(naming.length).toBeGreaterThan(0) // the check sees the files that open the repo
    const offenders = naming.filter(f => !allowed(f))
    expect(offenders, `name the narrow interfaces of src/ipfs/blocks.ts instead: ${offenders.join(', ')}`).toEqual([])
    const stale = Object.keys(PACK_STORE_USERS).filter(a => !naming.some(f => a.endsWith('/') ? f.startsWith(a) : f === a))
    expect(stale, stale.join('\n')).toEqual([])
  })

  it('every exception still names an import that exists', () => {
    const keys = new Set(all.map(key))
    const stale = Object.keys(EXCEPTIONS).filter(k => !keys.has(k))
    expect(stale, stale.join('\n')).toEqual([])
  })
})
