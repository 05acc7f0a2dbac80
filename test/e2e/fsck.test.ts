import { execFileSync } from 'node:child_process'
import { appendFileSync, cpSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { RAW_CODE } from '../../src/ipfs/block.js'
import type { Location } from '../../src/ipfs/digest-index.js'
import { encodeRecord, packName } from '../../src/ipfs/pack-format.js'
import { PackStore } from '../../src/ipfs/pack-store.js'
import { runCli, runCliAsync, startGatewayProcess, tmp, type GatewayProcess } from '../helpers/cli.js'
import { serveFiles } from '../helpers/http.js'
import { nix, nixAvailable, nixBuild, nixDump, shellDerivation } from '../helpers/nix.js'

describe.runIf(nixAvailable)('nixipfs fsck', () => {
  let path: string
  let builder: string
  let pub: string
  let peer: GatewayProcess | undefined
  let gw: GatewayProcess | undefined
  /** two NAR leaves of the builder's repo: one to corrupt, one whose record is made to point past its pack's end */
  let leaves: Array<{ cid: string, loc: Location, digest: Uint8Array }>

  beforeAll(async () => {
    ;[path] = nixBuild(shellDerivation(`fsck-${Date.now()}-${process.pid}`, 'head -c 3000000 /dev/urandom > $out')) as [string]
    builder = tmp()
    expect(runCli(['publish', '--repo', builder, path]).status).toBe(0)
    pub = readFileSync(join(builder, 'keys', 'cache.public'), 'utf8').trim()
    const blocks = await PackStore.openRepo(builder)
    leaves = []
    for await (const { cid, loc } of blocks.records()) {
      if (cid.code === RAW_CODE && loc.length > 100_000 && leaves.length < 2) leaves.push({ cid: cid.toString(), loc, digest: cid.multihash.digest })
    }
    await blocks.close()
    expect(leaves).toHaveLength(2)
    peer = await startGatewayProcess(['--repo', builder]) // another gateway serving the same blocks
  })
  afterAll(async () => {
    await gw?.stop()
    await peer?.stop()
  })

  /** A copy of the builder's repo with one leaf's bytes flipped in its pack and the other's record pointing past the pack's end. */
  function damagedCopy (): { repo: string, flipped: string, lost: string } {
    const repo = tmp()
    cpSync(builder, repo, { recursive: true })
    const [flipped, lost] = leaves as [typeof leaves[0], typeof leaves[0]]
    const pack = join(repo, 'packs', packName(flipped.loc.pack))
    const bytes = readFileSync(pack)
    bytes[flipped.loc.offset + 1000]! ^= 0xff
    writeFileSync(pack, bytes)
    appendFileSync(join(repo, 'packs', 'index.log'), encodeRecord(lost.digest, { ...lost.loc, offset: bytes.length + 4096 }))
    return { repo, flipped: flipped.cid, lost: lost.cid }
  }

  it('repairs in one go from a peer: drops both records and fetches both blocks again', () => {
    const { repo } = damagedCopy()
    const repair = runCli(['fsck', '--repo', repo, '--repair', '--http-gateway', peer!.url])
    expect(repair.status, repair.stdout + repair.stderr).toBe(0)
    expect(repair.stdout).toMatch(/repaired: dropped 2 damaged block record\(s\); fetched 2 block\(s\) again from peers/)
    expect(runCli(['fsck', '--repo', repo]).stdout).toMatch(/no damage found/)
  })

  it('finds a corrupt block and a record past the end of its pack; --repair fetches them from a peer and the NAR serves again', async () => {
    const { repo, flipped, lost } = damagedCopy()
    const check = runCli(['fsck', '--repo', repo])
    const said = check.stdout + check.stderr
    console.log(said); expect(check.status, said).toBe(1)
    expect(said).toContain(`damaged block ${flipped}: its bytes in`)
    expect(said).toMatch(new RegExp(`damaged block ${lost}: its record points past the end of ${packName(leaves[1]!.loc.pack)}`))
    expect(said).toContain(`damaged nar ${path}`)
    expect(said).toContain('[ERR_REPO_DAMAGED]')

    const offline = runCli(['fsck', '--repo', repo, '--repair'])
    expect(offline.status).toBe(1) // the records are dropped, but nothing can bring the blocks back
    expect(offline.stdout + offline.stderr).toMatch(/dropped 2 damaged block record\(s\); fetched 0/)

    const repair = runCli(['fsck', '--repo', repo, '--repair', '--http-gateway', peer!.url])
    console.log(offline.stdout + offline.stderr, repair.stdout + repair.stderr); expect(repair.status, repair.stdout + repair.stderr).toBe(0)
    expect(repair.stdout + repair.stderr).toMatch(/repaired: dropped 0 damaged block record\(s\); fetched [1-9]\d* block\(s\) again from peers/)
    expect(repair.stdout + repair.stderr).toMatch(/no damage left/)
    const again = runCli(['fsck', '--repo', repo])
    expect(again.status, again.stdout + again.stderr).toBe(0)
    expect(again.stdout).toMatch(/no damage found/)

    gw = await startGatewayProcess(['--repo', repo])
    const store = tmp()
    const copy = nix(['copy', '--from', gw.url, '--to', store, path, '--option', 'trusted-public-keys', pub], { allowFail: true })
    expect(copy.status, copy.stderr).toBe(0)
    expect(Buffer.compare(nixDump(join(store, path)), nixDump(path))).toBe(0)
  })

  it('--repair --upstream imports a damaged NAR again from an HTTP binary cache, checked against the own NarHash', async () => {
    const dir = tmp()
    const secret = join(dir, 'upstream.secret')
    execFileSync('nix-store', ['--generate-binary-cache-key', 'upstream-1', secret, join(dir, 'upstream.public')])
    nix(['copy', '--to', `file://${join(dir, 'cache')}?compression=xz&secret-key=${secret}`, path])
    const upstream = await serveFiles(join(dir, 'cache'), new Map())
    try {
      const { repo } = damagedCopy()
      const repair = await runCliAsync(['fsck', '--repo', repo, '--repair', '--upstream', upstream.url])
      expect(repair.status, repair.stdout + repair.stderr).toBe(0)
      expect(repair.stdout).toMatch(/repaired: dropped 2 damaged block record\(s\); fetched 0 block\(s\) again from peers; imported 1 NAR\(s\) again from upstreams/)
      expect(runCli(['fsck', '--repo', repo]).stdout).toMatch(/no damage found/)
    } finally {
      upstream.server.close()
    }
  })
})
