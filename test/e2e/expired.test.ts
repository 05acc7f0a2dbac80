import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadRecord } from '../../src/cache/records.js'
import { ipnsNameOf, signRecord } from '../../src/ipfs/ipns.js'
import { formatPublicKey, generateSecretKey, publicKeyOf } from '../../src/nix/signing.js'
import { parseStorePath } from '../../src/nix/store-path.js'
import { fakePath, signedCache } from '../helpers/cache.js'
import { runAsync, startGatewayProcess, tmp, type GatewayProcess } from '../helpers/cli.js'
import { hostilePeer } from '../helpers/http.js'
import { nixAvailable } from '../helpers/nix.js'
import { narOf } from '../nix/fixtures.js'

// A followed cache whose record expired (past its grace period) cannot be
// served right now: Nix must get a 503, not a 404 it would cache for an hour
// (narinfo-cache-negative-ttl), so it succeeds once the builder republished.

describe.runIf(nixAvailable)('a followed cache whose record expired', () => {
  const key = generateSecretKey('expiring-1')
  const pub = formatPublicKey(publicKeyOf(key))
  const name = ipnsNameOf(key.publicKey)
  const path = fakePath('expiring')
  const absent = fakePath('never-published')
  const repo = tmp()
  /** what the peer answers for the record: nothing (an outage) until the builder republishes */
  let offer: Buffer | undefined
  let peer: { url: string, close: () => void }
  let gw: GatewayProcess

  beforeAll(async () => {
    // The follower already holds the cache (index and NAR) under a record that expires in a second.
    await signedCache(repo, key, [{ path, nar: narOf('nix-archive-1', '(', 'type', 'regular', 'contents', `expiring ${Date.now()}\n`, ')') }], 1000)
    await new Promise(resolve => setTimeout(resolve, 1500))
    peer = await hostilePeer('http://127.0.0.1:1', async p => {
      if (p.startsWith('/ipns/') && offer !== undefined) return { body: offer }
      throw Object.assign(new Error('outage'), { status: 504 })
    })
    gw = await startGatewayProcess(['--repo', repo, '--follow', pub, '--http-gateway', peer.url, '--follow-interval', '1', '--expired-grace-hours', '0'])
  })

  afterAll(async () => {
    await gw?.stop()
    peer?.close()
  })

  it('answers 503 with the reason for a path it has, 404 for one it has not, and Nix succeeds once a fresh record arrives', async () => {
    const narinfo = `${gw.url}/${parseStorePath(path).hash}.narinfo`
    const r = await fetch(narinfo)
    expect(r.status).toBe(503)
    expect(await r.text()).toMatch(/expired at .* grace period is over/)
    expect((await fetch(`${gw.url}/${parseStorePath(absent).hash}.narinfo`)).status).toBe(404)

    // Real Nix asks during the outage, with its narinfo disk cache kept across both attempts.
    const cache = tmp()
    const copy = async (): Promise<{ status: number, stderr: string }> => await runAsync('nix', ['--extra-experimental-features', 'nix-command', 'copy', '--from', gw.url, '--to', tmp(), path,
      '--option', 'trusted-public-keys', pub, '--option', 'substituters', ''], { XDG_CACHE_HOME: cache })
    const during = await copy()
    expect(during.status).not.toBe(0)
    expect(during.stderr).toMatch(/503/)

    // The builder republishes; the follower takes the fresh record from the peer.
    const current = (await loadRecord(repo, name))!
    offer = Buffer.from((await signRecord(key.seed, current.root, current.sequence + 1n, 3600_000)).bytes)
    await gw.waitForLog(/record 2 from/, 10_000)
    await expect.poll(async () => (await fetch(narinfo)).status, { timeout: 5_000 }).toBe(200)
    const after = await copy()
    expect(after.stderr).not.toMatch(/error/)
    expect(after.status).toBe(0)
  })

  it('answers 503, not 404, while no record of a followed cache has arrived yet', async () => {
    const unknown = formatPublicKey(publicKeyOf(generateSecretKey('not-yet-1')))
    const waiting = await startGatewayProcess(['--repo', tmp(), '--follow', unknown, '--http-gateway', peer.url])
    try {
      const r = await fetch(`${waiting.url}/${parseStorePath(path).hash}.narinfo`)
      expect(r.status).toBe(503)
      expect(await r.text()).toMatch(/no record .* yet/)
    } finally {
      await waiting.stop()
    }
  })
})
