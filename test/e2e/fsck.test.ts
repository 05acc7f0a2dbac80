import { execFileSync } from 'node:child_process'
import { appendFileSync, chmodSync, cpSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { RAW_CODE } from '../../src/ipfs/block.js'
import type { Location } from '../../src/ipfs/digest-index.js'
import { encodeRecord, packName } from '../../src/ipfs/pack-format.js'
import { PackStore } from '../../src/ipfs/pack-store.js'
import { runCli, runCliAsync, startGatewayProcess, tmp, type GatewayProcess } from '../helpers/cli.js'
import { serveFiles } from '../helpers/http.js'
import { nix, nixAvailable, nixBuild, nixDump, shellDerivation } from '../helpers/nix.js'

// The peer and upstream repairs are of a path gone from the local Nix store
// (there it would be taken back from the store first); the store repair is of
// a path still there.
describe.runIf(nixAvailable)('nixipfs fsck', () => {
  let path: string
  /** the NAR of `path`, dumped before it was deleted from the local Nix store */
  let nar: Buffer
  /** an HTTP binary cache holding `path` */
  let upstreamCache: string
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
    leaves = await leavesOf(builder)
    expect(leaves).toHaveLength(2)
    const dir = tmp()
    const secret = join(dir, 'upstream.secret')
    execFileSync('nix-store', ['--generate-binary-cache-key', 'upstream-1', secret, join(dir, 'upstream.public')])
    upstreamCache = join(dir, 'cache')
    nix(['copy', '--to', `file://${upstreamCache}?compression=xz&secret-key=${secret}`, path])
    nar = nixDump(path)
    execFileSync('nix-store', ['--delete', path], { stdio: 'ignore' })
    peer = await startGatewayProcess(['--repo', builder]) // another gateway serving the same blocks
  })
  afterAll(async () => {
    await gw?.stop()
    await peer?.stop()
  })

  /** The first two large NAR leaves of a repo's blocks, with their records. */
  async function leavesOf (repo: string): Promise<typeof leaves> {
    const blocks = await PackStore.openRepo(repo)
    const out: typeof leaves = []
    for await (const { cid, loc } of blocks.records()) {
      if (cid.code === RAW_CODE && loc.length > 100_000 && out.length < 2) out.push({ cid: cid.toString(), loc, digest: cid.multihash.digest })
    }
    await blocks.close()
    return out
  }

  /** A copy of a repo (the builder's) with one leaf's bytes flipped in its pack and the other's record pointing past the pack's end. */
  function damagedCopy (source = builder, of = leaves): { repo: string, flipped: string, lost: string } {
    const repo = tmp()
    cpSync(source, repo, { recursive: true })
    const [flipped, lost] = of as [typeof leaves[0], typeof leaves[0]]
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
    expect(Buffer.compare(nixDump(join(store, path)), nar)).toBe(0)
  })

  it('--repair --upstream imports a damaged NAR again from an HTTP binary cache, checked against the own NarHash', async () => {
    const upstream = await serveFiles(upstreamCache, new Map())
    try {
      const { repo } = damagedCopy()
      const repair = await runCliAsync(['fsck', '--repo', repo, '--repair', '--upstream', upstream.url])
      expect(repair.status, repair.stdout + repair.stderr).toBe(0)
      expect(repair.stdout).toMatch(/repaired: dropped 2 damaged block record\(s\); fetched 0 block\(s\) again from peers; took 0 NAR\(s\) back from the local Nix store; imported 1 NAR\(s\) again from upstreams/)
      expect(runCli(['fsck', '--repo', repo]).stdout).toMatch(/no damage found/)
    } finally {
      upstream.server.close()
    }
  })

  it('--repair takes a damaged NAR of the own cache back from the local Nix store, where the path still is', async () => {
    const [kept] = nixBuild(shellDerivation(`fsck-kept-${Date.now()}-${process.pid}`, 'head -c 3000000 /dev/urandom > $out')) as [string]
    try {
      await takenBackFromStore(kept)
    } finally {
      execFileSync('nix-store', ['--delete', kept], { stdio: 'ignore' })
    }
  })

  /** Damages a cache of `kept` twice: repaired from the store as it is, not repaired from a store copy altered on disk. */
  async function takenBackFromStore (kept: string): Promise<void> {
    const source = tmp()
    expect(runCli(['publish', '--repo', source, kept]).status).toBe(0)
    const { repo } = damagedCopy(source, await leavesOf(source))
    expect(runCli(['fsck', '--repo', repo]).stdout).toContain(`damaged nar ${kept}`)
    const repair = runCli(['fsck', '--repo', repo, '--repair'])
    expect(repair.status, repair.stdout + repair.stderr).toBe(0)
    expect(repair.stdout).toMatch(/repaired: dropped 2 damaged block record\(s\); fetched 0 block\(s\) again from peers; took 1 NAR\(s\) back from the local Nix store/)
    const again = runCli(['fsck', '--repo', repo])
    expect(again.status, again.stdout + again.stderr).toBe(0)
    expect(again.stdout).toMatch(/no damage found/)

    // A copy in the store that is not what the narinfo says (altered on disk) is not taken.
    const { repo: other } = damagedCopy(source, await leavesOf(source))
    chmodSync(kept, 0o644)
    const bytes = readFileSync(kept)
    bytes[12345]! ^= 0xff
    writeFileSync(kept, bytes)
    const refused = runCli(['fsck', '--repo', other, '--repair'])
    expect(refused.status, refused.stdout + refused.stderr).toBe(1)
    expect(refused.stdout + refused.stderr).toContain(`damaged nar ${kept}`)
  }
})
