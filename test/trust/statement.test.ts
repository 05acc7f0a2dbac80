import { describe, expect, it } from 'vitest'
import { ipnsNameOf } from '../../src/ipfs/ipns.js'
import { generateSecretKey } from '../../src/nix/signing.js'
import { openStatement, signStatement } from '../../src/trust/statement.js'

const verifier = generateSecretKey('verifier-1')
const other = generateSecretKey('other-1')
const name = ipnsNameOf(verifier.publicKey)
const text = signStatement(verifier, {
  storePath: '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-flaky',
  rebuilt: { narHash: 'sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s', narSize: 120 },
  signed: [{ key: 'builder-1', narHash: 'sha256:0c5xbm8a0iz4h1pvvfjx2mcp6rl1wx0l3yzz1lhv6qm42jsm3y8m', narSize: 120 }],
  date: '2026-11-26T00:00:00.000Z'
})

describe('signed dispute statements', () => {
  it('open when signed by the key of the cache that publishes them', () => {
    expect(openStatement(text, name)).toMatchObject({ type: 'nixipfs-dispute-v1', storePath: '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-flaky' })
  })
  it('are refused when altered, published by another cache, signed by another key, or not JSON', () => {
    expect(() => openStatement(text.replace('"narSize": 120', '"narSize": 121'), name)).toThrow(/bad signature/)
    expect(() => openStatement(text, ipnsNameOf(other.publicKey))).toThrow(/names another key/)
    const parsed = JSON.parse(text)
    const forged = JSON.stringify({ ...parsed, sig: JSON.parse(signStatement(other, parsed.statement)).sig })
    expect(() => openStatement(forged, name)).toThrow(/bad signature/)
    expect(() => openStatement('{', name)).toThrow(/not JSON/)
    expect(() => openStatement('{"statement":{}}', name)).toThrow(/malformed/)
  })
})
