import { appendFileSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { BlockNotFoundError, IntegrityError } from '../../src/errors.js'
import { cidOf, getVerified, RAW_CODE } from '../../src/ipfs/block.js'
import { PackStore } from '../../src/ipfs/pack-store.js'
import { tmp } from '../helpers/cli.js'

async function filled (dir: string, n: number, size = 1000): Promise<{ store: PackStore, blocks: Array<{ cid: ReturnType<typeof cidOf>, bytes: Uint8Array }> }> {
  const store = new PackStore(dir)
  await store.open()
  const blocks = Array.from({ length: n }, () => { const bytes = randomBytes(size); return { cid: cidOf(RAW_CODE, bytes), bytes } })
  for (const b of blocks) await store.put(b.cid, b.bytes)
  return { store, blocks }
}

describe('PackStore', () => {
  it('stores, deduplicates and reads back blocks, before and after a reopen', async () => {
    const dir = tmp()
    const { store, blocks } = await filled(dir, 50)
    await store.put(blocks[0]!.cid, blocks[0]!.bytes) // duplicate: no second copy
    for (const b of blocks) expect(Buffer.compare(await getVerified(store, b.cid), b.bytes)).toBe(0)
    await store.close()
    expect(statSync(join(dir, '000001.pack')).size).toBe(50 * 1000)
    const again = new PackStore(dir)
    await again.open()
    expect(again.size).toBe(50)
    for (const b of blocks) expect(Buffer.compare(await getVerified(again, b.cid), b.bytes)).toBe(0)
    const all = []
    for await (const p of again.getAll()) all.push(p.cid.toString())
    expect(all.sort()).toEqual(blocks.map(b => b.cid.toString()).sort())
    await again.delete(blocks[3]!.cid)
    expect(again.has(blocks[3]!.cid)).toBe(false)
    await again.close()
    const third = new PackStore(dir)
    await third.open()
    expect(third.has(blocks[3]!.cid)).toBe(false)
    await expect(third.read(blocks[3]!.cid)).rejects.toBeInstanceOf(BlockNotFoundError)
    await third.close()
  })

  it('sees blocks another process appended (refresh on miss)', async () => {
    const dir = tmp()
    const reader = new PackStore(dir)
    await reader.open()
    const { store, blocks } = await filled(dir, 3)
    await store.sync()
    expect(Buffer.compare(await reader.read(blocks[2]!.cid), blocks[2]!.bytes)).toBe(0)
    await store.close(); await reader.close()
  })

  it('ignores a torn index record after a crash and keeps appending on a record boundary', async () => {
    const dir = tmp()
    const { store, blocks } = await filled(dir, 4)
    await store.close()
    appendFileSync(join(dir, 'index.log'), Buffer.alloc(20, 7)) // half a record, as a crash mid-write leaves it
    const again = new PackStore(dir)
    await again.open()
    expect(again.size).toBe(4)
    const extra = randomBytes(500)
    await again.put(cidOf(RAW_CODE, extra), extra)
    await again.close()
    expect(statSync(join(dir, 'index.log')).size % 56).toBe(0)
    const third = new PackStore(dir)
    await third.open()
    expect(third.size).toBe(5)
    expect(Buffer.compare(await getVerified(third, blocks[1]!.cid), blocks[1]!.bytes)).toBe(0)
    await third.close()
  })

  it('drops a corrupt index record (bad checksum) and leaves a corrupt pack byte to verification', async () => {
    const dir = tmp()
    const { store, blocks } = await filled(dir, 3)
    await store.close()
    const index = readFileSync(join(dir, 'index.log'))
    index[56 + 40] ^= 1 // offset field of the second record
    writeFileSync(join(dir, 'index.log'), index)
    const pack = readFileSync(join(dir, '000001.pack'))
    pack[2500] ^= 1 // inside the third block
    writeFileSync(join(dir, '000001.pack'), pack)
    const again = new PackStore(dir)
    await again.open()
    expect(again.has(blocks[1]!.cid)).toBe(false)
    await expect(getVerified(again, blocks[2]!.cid)).rejects.toBeInstanceOf(IntegrityError)
    expect(Buffer.compare(await getVerified(again, blocks[0]!.cid), blocks[0]!.bytes)).toBe(0)
    await again.close()
    truncateSync(join(dir, '000001.pack'), 1500) // a truncated pack: short read, caught by verification
    const fourth = new PackStore(dir)
    await fourth.open()
    await expect(getVerified(fourth, blocks[2]!.cid)).rejects.toBeInstanceOf(IntegrityError)
    await fourth.close()
  })
})
