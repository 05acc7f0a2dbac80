import { CID } from 'multiformats/cid'
import { describe, expect, it, vi } from 'vitest'
import type { CacheIndex, NarInfoEntry } from '../../src/cache/index.js'
import type { IndexSource } from '../../src/cache/source.js'
import { unionOf } from '../../src/cache/union.js'
import { statusOf } from '../../src/gateway/http-errors.js'
import { cidOf, RAW_CODE } from '../../src/ipfs/block.js'
import { fingerprint, formatNarInfo, type NarInfo } from '../../src/nix/narinfo.js'
import { formatPublicKey, generateSecretKey, publicKeyOf, signFingerprint, type SecretKey } from '../../src/nix/signing.js'
import { judge, quorumOf, type RebuildVote } from '../../src/trust/quorum.js'

const PATH = '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-hello-2.12'
const honest = { narHash: 'sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s', narSize: 1000 }
const tampered = { narHash: 'sha256:0c5xbm8a0iz4h1pvvfjx2mcp6rl1wx0l3yzz1lhv6qm42jsm3y8m', narSize: 1004 }
const trusted = [1, 2, 3, 4].map(i => generateSecretKey(`builder-${i}`))
const untrusted = Array.from({ length: 10 }, (_, i) => generateSecretKey(`sybil-${i}`))
const policy = (threshold: number, extra: Partial<Parameters<typeof judge>[1]> = {}): Parameters<typeof judge>[1] =>
  ({ keys: trusted.map(publicKeyOf), threshold, ...extra })

function entry (what: { narHash: string, narSize: number }, signers: SecretKey[], forge = false): NarInfoEntry {
  const base: NarInfo = { storePath: PATH, url: `nar/${cidOf(RAW_CODE, Buffer.from(what.narHash)).toString()}.nar`, compression: 'none', narHash: what.narHash, narSize: what.narSize, references: [], sigs: [] }
  const sigs = signers.map(k => signFingerprint(k, fingerprint(base)))
  // A forged signature: the right key name, another key's signature bytes.
  if (forge) sigs[0] = `${signers[0]!.name}:${signFingerprint(untrusted[0]!, fingerprint(base)).split(':')[1]!}`
  const info = { ...base, sigs }
  return { text: formatNarInfo(info), info, cid: cidOf(RAW_CODE, Buffer.from(formatNarInfo(info))), nar: CID.parse(base.url.slice(4, -4)) }
}

describe('quorum of trusted builders', () => {
  it('serves what K trusted keys signed, with all their signatures', () => {
    const v = judge(trusted.slice(0, 3).map(k => entry(honest, [k])), policy(2))
    expect(v.served?.info.narHash).toBe(honest.narHash)
    expect(v.served?.info.sigs).toHaveLength(3)
    expect(v.served?.text).toContain('Sig: builder-1:')
    expect(v.served?.text).toContain('Sig: builder-3:')
    expect(v.dispute).toBeUndefined()
  })

  it('serves the honest NAR despite one tampered builder, and records the dispute', () => {
    const v = judge([...trusted.slice(0, 3).map(k => entry(honest, [k])), entry(tampered, [trusted[3]!])], policy(2))
    expect(v.served?.info.narHash).toBe(honest.narHash)
    expect(v.dispute?.groups.map(g => [g.narHash, g.keys.length])).toEqual([[honest.narHash, 3], [tampered.narHash, 1]])
    expect(v.dispute?.groups[1]?.keys[0]).toBe(formatPublicKey(publicKeyOf(trusted[3]!)))
  })

  it('refuses when fewer than K agree, saying how many did', () => {
    const v = judge([...trusted.slice(0, 3).map(k => entry(honest, [k])), entry(tampered, [trusted[3]!])], policy(4))
    expect(v.served).toBeUndefined()
    expect(v.served === undefined && v.reason).toMatch(/at most 3 of the 4 trusted signatures required agree \(trusted builders disagree/)
    expect(v.dispute).toBeDefined()
  })

  it('never counts keys outside the trust set, however many agree', () => {
    const sybils = untrusted.map(k => entry(tampered, [k]))
    const v = judge([...sybils, entry(tampered, [trusted[3]!]), ...trusted.slice(0, 2).map(k => entry(honest, [k]))], policy(2))
    expect(v.served?.info.narHash).toBe(honest.narHash)
    expect(v.dispute?.groups.find(g => g.narHash === tampered.narHash)?.keys).toHaveLength(1)
    expect(judge(sybils, policy(1)).served).toBeUndefined()
    expect(judge(sybils, policy(1))).toMatchObject({ reason: expect.stringMatching(/no trusted key signed it/) })
  })

  it('counts co-signatures in one narinfo, and not forged ones', () => {
    expect(judge([entry(honest, [trusted[0]!, trusted[1]!])], policy(2)).served?.info.sigs).toHaveLength(2)
    expect(judge([entry(honest, [trusted[0]!, trusted[1]!], true)], policy(2)).served).toBeUndefined()
    // A lone forged signature is named as such.
    expect(judge([entry(honest, [trusted[0]!], true)], policy(1))).toMatchObject({ reason: expect.stringMatching(/no trusted key signed it \(the signature by builder-1 does not verify: forged/) })
    expect(judge([entry(honest, [untrusted[1]!])], policy(1)).reason).not.toMatch(/forged/)
  })

  it('refuses when two different NARs both reach K', () => {
    const v = judge([entry(honest, trusted.slice(0, 2)), entry(tampered, trusted.slice(2, 4))], policy(2))
    expect(v.served).toBeUndefined()
    expect(v.served === undefined && v.reason).toMatch(/2 different NARs each reached the threshold of 2/)
  })

  it('records no dispute for paths declared non-reproducible', () => {
    const v = judge([entry(honest, trusted.slice(0, 2)), entry(tampered, [trusted[2]!])], policy(2, { nonReproducible: ['hello-*'] }))
    expect(v.served?.info.narHash).toBe(honest.narHash)
    expect(v.dispute).toBeUndefined()
  })

  describe('rebuild results as votes', () => {
    const rebuilt = { narHash: 'sha256:1jq0bgmfbk0ix2ip00cmpp70wq2qz3z76lrk6xkyb29c5qm7ik14', narSize: 1000 }
    const vote = (k: SecretKey, what: { narHash: string, narSize: number }, storePath = PATH): RebuildVote => ({ key: formatPublicKey(publicKeyOf(k)), storePath, ...what })

    it('K1, K2 sign H, trusted K3 rebuilds H′: H keeps its two votes and is served, K3\'s vote is a dispute group of its own', () => {
      const v = judge(trusted.slice(0, 2).map(k => entry(honest, [k])), policy(2), [vote(trusted[2]!, rebuilt)])
      expect(v.served?.info.narHash).toBe(honest.narHash)
      // The served narinfo carries signatures only: a vote has none to give.
      expect(v.served?.info.sigs).toHaveLength(2)
      expect(v.dispute?.groups.map(g => [g.narHash, g.keys])).toEqual([[honest.narHash, [formatPublicKey(publicKeyOf(trusted[0]!)), formatPublicKey(publicKeyOf(trusted[1]!))]], [rebuilt.narHash, [formatPublicKey(publicKeyOf(trusted[2]!))]]])
    })

    it('a quorum is lost by flagging: two trusted builders sign a tampered NAR, one honest, and a trusted verifier rebuilds the honest one', () => {
      const entries = [entry(tampered, [trusted[0]!]), entry(tampered, [trusted[1]!]), entry(honest, [trusted[2]!])]
      expect(judge(entries, policy(2)).served?.info.narHash).toBe(tampered.narHash)
      const v = judge(entries, policy(2), [vote(trusted[3]!, honest)])
      expect(v.served).toBeUndefined()
      expect(v.served === undefined && v.reason).toMatch(/2 different NARs each reached the threshold of 2 trusted signatures or rebuilds; refusing it/)
      expect(v.dispute?.groups.find(g => g.narHash === honest.narHash)?.keys).toHaveLength(2)
    })

    it('adds the vote to the NarHash it rebuilt, so a verifier can complete a quorum', () => {
      const v = judge([entry(honest, [trusted[0]!])], policy(2), [vote(trusted[1]!, honest)])
      expect(v.served?.info.narHash).toBe(honest.narHash)
      expect(v.served === undefined ? [] : v.keys).toHaveLength(2)
      expect(v.dispute).toBeUndefined()
    })

    it('never serves a NAR only rebuilds vouch for, and refuses the path when they reach K', () => {
      const v = judge([entry(tampered, [trusted[0]!])], policy(2), [vote(trusted[1]!, honest), vote(trusted[2]!, honest)])
      expect(v.served).toBeUndefined()
      expect(v.served === undefined && v.reason).toMatch(/2 trusted verifiers rebuilt it as sha256:\S+, a NAR no cache offers/)
    })

    it('ignores votes by untrusted keys, for other paths, and counts one key once under any name', () => {
      const other = PATH.replace('hello-2.12', 'hello-2.13')
      const renamed = { ...vote(trusted[1]!, honest), key: `alias:${formatPublicKey(publicKeyOf(trusted[1]!)).split(':')[1]!}` }
      const v = judge([entry(honest, [trusted[0]!, trusted[1]!])], policy(3), [...untrusted.map(k => vote(k, honest)), vote(trusted[2]!, honest, other), renamed])
      expect(v.served).toBeUndefined()
      expect(v.served === undefined && v.reason).toMatch(/at most 2 of the 3/)
    })
  })
})

// A cache whose blocks cannot be had (its holder gone, bitswap timing out) held every narinfo request of a gateway
// that served it among others: 105 s for one on the 50-node discovery bench. Once one cache has answered, the
// others get 10 s more; a cache still out then does not count, as one that cannot be read.
describe.concurrent('a cache that does not answer', () => {
  const never = new Promise<never>(() => {})
  const index = (narInfo: CacheIndex['narInfo']): CacheIndex => ({ root: cidOf(RAW_CODE, Buffer.from('root')), cacheInfo: '', narInfo, nar: async () => undefined, realisation: async () => undefined, log: async () => undefined })
  const source = (current: IndexSource['current']): IndexSource => ({ current, recheck: () => {} })
  const sources = (): IndexSource[] => [
    source(async () => index(async () => entry(honest, [trusted[0]!]))),
    source(async () => index(async () => await never)), // opens, never answers
    source(async () => await never) // never opens
  ]

  it('holds a quorum\'s narinfo 10 s per step at most (opening, answering) once another cache has', async () => {
    const started = Date.now()
    const served = await (await quorumOf(sources(), { policy: policy(1) })())!.narInfo('0123456789abcdfghijklmnpqrsvwxyz')
    expect(served?.info.narHash).toBe(honest.narHash)
    expect(Date.now() - started).toBeLessThan(22_500)
  }, 30_000)

  it('holds a union\'s narinfo 10 s per step at most (opening, answering) once another cache has', async () => {
    const started = Date.now()
    const served = await (await unionOf(sources())())!.narInfo('0123456789abcdfghijklmnpqrsvwxyz')
    expect(served?.info.narHash).toBe(honest.narHash)
    expect(Date.now() - started).toBeLessThan(22_500)
  }, 30_000)

  it.each([
    ['a cache that opened and does not answer', source(async () => index(async () => await never))],
    ['a cache still opening its index', source(async () => await never)]
  ])('serves a union\'s hit about a second after it came, not 10 s later, beside %s', async (_what, slow) => {
    const started = Date.now()
    const served = await (await unionOf([source(async () => index(async () => entry(honest, [trusted[0]!]))), slow])())!.narInfo('0123456789abcdfghijklmnpqrsvwxyz')
    expect(served?.info.narHash).toBe(honest.narHash)
    expect(Date.now() - started).toBeLessThan(3_000)
  }, 30_000)

  it.each([
    ['threshold 1, one trusted hit', 1, [entry(honest, [trusted[0]!])]],
    ['threshold 2, two trusted hits that agree', 2, [entry(honest, [trusted[0]!]), entry(honest, [trusted[1]!])]]
  ])('serves a quorum met by the caches that answered about a second later, not 10 s, beside a cache still opening (%s)', async (_what, threshold, hits) => {
    const started = Date.now()
    const answering = hits.map(hit => source(async () => index(async () => hit)))
    const served = await (await quorumOf([...answering, source(async () => await never)], { policy: policy(threshold) })())!.narInfo('0123456789abcdfghijklmnpqrsvwxyz')
    expect(served?.info.narHash).toBe(honest.narHash)
    expect(Date.now() - started).toBeLessThan(3_000)
  }, 30_000)

  // The 50-node discovery bench: every discovered narinfo waited 1 s for the caches whose indexes were still being
  // fetched (and 250 ms, twice, for them to open), which was most of its p50 of 3.6 s.
  it.each([
    ['union', () => unionOf([source(async () => index(async () => entry(honest, [trusted[0]!]))), source(async () => await never)])],
    ['quorum', () => quorumOf([source(async () => index(async () => entry(honest, [trusted[0]!]))), source(async () => await never)], { policy: policy(1) })]
  ])('serves a settled %s narinfo within a few hundred ms beside a cache still opening its index, not a second later', async (_what, caches) => {
    const started = Date.now()
    const served = await (await caches()())!.narInfo('0123456789abcdfghijklmnpqrsvwxyz')
    expect(served?.info.narHash).toBe(honest.narHash)
    expect(Date.now() - started).toBeLessThan(600)
  }, 30_000)

  it('still waits up to a second for a narinfo a preferred key signed, from a cache that opens late, before serving one it did not sign', async () => {
    const opensLate = source(async () => { await new Promise(resolve => setTimeout(resolve, 400)); return index(async () => entry(honest, [trusted[1]!])) })
    const served = await (await unionOf([source(async () => index(async () => entry(honest, [untrusted[0]!]))), opensLate], { prefer: [publicKeyOf(trusted[1]!)] })())!.narInfo('0123456789abcdfghijklmnpqrsvwxyz')
    expect(served?.info.sigs[0]).toMatch(/^builder-2:/)
  }, 30_000)

  it('waits for an open cache that is slow to answer (up to a second): its signature and its dispute are in the answer', async () => {
    const disputes: string[][] = []
    const slow = (hit: NarInfoEntry): IndexSource => source(async () => index(async () => { await new Promise(resolve => setTimeout(resolve, 300)); return hit }))
    const caches = quorumOf([source(async () => index(async () => entry(honest, [trusted[0]!]))), source(async () => index(async () => entry(honest, [trusted[1]!]))), slow(entry(honest, [trusted[2]!])), slow(entry(tampered, [trusted[3]!]))], {
      policy: policy(2), onDispute: d => disputes.push(d.groups.map(g => g.narHash))
    })
    const served = await (await caches())!.narInfo('0123456789abcdfghijklmnpqrsvwxyz')
    expect(served?.info.sigs).toHaveLength(3)
    expect(disputes).toEqual([[honest.narHash, tampered.narHash]])
  }, 30_000)

  it('judges a cache that answers after the quorum was served: its dispute is recorded, and a NAR two quorums now claim is no longer served', async () => {
    const disputes: string[][] = []
    const refusals: string[] = []
    let answer!: () => void
    const lateAnswer = new Promise<void>(resolve => { answer = resolve })
    const late = source(async () => { await lateAnswer; return index(async () => entry(tampered, [trusted[2]!, trusted[3]!])) })
    const holding = (e: NarInfoEntry): CacheIndex => ({ ...index(async () => e), nar: async cid => ({ cid: CID.parse(cid), narHash: e.info.narHash, narSize: e.info.narSize }) })
    const caches = quorumOf([...trusted.slice(0, 2).map(k => source(async () => holding(entry(honest, [k])))), late], {
      policy: policy(2), onDispute: d => disputes.push(d.groups.map(g => g.narHash)), onRefused: r => refusals.push(r)
    })
    const served = await (await caches())!.narInfo('0123456789abcdfghijklmnpqrsvwxyz')
    expect(served?.info.narHash).toBe(honest.narHash)
    const current = (await caches())!
    expect(await current.nar(served!.nar.toString())).toBeDefined()
    answer()
    await vi.waitFor(() => expect(disputes).toEqual([[honest.narHash, tampered.narHash]]), { timeout: 5_000 })
    expect(refusals.join('\n')).toMatch(/2 different NARs each reached the threshold of 2/)
    expect(await current.nar(served!.nar.toString())).toBeUndefined()
  }, 30_000)

  it('makes a path that no cache answering holds a 503 (asked again), not a 404 (remembered for an hour): the late one may hold it', async () => {
    const late = [source(async () => index(async () => undefined)), source(async () => await never)]
    const err = await (await unionOf(late)())!.narInfo('0123456789abcdfghijklmnpqrsvwxyz').catch((e: unknown) => e)
    expect(String(err)).toMatch(/did not answer within 10 s/)
    expect(statusOf(err)).toBe(503) // was a 500 on the 50-node bench: its own error code had no status
  }, 30_000)

  it('holds a path no answering cache holds 10 s at most, beside a cache that opened and does not answer; then a 503', async () => {
    const started = Date.now()
    const stuck = [source(async () => index(async () => undefined)), source(async () => index(async () => await never))]
    await expect((await unionOf(stuck)())!.narInfo('0123456789abcdfghijklmnpqrsvwxyz')).rejects.toThrow(/did not answer within 10 s/)
    await expect((await quorumOf(stuck, { policy: policy(1) })())!.narInfo('0123456789abcdfghijklmnpqrsvwxyz')).rejects.toThrow(/did not answer within 10 s/)
    expect(Date.now() - started).toBeLessThan(22_500)
  }, 30_000)

  it('is not counted towards the threshold: a narinfo it might have tipped is unavailable now, not a miss', async () => {
    await expect((await quorumOf(sources(), { policy: policy(2) })())!.narInfo('0123456789abcdfghijklmnpqrsvwxyz')).rejects.toThrow(/did not answer within 10 s/)
  }, 30_000)
})
