import { randomBytes } from 'node:crypto'
import { readdirSync, readFileSync, readlinkSync } from 'node:fs'
import { join } from 'node:path'
import * as dagPb from '@ipld/dag-pb'
import { CID } from 'multiformats/cid'
import { describe, expect, it } from 'vitest'
import { collectGarbage } from '../../src/cache/gc.js'
import { publish } from '../../src/cache/publish.js'
import { RECIPES } from '../../src/commands/recipes.js'
import { openIndex } from '../../src/cache/index.js'
import { pin, readPins, unpin } from '../../src/cache/pins.js'
import { acceptRecord, loadRecord } from '../../src/cache/records.js'
import { recordPath } from '../../src/repo-layout.js'
import { cidOf, DAG_PB_CODE, RAW_CODE } from '../../src/ipfs/block.js'
import { walkDag } from '../../src/ipfs/dag.js'
import { ipnsNameOf } from '../../src/ipfs/ipns.js'
import { PackStore } from '../../src/ipfs/pack-store.js'
import { generateSecretKey, parsePublicKey } from '../../src/nix/signing.js'
import { parseStorePath } from '../../src/nix/store-path.js'
import { expectCacheIntact } from '../helpers/cache.js'
import { runCli, startGatewayProcess, tmp } from '../helpers/cli.js'
import { nixAvailable, nixBuild, nixDump, shellDerivation } from '../helpers/nix.js'

const nameOf = (repo: string): string => ipnsNameOf(parsePublicKey(readFileSync(join(repo, 'keys', 'cache.public'), 'utf8')).key)
const rootOf = (stdout: string): CID => CID.parse(/root: +\/ipfs\/(\S+)/.exec(stdout)![1]!)


/** A raw block, or a dag-pb node linking to two new raw blocks: blocks nothing else reaches. */
async function orphan (blocks: PackStore, withChildren = false): Promise<CID[]> {
  const leaves = [randomBytes(700), randomBytes(900)].map(bytes => ({ cid: cidOf(RAW_CODE, bytes), bytes }))
  if (!withChildren) { await blocks.put(leaves[0]!.cid, leaves[0]!.bytes); return [leaves[0]!.cid] }
  for (const l of leaves) await blocks.put(l.cid, l.bytes)
  const node = dagPb.encode(dagPb.prepare({ Links: leaves.map((l, i) => ({ Name: `l${i}`, Hash: l.cid, Tsize: l.bytes.length })) }))
  const cid = cidOf(DAG_PB_CODE, node)
  await blocks.put(cid, node)
  return [cid, ...leaves.map(l => l.cid)]
}

describe('pins', () => {
  it('are added once, removed, written atomically, and a bad line is an error', async () => {
    const repo = tmp()
    expect(await readPins(repo)).toEqual([])
    const a = cidOf(RAW_CODE, randomBytes(10))
    const b = cidOf(RAW_CODE, randomBytes(10))
    await pin(repo, [a, b, a])
    await pin(repo, [b])
    expect((await readPins(repo)).map(String)).toEqual([a.toString(), b.toString()])
    expect(readdirSync(repo)).toEqual(['pins']) // no temporary file left
    await unpin(repo, [a])
    expect((await readPins(repo)).map(String)).toEqual([b.toString()])
    const { writeFileSync } = await import('node:fs')
    writeFileSync(join(repo, 'pins'), `# kept for a mirror\n${b.toString()}\nnot-a-cid\n`)
    await expect(readPins(repo)).rejects.toMatchObject({ code: 'ERR_PINS', message: expect.stringMatching(/line 3/) })
  })
})

describe.runIf(nixAvailable)('nixipfs gc', () => {
  it('drops blocks no root reaches, keeps every NAR of the cache, a followed partial cache and the pins; a running gateway keeps serving', async () => {
    const salt = `${Date.now()}-${process.pid}`
    const paths = nixBuild(`[ ${[0, 1, 2, 3, 4].map(i => '(' + shellDerivation(`gc-${i}-${salt}`, `mkdir -p $out; head -c ${300_000 + i * 1000} /dev/urandom > $out/data; echo ${i} > $out/n`) + ')').join(' ')} ]`)
    expect(paths).toHaveLength(5)
    const repo = tmp()
    // Three publishes: each supersedes the directory nodes of the one before.
    const first = runCli(['publish', '--repo', repo, paths[0]!])
    expect(first.status).toBe(0)
    expect(runCli(['publish', '--repo', repo, paths[1]!]).status).toBe(0)
    const last = runCli(['publish', '--repo', repo, paths[2]!, paths[3]!])
    expect(last.status).toBe(0)
    const oldRoot = rootOf(first.stdout)
    const root = rootOf(last.stdout)

    // A followed cache, stored in part (its narinfos, not its NARs), as a gateway caches one.
    const other = tmp()
    expect(runCli(['publish', '--repo', other, paths[4]!]).status).toBe(0)
    const otherName = nameOf(other)
    const otherRecord = (await loadRecord(other, otherName))!
    await acceptRecord(repo, otherName, readFileSync(recordPath(other, otherName)))
    const otherBlocks = await PackStore.openRepo(other)
    const blocks = await PackStore.openRepo(repo)
    const followed: CID[] = []
    for await (const { cid, bytes } of walkDag(otherBlocks, otherRecord.root, { skipLink: (name, parent) => name === 'nar' && parent.equals(otherRecord.root) })) {
      await blocks.put(cid, bytes)
      followed.push(cid)
    }
    await otherBlocks.close()

    // Unreachable blocks; a pinned node with its children, and a pin the repo does not hold.
    const dead = [...await orphan(blocks), ...await orphan(blocks, true)]
    const pinned = await orphan(blocks, true)
    await pin(repo, [pinned[0]!, cidOf(RAW_CODE, randomBytes(5))])
    await blocks.close()

    const count = async (): Promise<number> => { const b = await PackStore.openRepo(repo); const n = b.size; await b.close(); return n }
    const before = await count()
    const dry = runCli(['gc', '--repo', repo, '--dry-run'])
    expect(dry.status).toBe(0)
    const toDrop = Number(/to drop: +(\d+) blocks/.exec(dry.stdout)![1])
    expect(toDrop).toBeGreaterThanOrEqual(dead.length + 1)
    expect(dry.stdout).toMatch(/roots: +2 record\(s\), 2 pin\(s\)/)
    expect(await count()).toBe(before)

    const gw = await startGatewayProcess(['--repo', repo])
    try {
      const hash = (p: string): string => parseStorePath(p).hash
      const narUrlOf = async (p: string): Promise<string> => /URL: (\S+)/.exec(await (await fetch(`${gw.url}/${hash(p)}.narinfo`)).text())![1]!
      // The gateway has read (and holds handles on) the old packs.
      const url0 = await narUrlOf(paths[0]!)
      expect(Buffer.compare(Buffer.from(await (await fetch(`${gw.url}/${url0}`)).arrayBuffer()), nixDump(paths[0]!))).toBe(0)

      const gc = runCli(['gc', '--repo', repo])
      expect(gc.status, gc.stderr).toBe(0)
      expect(gc.stdout).toMatch(new RegExp(`dropped: +${toDrop} blocks, [0-9.]+ (B|KiB|MiB)\n`))
      expect(gc.stdout).toMatch(/missing: +\d+ block/) // the followed cache's NARs
      expect(await count()).toBe(before - toDrop)

      // The gateway serves every path, across the compaction and after it has reloaded.
      for (const wait of [0, 1200]) {
        await new Promise(resolve => setTimeout(resolve, wait))
        for (const p of paths.slice(0, 4)) {
          const res = await fetch(`${gw.url}/${await narUrlOf(p)}`)
          expect(res.status).toBe(200)
          expect(Buffer.compare(Buffer.from(await res.arrayBuffer()), nixDump(p))).toBe(0)
        }
      }
      // …and has let go of the deleted packs, so their space is free.
      const held = readdirSync(`/proc/${gw.child.pid}/fd`).map(fd => { try { return readlinkSync(`/proc/${gw.child.pid}/fd/${fd}`) } catch { return '' } })
      expect(held.filter(t => t.includes(repo) && t.endsWith('(deleted)'))).toEqual([])
    } finally {
      await gw.stop()
    }

    const after = await PackStore.openRepo(repo)
    try {
      expect(await expectCacheIntact(after, root)).toBe(4)
      for (const cid of [oldRoot, ...dead]) expect(after.has(cid)).toBe(false)
      for (const cid of [...pinned, ...followed]) expect(after.has(cid)).toBe(true)
      const followedIndex = await openIndex(after, otherRecord.root)
      expect((await followedIndex.narInfo(parseStorePath(paths[4]!).hash))?.info.storePath).toBe(paths[4])
    } finally {
      await after.close()
    }

    const again = runCli(['gc', '--repo', repo])
    expect(again.status).toBe(0)
    // Sizes below 0.1 MiB said '0.0 MiB' (found by an outside test).
    expect(again.stdout).toMatch(/dropped: +0 blocks, 0 B\n/)
    expect(await count()).toBe(before - toDrop)
  })

  it('collectGarbage marks in a bitset, and refuses to run on a record it cannot read', async () => {
    const [out] = nixBuild(shellDerivation(`gc-rec-${Date.now()}-${process.pid}`, 'echo x > $out')) as [string]
    const repo = tmp()
    expect(runCli(['publish', '--repo', repo, out]).status).toBe(0)
    const blocks = await PackStore.openRepo(repo)
    try {
      const first = await collectGarbage(repo, blocks) // the empty root a first publish starts from
      expect(first.dropped.blocks).toBeGreaterThan(0)
      expect(first.tableBytes.after).toBeLessThanOrEqual(first.tableBytes.before)
      const dry = await collectGarbage(repo, blocks, { dryRun: true })
      expect(dry.dropped.blocks).toBe(0)
      expect(dry.markBytes).toBeLessThanOrEqual(Math.ceil(blocks.size / 0.7 / 8) + 1024)
      const { writeFileSync } = await import('node:fs')
      writeFileSync(recordPath(repo, nameOf(repo)), 'garbage')
      await expect(collectGarbage(repo, blocks)).rejects.toMatchObject({ code: expect.stringMatching(/^ERR_/) })
      expect(blocks.size).toBeGreaterThan(0)
    } finally {
      await blocks.close()
    }
  })

  it('a publish that opened the store before a gc does not take a block the gc dropped for present', async () => {
    const [out] = nixBuild(shellDerivation(`gc-pub-${Date.now()}-${process.pid}`, 'echo small > $out')) as [string]
    const repo = tmp()
    const key = generateSecretKey('gc-test-1')
    // The NAR is one chunk: its only block. Stored beforehand, unreachable, so gc drops it.
    const nar = nixDump(out)
    const gcStore = await PackStore.openRepo(repo)
    await gcStore.put(cidOf(RAW_CODE, nar), nar)
    await gcStore.sync()
    // `nixipfs publish` opens the store, then waits for the repo lock that gc holds.
    const publisher = await PackStore.openRepo(repo)
    expect(publisher.has(cidOf(RAW_CODE, nar))).toBe(true)
    expect((await collectGarbage(repo, gcStore)).dropped.blocks).toBe(1)
    await publish({ repo, blocks: publisher }, { paths: [out], recursive: false, key, recipe: RECIPES.cdc!, recordLifetimeMs: 3_600_000 })
    await publisher.close()
    await gcStore.close()
    const fresh = await PackStore.openRepo(repo)
    try {
      expect(await expectCacheIntact(fresh, (await loadRecord(repo, ipnsNameOf(key.publicKey)))!.root)).toBe(1)
    } finally {
      await fresh.close()
    }
  })
})
