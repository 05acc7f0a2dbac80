import { execFileSync, spawnSync } from 'node:child_process'
import { createReadStream, mkdirSync, readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { CarBlockIterator, CarReader } from '@ipld/car'
import type { CID } from 'multiformats/cid'
import { beforeAll, describe, expect, it } from 'vitest'
import { BlockNotFoundError } from '../../src/errors.js'
import { checkBlock, cidOf, DAG_PB_CODE, RAW_CODE, type BlockGetter } from '../../src/ipfs/block.js'
import { walkDag } from '../../src/ipfs/dag.js'
import { readFile } from '../../src/ipfs/file-dag.js'
import { parseNarInfo } from '../../src/nix/narinfo.js'
import { BIN, runCli, tmp } from '../helpers/cli.js'
import { nixAvailable, nixBuild, nixDump, shellDerivation } from '../helpers/nix.js'
import { formatBytes } from '../../src/progress.js'

/** A CAR file as @ipld/car reads it: roots, and blocks by CID (each checked against its CID). */
async function readCarFile (path: string): Promise<{ roots: CID[], blocks: Map<string, Uint8Array>, count: number }> {
  const roots = await (await CarReader.fromIterable(createReadStream(path))).getRoots()
  const blocks = new Map<string, Uint8Array>()
  let count = 0
  for await (const { cid, bytes } of await CarBlockIterator.fromIterable(createReadStream(path))) {
    checkBlock(cid, bytes)
    blocks.set(cid.toString(), bytes)
    count++
  }
  return { roots, blocks, count }
}

/** A block getter that has only the blocks of a CAR. */
function mapGetter (blocks: Map<string, Uint8Array>): BlockGetter {
  return {
    get: (cid) => {
      const bytes = blocks.get(cid.toString())
      if (bytes === undefined) throw new BlockNotFoundError(cid.toString())
      return [bytes]
    }
  }
}

async function text (blocks: BlockGetter, cid: CID): Promise<string> {
  const parts: Uint8Array[] = []
  for await (const p of readFile(blocks, cid)) parts.push(p)
  return Buffer.concat(parts).toString('utf8')
}

/** CIDs reached from `roots` using only `blocks` (throws on a missing block). */
async function reached (blocks: Map<string, Uint8Array>, roots: CID[]): Promise<Set<string>> {
  const out = new Set<string>()
  for (const root of roots) for await (const { cid } of walkDag(mapGetter(blocks), root)) out.add(cid.toString())
  return out
}

const salt = `${Date.now()}-${process.pid}`
// lib ← tool (a file of several blocks) ← top; `other` is in the cache but not in top's closure.
const EXPR = `
let
  lib = ${shellDerivation(`car-lib-${salt}`, 'mkdir -p $out/lib; echo library > $out/lib/liba.txt; touch $out/lib/empty')};
  tool = ${shellDerivation(`car-tool-${salt}`, 'mkdir -p $out/bin; ln -s ${lib}/lib/liba.txt $out/liba; i=0; while [ $i -lt 40000 ]; do echo "line $i of a file big enough to span many blocks ' + salt + '"; i=$((i+1)); done > $out/big.txt')};
  top = ${shellDerivation(`car-top-${salt}`, 'mkdir -p $out; echo ${lib} ${tool} > $out/refs')};
  other = ${shellDerivation(`car-other-${salt}`, 'echo other > $out')};
in [ top other ]
`

describe.runIf(nixAvailable)('nixipfs export-car', () => {
  let repo: string
  let top: string
  let other: string
  let closure: string[]
  let root: string

  beforeAll(() => {
    repo = tmp()
    ;[top, other] = nixBuild(EXPR) as [string, string]
    closure = execFileSync('nix-store', ['--query', '--requisites', top], { encoding: 'utf8' }).trim().split('\n')
    expect(closure).toHaveLength(3)
    const r = runCli(['publish', '-r', '--repo', repo, top, other])
    expect(r.stderr + r.stdout).toContain('published 4 path(s)')
    root = /root: +\/ipfs\/(\S+)/.exec(runCli(['info', '--repo', repo]).stdout)![1]!
  })

  it('explains itself with --help, with an example', () => {
    const r = runCli(['export-car', '--help'])
    expect(r.status).toBe(0)
    expect(r.stdout + r.stderr).toMatch(/Example: nixipfs export-car/)
    expect(r.stdout + r.stderr).toMatch(/--closure/)
  })

  it('exports the whole cache: root is the cache root, every block is valid, and the DAG is complete', async () => {
    const dir = tmp()
    const file = join(dir, 'cache.car')
    const r = runCli(['export-car', '--repo', repo, '-o', file])
    expect(r.status).toBe(0)
    expect(r.stdout).toBe('')
    const car = await readCarFile(file)
    expect(car.roots.map(String)).toEqual([root])
    expect(r.stderr).toContain(`wrote ${car.count} blocks, ${formatBytes(readFileSync(file).length)} (1 root) to ${file}`)
    // Every block once, and the blocks in the CAR are exactly those reached from the root.
    expect(car.blocks.size).toBe(car.count)
    expect(await reached(car.blocks, car.roots)).toEqual(new Set(car.blocks.keys()))
    // The big file spans several leaves: the export really holds the NAR DAGs, not only the directory.
    expect(car.count).toBeGreaterThan(10)
    expect(readdirSync(dir)).toEqual(['cache.car'])
  })

  it('writes the same bytes to stdout with -', () => {
    const file = join(tmp(), 'cache.car')
    expect(runCli(['export-car', '--repo', repo, '-o', file]).status).toBe(0)
    const r = spawnSync(process.execPath, [BIN, 'export-car', '--repo', repo, '-o', '-'], { maxBuffer: 1 << 30 })
    expect(r.status).toBe(0)
    expect(Buffer.compare(r.stdout, readFileSync(file))).toBe(0)
    expect(r.stderr.toString()).toMatch(/wrote \d+ blocks, [\d.]+ (B|KiB|MiB) \(1 root\) to stdout/)
  })

  it('exports a closure as the cache knows it: its narinfos and NARs, and nothing else', async () => {
    const file = join(tmp(), 'closure.car')
    const r = runCli(['export-car', '--repo', repo, '--closure', top, '-o', file])
    expect(r.status).toBe(0)
    const car = await readCarFile(file)
    expect(car.roots).toHaveLength(6)
    expect(await reached(car.blocks, car.roots)).toEqual(new Set(car.blocks.keys()))
    const blocks = mapGetter(car.blocks)
    // Narinfo roots are the text files whose first line is StorePath; each names its NAR among the roots.
    const infos = []
    for (const cid of car.roots) {
      const t = cid.code === RAW_CODE ? await text(blocks, cid) : ''
      if (t.startsWith('StorePath: ')) infos.push(parseNarInfo(t))
    }
    expect(infos.map(i => i.storePath).sort()).toEqual([...closure].sort())
    for (const info of infos) {
      const nar = car.roots.find(c => info.url === `nar/${c.toString()}.nar`)
      expect(nar, info.storePath).toBeDefined()
      const parts: Uint8Array[] = []
      for await (const p of readFile(blocks, nar!)) parts.push(p)
      expect(Buffer.compare(Buffer.concat(parts), nixDump(info.storePath)), info.storePath).toBe(0)
    }
    expect(infos.some(i => i.storePath === other)).toBe(false)
  })

  it('takes --closure several times and as a bare hash', async () => {
    const file = join(tmp(), 'two.car')
    const hash = other.slice('/nix/store/'.length, '/nix/store/'.length + 32)
    const r = runCli(['export-car', '--repo', repo, '--closure', top, `--closure=${hash}`, '-o', file])
    expect(r.status).toBe(0)
    expect((await readCarFile(file)).roots).toHaveLength(8)
  })

  it('exports one DAG with --root: the cache root gives the default export, a NAR root its DAG alone', async () => {
    const whole = join(tmp(), 'cache.car')
    const same = join(tmp(), 'same.car')
    expect(runCli(['export-car', '--repo', repo, '-o', whole]).status).toBe(0)
    expect(runCli(['export-car', '--repo', repo, '--root', root, '-o', same]).status).toBe(0)
    expect(Buffer.compare(readFileSync(same), readFileSync(whole))).toBe(0)
    // The only multi-block DAG among the closure's roots is the NAR of the tool (its big file).
    const closureFile = join(tmp(), 'closure.car')
    expect(runCli(['export-car', '--repo', repo, '--closure', top, '-o', closureFile]).status).toBe(0)
    const nar = (await readCarFile(closureFile)).roots.find(c => c.code === DAG_PB_CODE)!
    const file = join(tmp(), 'nar.car')
    expect(runCli(['export-car', '--repo', repo, '--root', nar.toString(), '-o', file]).status).toBe(0)
    const car = await readCarFile(file)
    expect(car.roots.map(String)).toEqual([nar.toString()])
    expect(car.count).toBeGreaterThan(1)
    expect(await reached(car.blocks, car.roots)).toEqual(new Set(car.blocks.keys()))
  })

  it('names a path the cache does not have, and leaves no file behind', () => {
    const dir = tmp()
    const missing = '/nix/store/00000000000000000000000000000000-missing'
    const r = runCli(['export-car', '--repo', repo, '--closure', top, '--closure', missing, '-o', join(dir, 'x.car')])
    expect(r.status).toBe(1)
    expect(r.stderr + r.stdout).toContain(`${missing} is not in the cache /ipfs/${root}`)
    expect(r.stderr + r.stdout).toContain('[ERR_NOT_IN_CACHE]')
    expect(readdirSync(dir)).toEqual([])
  })

  it('leaves neither the file nor its temp file when a block cannot be read', () => {
    const dir = tmp()
    const absent = cidOf(RAW_CODE, Buffer.from(`not in the repo ${salt}`)).toString()
    const r = runCli(['export-car', '--repo', repo, '--root', absent, '-o', join(dir, 'x.car')])
    expect(r.status).toBe(1)
    expect(r.stderr + r.stdout).toContain('[ERR_BLOCK_NOT_FOUND]')
    expect(readdirSync(dir)).toEqual([])
  })

  it('refuses bad arguments', () => {
    expect(runCli(['export-car', '--repo', repo, '--root', 'nonsense', '-o', join(tmp(), 'x')]).stderr).toMatch(/--root nonsense is not a CID \[ERR_USAGE\]/)
    expect(runCli(['export-car', '--repo', repo, '--root', root, '--closure', top, '-o', join(tmp(), 'x')]).stderr).toMatch(/either --root or --closure/)
    const empty = tmp()
    mkdirSync(join(empty, 'packs'))
    expect(runCli(['export-car', '--repo', empty, '-o', join(tmp(), 'x')]).stderr).toMatch(/has no cache yet.*\[ERR_REPO\]/)
  })
})
