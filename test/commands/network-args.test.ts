import { describe, expect, it } from 'vitest'
import { networkOptionsOf } from '../../src/commands/network-args.js'
import { PUBLIC_BOOTSTRAP } from '../../src/net/bootstrap.js'

const PEER = '/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWNiw5Z7A9Vr5st5eHExziDsMF381RHibxEPDL56rW4iFJ'

describe('--bootstrap', () => {
  it('is repeatable and joins no network when absent', () => {
    expect(networkOptionsOf({}, []).bootstrap).toEqual([])
    expect(networkOptionsOf({}, ['--bootstrap', PEER, '--bootstrap', PEER.replace('4001', '4002')]).bootstrap).toEqual([PEER, PEER.replace('4001', '4002')])
    expect(networkOptionsOf({}, []).listen).toEqual(['/ip4/127.0.0.1/tcp/4001'])
  })

  it('"public" names the public IPFS bootstrap peers and drops private addresses from the DHT', () => {
    const o = networkOptionsOf({}, ['--bootstrap', 'public'])
    expect(o.bootstrap).toEqual(PUBLIC_BOOTSTRAP)
    expect(o.publicNetwork).toBe(true)
    expect(networkOptionsOf({}, ['--bootstrap', PEER]).publicNetwork).toBe(false)
  })

  it('refuses an address without a peer id, and --offline with it', () => {
    expect(() => networkOptionsOf({}, ['--bootstrap', '/ip4/127.0.0.1/tcp/4001'])).toThrow(/--bootstrap takes a multiaddr ending in \/p2p\/<peer id>/)
    expect(() => networkOptionsOf({ offline: true }, ['--bootstrap', PEER])).toThrow(/--offline/)
  })
})
