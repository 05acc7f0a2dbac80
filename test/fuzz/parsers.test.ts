import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { NixipfsError } from '../../src/errors.js'
import { carBytes, readCar } from '../../src/ipfs/car.js'
import { cidOf, RAW_CODE } from '../../src/ipfs/block.js'
import { openRecord, signRecord, ipnsNameOf } from '../../src/ipfs/ipns.js'
import { formatCacheInfo, parseCacheInfo } from '../../src/nix/cache-info.js'
import { formatSha256 } from '../../src/nix/hash.js'
import { formatNarInfo, parseNarInfo, type NarInfo } from '../../src/nix/narinfo.js'
import { parseRealisation } from '../../src/nix/realisation.js'
import { generateSecretKey } from '../../src/nix/signing.js'
import { openStatement, signStatement } from '../../src/trust/statement.js'
import { startGateway, type Gateway } from '../../src/gateway/server.js'
import { PackStore } from '../../src/ipfs/pack-store.js'
import { tmp } from '../helpers/cli.js'

// Every parser that sees bytes from outside, fed random and mutated input:
// it returns, or throws a typed NixipfsError — never anything else, never a hang.
const RUNS = Number(process.env.NIXIPFS_FUZZ_RUNS ?? 1_500)
let cases = 0
afterAll(() => { console.log(`fuzz: ${cases} cases over ${7} parsers`) })

/** Runs `parse`; passes if it returns or throws a NixipfsError. */
async function typedOnly (parse: () => unknown): Promise<boolean> {
  cases++
  try { await parse() } catch (err) { if (!(err instanceof NixipfsError)) throw err }
  return true
}

const nix32 = fc.string({ unit: fc.constantFrom(...'0123456789abcdfghijklmnpqrsvwxyz'), minLength: 32, maxLength: 32 })
const narInfoArb: fc.Arbitrary<NarInfo> = fc.record({
  storePath: fc.tuple(nix32, fc.string({ unit: fc.constantFrom('a', 'b', '-', '.', '_', '1'), minLength: 1, maxLength: 20 })).map(([h, n]) => `/nix/store/${h}-x${n}`),
  url: nix32.map(h => `nar/${h}.nar`),
  compression: fc.constantFrom('none', 'xz', 'zstd'),
  narHash: fc.uint8Array({ minLength: 32, maxLength: 32 }).map(formatSha256),
  narSize: fc.integer({ min: 1, max: 2 ** 40 }),
  references: fc.array(nix32.map(h => `${h}-ref`), { maxLength: 5 }).map(r => [...new Set(r)].sort()),
  // Nix keeps signatures in a set: sorted, each once
  sigs: fc.array(fc.base64String({ minLength: 88, maxLength: 88 }).map(s => `key-1:${s}`), { maxLength: 3 }).map(s => [...new Set(s)].sort())
})

/** A text with random line-level damage: dropped, doubled, truncated or garbled lines. */
const damaged = (text: string): fc.Arbitrary<string> => fc.array(fc.tuple(fc.nat(), fc.constantFrom('drop', 'dup', 'cut', 'garble')), { maxLength: 4 }).map(edits => {
  const lines = text.split('\n')
  for (const [at, how] of edits) {
    const i = at % lines.length
    if (how === 'drop') lines.splice(i, 1)
    else if (how === 'dup') lines.splice(i, 0, lines[i]!)
    else if (how === 'cut') lines[i] = lines[i]!.slice(0, at % 7)
    else lines[i] = lines[i]!.replace(/[a-z0-9]/, '\u0000')
  }
  return lines.join('\n')
})

describe('fuzzing the parsers of outside input', () => {
  it('narinfo: formats round-trip; random and damaged text gives only typed errors', async () => {
    fc.assert(fc.property(narInfoArb, info => { cases++; expect(parseNarInfo(formatNarInfo(info))).toEqual(info) }), { numRuns: RUNS })
    await fc.assert(fc.asyncProperty(fc.string({ maxLength: 400 }), async s => await typedOnly(() => parseNarInfo(s))), { numRuns: RUNS })
    await fc.assert(fc.asyncProperty(narInfoArb.chain(i => damaged(formatNarInfo(i))), async s => await typedOnly(() => parseNarInfo(s))), { numRuns: RUNS })
  })

  it('nix-cache-info: round trip and typed errors', async () => {
    const info = fc.record({ storeDir: fc.constant('/nix/store'), wantMassQuery: fc.boolean(), priority: fc.nat({ max: 100 }), extra: fc.constant({}) })
    fc.assert(fc.property(info, i => { cases++; expect(parseCacheInfo(formatCacheInfo(i))).toMatchObject({ storeDir: i.storeDir, wantMassQuery: i.wantMassQuery, priority: i.priority }) }), { numRuns: RUNS })
    await fc.assert(fc.asyncProperty(fc.string({ maxLength: 300 }), async s => await typedOnly(() => parseCacheInfo(s))), { numRuns: RUNS })
  })

  it('IPNS records: random bytes and bit flips of a real record give only typed errors', async () => {
    const key = generateSecretKey('fuzz-1')
    const name = ipnsNameOf(key.publicKey)
    const record = await signRecord(key.seed, cidOf(RAW_CODE, new Uint8Array([1])), 7n, 60_000)
    await fc.assert(fc.asyncProperty(fc.uint8Array({ maxLength: 400 }), async b => await typedOnly(async () => await openRecord(name, b))), { numRuns: RUNS })
    await fc.assert(fc.asyncProperty(fc.nat({ max: record.bytes.length - 1 }), fc.integer({ min: 1, max: 255 }), async (at, x) => {
      const bytes = Uint8Array.from(record.bytes)
      bytes[at]! ^= x
      return await typedOnly(async () => await openRecord(name, bytes))
    }), { numRuns: RUNS })
  })

  it('realisations and dispute statements: typed errors only', async () => {
    const key = generateSecretKey('fuzz-2')
    const text = signStatement(key, { storePath: '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-x', rebuilt: { narHash: 'sha256:x', narSize: 1 }, signed: [], date: 'd' })
    await fc.assert(fc.asyncProperty(fc.oneof(fc.json(), fc.string({ maxLength: 200 })), async s => await typedOnly(() => parseRealisation(s))), { numRuns: RUNS })
    await fc.assert(fc.asyncProperty(fc.oneof(fc.json(), damaged(text)), async s => await typedOnly(() => openStatement(s, ipnsNameOf(key.publicKey)))), { numRuns: RUNS })
  })

  it('CAR input: bit flips and truncations of a real CAR give only typed errors', async () => {
    const blocks = [new Uint8Array(300).fill(1), new Uint8Array(70).fill(2)].map(b => ({ cid: cidOf(RAW_CODE, b), bytes: b }))
    const parts: Uint8Array[] = []
    for await (const p of carBytes([blocks[0]!.cid], blocks)) parts.push(p)
    const car = Buffer.concat(parts)
    await fc.assert(fc.asyncProperty(fc.nat({ max: car.length - 1 }), fc.integer({ min: 1, max: 255 }), fc.nat({ max: car.length }), async (at, x, cut) => {
      const bytes = Buffer.from(car)
      bytes[at]! ^= x
      return await typedOnly(async () => {
        const r = readCar((async function * () { yield bytes.subarray(0, cut) })())
        for await (const _ of r.blocks) { /* reads every block */ }
      })
    }), { numRuns: RUNS })
  })

  describe('HTTP paths and headers', () => {
    let gw: Gateway
    let store: PackStore
    beforeAll(async () => {
      store = await PackStore.openRepo(tmp())
      gw = await startGateway({ caches: async () => undefined, disputes: async () => [], stats: () => ({}), blocks: store, local: store, record: async () => undefined, host: '127.0.0.1', port: 0 })
    })
    afterAll(async () => { await gw.close(); await store.close() })

    it('no path or Range header gets a 5xx or a hang', async () => {
      const seg = fc.oneof(fc.string({ maxLength: 40 }), fc.constantFrom('nar', 'ipfs', 'ipns', 'realisations', 'disputes', 'stats', '..', '%2e%2e', 'nix-cache-info', 'x.narinfo', `${'a'.repeat(32)}.narinfo`))
      await fc.assert(fc.asyncProperty(fc.array(seg, { minLength: 1, maxLength: 4 }), fc.option(fc.string({ maxLength: 30 })), fc.constantFrom('GET', 'HEAD', 'POST'), async (segs, range, method) => {
        cases++
        const path = '/' + segs.map(s => encodeURIComponent(s).replace(/%2F/g, '/')).join('/')
        const headers: Record<string, string> = {}
        if (range !== null) headers.range = range.replace(/[^\x20-\x7e]/g, '')
        const r = await fetch(gw.url + path, { method, headers, signal: AbortSignal.timeout(5_000) })
        await r.arrayBuffer()
        expect(r.status).toBeLessThan(500)
      }), { numRuns: 300 })
    })
  })
})

