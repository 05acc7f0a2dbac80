import { readdirSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { ipnsNameOf } from '../../src/ipfs/ipns.js'
import { generateSecretKey, type SecretKey } from '../../src/nix/signing.js'
import { heardDir } from '../../src/repo-layout.js'
import { HeardStatements, listHeard } from '../../src/trust/heard.js'
import { signStatement } from '../../src/trust/statement.js'
import { tmp } from '../helpers/cli.js'

const PATH = '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-hello-2.12'
const HASH = 'sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s'
const statement = (key: SecretKey, date: string, path = PATH): string => signStatement(key, { storePath: path, rebuilt: { narHash: HASH, narSize: 1000 }, signed: [], date })
const files = (repo: string): string[] => readdirSync(heardDir(repo))

describe('statements heard from the network', () => {
  const trusted = generateSecretKey('verifier')
  const keep = (name: string): boolean => name === ipnsNameOf(trusted.publicKey)

  it('keeps one statement per signer and path: the same again or an older one is known, a newer one replaces it', async () => {
    const repo = tmp()
    const heard = await HeardStatements.open(repo, keep)
    expect(await heard.offer(statement(trusted, '2026-01-02T00:00:00.000Z'))).toBe('new')
    expect(await heard.offer(statement(trusted, '2026-01-02T00:00:00.000Z'))).toBe('known')
    expect(await heard.offer(statement(trusted, '2026-01-01T00:00:00.000Z'))).toBe('known')
    expect(await heard.offer(statement(trusted, '2026-01-03T00:00:00.000Z'))).toBe('new')
    expect(files(repo)).toHaveLength(1)
    expect((await listHeard(repo)).map(h => h.statement.date)).toEqual(['2026-01-03T00:00:00.000Z'])
    expect(heard.votes('0123456789abcdfghijklmnpqrsvwxyz')).toEqual([{ key: `verifier:${Buffer.from(trusted.publicKey).toString('base64')}`, storePath: PATH, narHash: HASH, narSize: 1000 }])
    expect(heard.votes('1123456789abcdfghijklmnpqrsvwxyz')).toEqual([])
  })

  it('refuses a forged or malformed statement and writes nothing', async () => {
    const repo = tmp()
    const heard = await HeardStatements.open(repo, keep)
    const forged = statement(trusted, '2026-01-02T00:00:00.000Z').replace('"narSize": 1000', '"narSize": 1001')
    await expect(heard.offer(forged)).rejects.toMatchObject({ code: 'ERR_STATEMENT' })
    await expect(heard.offer('{"statement": {"by": "x"}}')).rejects.toMatchObject({ code: 'ERR_INVALID_KEY' })
    await expect(heard.offer(statement(trusted, '2026-01-02T00:00:00.000Z', '/nix/store/../../etc/passwd'))).rejects.toMatchObject({ code: 'ERR_INVALID_STORE_PATH' })
    expect(files(repo)).toHaveLength(0)
  })

  it('a flood of valid statements by fresh keys keeps at most maxOthers of them, the most recently heard, and every one by a kept key', async () => {
    const repo = tmp()
    const heard = await HeardStatements.open(repo, keep, 10)
    expect(await heard.offer(statement(trusted, '2026-01-02T00:00:00.000Z'))).toBe('new')
    const junk = Array.from({ length: 40 }, (_, i) => statement(generateSecretKey(`junk-${i}`), '2026-01-02T00:00:00.000Z'))
    for (const text of junk) expect(await heard.offer(text)).toBe('new')
    expect(files(repo)).toHaveLength(11)
    expect(heard.texts()[0]).toContain('"by": "verifier:')
    expect(heard.texts().slice(1)).toEqual(junk.slice(-10).reverse())
    // Kept over a restart, and cut to a smaller bound.
    const reopened = await HeardStatements.open(repo, keep, 3)
    expect(files(repo)).toHaveLength(4)
    expect(reopened.texts().slice(1)).toEqual(junk.slice(-3).reverse())
  })
})
