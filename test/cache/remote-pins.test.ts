import { randomBytes } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import * as dagPb from '@ipld/dag-pb'
import { CID } from 'multiformats/cid'
import { describe, expect, it } from 'vitest'
import { collectGarbage } from '../../src/cache/gc.js'
import { startPinWorker } from '../../src/cache/pin-worker.js'
import { RemotePinStore, remotePinCids } from '../../src/cache/remote-pins.js'
import { startGateway } from '../../src/gateway/server.js'
import { cidOf, DAG_PB_CODE, RAW_CODE } from '../../src/ipfs/block.js'
import { PackStore } from '../../src/ipfs/pack-store.js'
import { NetworkBlocks } from '../../src/net/fetcher.js'
import { HttpPeer } from '../../src/net/http-peer.js'
import { remotePinsPath } from '../../src/repo-layout.js'
import { tmp } from '../helpers/cli.js'

const quiet = { info: () => {}, warn: () => {}, debug: () => {} }

/** A dag-pb node over `n` raw leaves of 1 KiB, put into `blocks`: its CID. */
async function smallDag (blocks: PackStore, n = 3): Promise<CID> {
  const leaves = Array.from({ length: n }, () => { const bytes = randomBytes(1024); return { cid: cidOf(RAW_CODE, bytes), bytes } })
  for (const l of leaves) await blocks.put(l.cid, l.bytes)
  const node = dagPb.encode(dagPb.prepare({ Links: leaves.map((l, i) => ({ Name: `l${i}`, Hash: l.cid, Tsize: 1024 })) }))
  const cid = cidOf(DAG_PB_CODE, node)
  await blocks.put(cid, node)
  await blocks.flush()
  return cid
}

const someCid = (): string => cidOf(RAW_CODE, randomBytes(8)).toString()

describe('the remote pin store', () => {
  it('keeps requests across a reopen, queues again what was being fetched, replaces and removes in one write', async () => {
    const repo = tmp()
    const store = await RemotePinStore.open(repo)
    const a = await store.add({ cid: someCid(), name: 'a', origins: ['/ip4/127.0.0.1/tcp/1/p2p/12D3KooWDwEVQ6Bjf6LUwNkL25qPuVVEb2zVSd8CMhQSPg6mjb4Y'], meta: { app: 'x' } })
    const b = await store.add({ cid: someCid(), name: 'b' })
    expect(a.status).toBe('queued')
    expect(a.requestid).not.toBe(b.requestid)
    expect(Date.parse(b.created)).toBeGreaterThan(Date.parse(a.created))
    await store.setStatus(a.requestid, 'pinning', 'fetching')
    await store.setStatus(b.requestid, 'pinned')
    const again = await RemotePinStore.open(repo)
    expect(again.get(a.requestid)).toMatchObject({ status: 'queued', pin: { name: 'a', meta: { app: 'x' } } })
    expect(again.get(b.requestid)?.status).toBe('pinned')

    const c = (await again.replace(b.requestid, { cid: someCid(), name: 'c' }))!
    expect(c.requestid).not.toBe(b.requestid)
    expect(again.get(b.requestid)).toBeUndefined()
    expect(await again.replace('no-such-id', { cid: someCid() })).toBeUndefined()
    expect(await again.remove(a.requestid)).toBe(true)
    expect(await again.remove(a.requestid)).toBe(false)
    const file = JSON.parse(readFileSync(remotePinsPath(repo), 'utf8')) as { pins: Array<{ requestid: string }> }
    expect(file.pins.map(p => p.requestid)).toEqual([c.requestid])
    expect((await remotePinCids(repo)).map(String)).toEqual([c.pin.cid])
  })

  it('lists as the spec says: pinned by default, newest first, by cid (v0 or v1), name match, dates, meta, limit with the full count', async () => {
    const store = await RemotePinStore.open(tmp())
    const v0 = 'QmPZ9gcCEpqKTo6aq61g2nXGUhM4iCL3ewB6LDXZCtioEB'
    const pins = []
    for (let i = 0; i < 12; i++) pins.push(await store.add({ cid: i === 0 ? v0 : someCid(), name: `Cache ${i}`, meta: { n: String(i % 2) } }))
    for (const p of pins.slice(0, 10)) await store.setStatus(p.requestid, 'pinned')
    expect(store.list()).toMatchObject({ count: 10 })
    expect(store.list().results.map(p => p.pin.name)).toEqual(Array.from({ length: 10 }, (_, i) => `Cache ${9 - i}`))
    expect(store.list({ status: ['queued'] }).results.map(p => p.pin.name)).toEqual(['Cache 11', 'Cache 10'])
    expect(store.list({ cid: [CID.parse(v0).toV1().toString()] }).results.map(p => p.pin.cid)).toEqual([v0])
    expect(store.list({ name: 'cache 3' }).count).toBe(0)
    expect(store.list({ name: 'cache 3', match: 'iexact' }).count).toBe(1)
    expect(store.list({ name: 'che 1', match: 'partial', status: ['pinned', 'queued'] }).count).toBe(3)
    expect(store.list({ name: 'CHE 1', match: 'ipartial', status: ['pinned', 'queued'] }).count).toBe(3)
    expect(store.list({ meta: { n: '1' } }).count).toBe(5)
    expect(store.list({ before: new Date(pins[3]!.created), after: new Date(pins[0]!.created) }).results.map(p => p.pin.name)).toEqual(['Cache 2', 'Cache 1'])
    expect(store.list({ limit: 3 })).toMatchObject({ count: 10, results: [{ pin: { name: 'Cache 9' } }, {}, {}] })
  })

  it('refuses a pins file it cannot read rather than letting gc guess', async () => {
    const repo = tmp()
    writeFileSync(remotePinsPath(repo), '{"version": 1, "pins": [')
    await expect(remotePinCids(repo)).rejects.toMatchObject({ code: 'ERR_REMOTE_PINS' })
    await expect(RemotePinStore.open(repo)).rejects.toMatchObject({ code: 'ERR_REMOTE_PINS' })
  })

  it('gc keeps every block a pin request reaches, and drops them once it is removed', async () => {
    const repo = tmp()
    const blocks = await PackStore.openRepo(repo)
    try {
      const root = await smallDag(blocks)
      const store = await RemotePinStore.open(repo)
      const p = await store.add({ cid: root.toString() })
      expect((await collectGarbage(repo, blocks)).dropped.blocks).toBe(0)
      expect(blocks.has(root)).toBe(true)
      await store.remove(p.requestid)
      expect((await collectGarbage(repo, blocks)).dropped.blocks).toBe(4)
    } finally {
      await blocks.close()
    }
  })
})

describe('the pin worker', () => {
  it('fetches a request\'s DAG from the HTTP origin it names, reports pinned with what it took; a CID nobody has fails with the reason', async () => {
    const sourceStore = await PackStore.openRepo(tmp())
    const root = await smallDag(sourceStore, 5)
    const origin = await startGateway({ caches: async () => undefined, disputes: async () => [], stats: () => ({}), blocks: sourceStore, local: sourceStore, record: async () => undefined, host: '127.0.0.1', port: 0 })
    const repo = tmp()
    const local = await PackStore.openRepo(repo)
    const http: HttpPeer[] = []
    const blocks = new NetworkBlocks(local, { http, stallMs: 2_000 })
    const store = await RemotePinStore.open(repo)
    const dialled: string[] = []
    const pinned: string[] = []
    const worker = startPinWorker({
      store,
      blocks,
      local,
      dialOrigin: async address => {
        dialled.push(address)
        const m = /^\/ip4\/([^/]+)\/tcp\/(\d+)\/http/.exec(address)
        if (m !== null) http.push(new HttpPeer(`http://${m[1]!}:${m[2]!}`, { idleMs: 2_000, connections: 2 }))
      },
      onPinned: p => pinned.push(p.pin.cid),
      log: quiet
    })
    try {
      const port = new URL(origin.url).port
      const good = await store.add({ cid: root.toString(), origins: [`/ip4/127.0.0.1/tcp/${port}/http/p2p/12D3KooWDwEVQ6Bjf6LUwNkL25qPuVVEb2zVSd8CMhQSPg6mjb4Y`] })
      const missing = await store.add({ cid: someCid() })
      worker.wake()
      for (let i = 0; i < 100 && (store.get(good.requestid)?.status !== 'pinned' || store.get(missing.requestid)?.status !== 'failed'); i++) await new Promise(resolve => setTimeout(resolve, 100))
      expect(store.get(good.requestid)).toMatchObject({ status: 'pinned', info: { status_details: expect.stringMatching(/^6 blocks /) } })
      expect(dialled).toHaveLength(1)
      expect(pinned).toEqual([root.toString()])
      expect(local.has(root)).toBe(true)
      expect(store.get(missing.requestid)).toMatchObject({ status: 'failed', info: { status_details: expect.stringMatching(/./) } })
      // What was pinned is written down: a restart does not fetch it again.
      expect((await RemotePinStore.open(repo)).get(good.requestid)?.status).toBe('pinned')
    } finally {
      await worker.stop()
      await origin.close()
      await local.close()
      await sourceStore.close()
    }
  })
})
