import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { createIPNSRecord, marshalIPNSRecord } from 'ipns'
import { CID } from 'multiformats/cid'
import { randomBytes } from 'node:crypto'
import { copyFileSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { beforeEach, describe, expect, it } from 'vitest'
import { commitRoot, nextSequence } from '../../src/cache/commit.js'
import { ledgerSequence } from '../../src/cache/ledger.js'
import { acceptRecord, loadRecord } from '../../src/cache/records.js'
import { recordPath } from '../../src/repo-layout.js'
import { RecordError } from '../../src/errors.js'
import { ipnsNameOf, signRecord } from '../../src/ipfs/ipns.js'
import { generateSecretKey } from '../../src/nix/signing.js'
import { tmp } from '../helpers/cli.js'

const HOUR = 3_600_000
const rootA = CID.parse('bafybeihsq6q7gte6z2spzfid24bjfr2wormmuzxkm2zutstmmq56jndodm')
const rootB = CID.parse('bafybeidpzp6yqtjy4srxz7upmvfdmzsuiyvpncmolslz5k4fmffpypi53i')

async function expectCode (p: Promise<unknown>, code: string): Promise<RecordError> {
  const err = await p.then(() => undefined, (e: unknown) => e)
  expect(err).toBeInstanceOf(RecordError)
  expect((err as RecordError).code).toBe(code)
  return err as RecordError
}

describe('a follower takes records', () => {
  const key = generateSecretKey('builder-1')
  const name = ipnsNameOf(key.publicKey)
  let repo: string
  beforeEach(() => { repo = tmp() })

  it('keeps the newest, and refuses rollbacks even after a restart', async () => {
    const r1 = await signRecord(key.seed, rootA, 1n, HOUR)
    const r2 = await signRecord(key.seed, rootB, 2n, HOUR)
    expect(await acceptRecord(repo, name, r2.bytes)).toBe('newer')
    expect(await acceptRecord(repo, name, r2.bytes)).toBe('same')
    // "Restart": nothing in memory, only what acceptRecord persisted.
    const err = await expectCode(acceptRecord(repo, name, r1.bytes), 'ERR_RECORD_ROLLBACK')
    expect(err.message).toMatch(/older than record 2 already seen/)
    expect((await loadRecord(repo, name))?.root.toString()).toBe(rootB.toString())
  })

  it('refuses a second record with the same sequence', async () => {
    await acceptRecord(repo, name, (await signRecord(key.seed, rootA, 5n, HOUR)).bytes)
    await expectCode(acceptRecord(repo, name, (await signRecord(key.seed, rootB, 5n, HOUR)).bytes), 'ERR_RECORD_CONFLICT')
  })

  it('refuses an expired record, saying who must act', async () => {
    const expired = await signRecord(key.seed, rootA, 1n, 1)
    await new Promise(resolve => setTimeout(resolve, 10))
    const err = await expectCode(acceptRecord(repo, name, expired.bytes), 'ERR_RECORD_EXPIRED')
    expect(err.message).toMatch(/nixipfs republish/)
    expect(await loadRecord(repo, name)).toBeUndefined()
  })

  it('refuses a record signed by another key than the one that names it', async () => {
    const other = generateSecretKey('mallory-1')
    const forged = await signRecord(other.seed, rootB, 99n, HOUR)
    await expectCode(acceptRecord(repo, name, forged.bytes), 'ERR_RECORD_SIGNATURE')
  })

  it('refuses a record whose value is not /ipfs/<cid>, and bytes that are no record', async () => {
    const libp2pKey = await generateKeyPairFromSeed('Ed25519', key.seed)
    for (const value of ['/ipns/k51qzi5uqu5dgo4fu7rlzgx8t7mxvq8mqlfnmkmm55xw6rnurwo21a0momn2pc', '/ipfs/not-a-cid', `/ipfs/${rootA.toString()}/sub`]) {
      const rec = marshalIPNSRecord(await createIPNSRecord(libp2pKey, value, 7n, HOUR))
      await expectCode(acceptRecord(repo, name, rec), 'ERR_RECORD_VALUE')
    }
    await expectCode(acceptRecord(repo, name, randomBytes(100)), 'ERR_RECORD_MALFORMED')
  })
})

describe('a publisher signs sequences', () => {
  it('never reuses a sequence, also after the repo is restored from an old backup', async () => {
    process.env.NIXIPFS_STATE = tmp()
    const key = generateSecretKey('builder-2')
    const name = ipnsNameOf(key.publicKey)
    const repo = tmp()
    const backup = tmp()
    const r1 = await commitRoot(repo, key, rootA, undefined, { recordLifetimeMs: HOUR })
    mkdirSync(join(backup, 'records'))
    copyFileSync(recordPath(repo, name), recordPath(backup, name)) // the backup holds sequence 1
    const r2 = await commitRoot(repo, key, rootB, r1, { recordLifetimeMs: HOUR })
    expect([r1.sequence, r2.sequence]).toEqual([1n, 2n])
    expect(await ledgerSequence(name)).toBe(2n)

    const restored = await loadRecord(backup, name)
    const err = await expectCode(nextSequence(key, restored), 'ERR_RECORD_BEHIND')
    expect(err.message).toMatch(/restored from an old backup.*--continue-sequence/)
    await expectCode(commitRoot(backup, key, rootB, restored, { recordLifetimeMs: HOUR }), 'ERR_RECORD_BEHIND')
    const r3 = await commitRoot(backup, key, rootB, restored, { recordLifetimeMs: HOUR, continueSequence: true })
    expect(r3.sequence).toBe(3n)
  })
})
