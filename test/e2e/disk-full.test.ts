import { execFileSync, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runCli, runCliAsync, startGatewayProcess, startNodeProcess, tmp, type GatewayProcess } from '../helpers/cli.js'
import { serveFiles } from '../helpers/http.js'
import { RAW_CODE, cidOf } from '../../src/ipfs/block.js'
import { PackStore } from '../../src/ipfs/pack-store.js'
import { nix, nixAvailable, nixBuild, nixDump, shellDerivation } from '../helpers/nix.js'

/** Mounting needs root (tests run as root); elsewhere this file is skipped unless under CI. */
const canMount = process.getuid?.() === 0 || process.env.CI === 'true'

/** A tmpfs of `size` mounted on a fresh directory; unmounted by `unmount`. */
function mountTmpfs (size: string): string {
  const dir = tmp('nixipfs-tmpfs-')
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir])
  return dir
}

function unmount (dir: string | undefined): void {
  if (dir === undefined) return
  // Lazy: a process the test failed to stop must not keep the mount forever.
  if (spawnSync('umount', [dir]).status !== 0) spawnSync('umount', ['-l', dir])
}

describe.runIf(nixAvailable && canMount)('a full disk', () => {
  let mnt: string | undefined
  let gw: GatewayProcess | undefined
  const mounts: string[] = []
  const nodes: GatewayProcess[] = []
  let paths: { tiny: string, small1: string, big: string, small2: string }
  let repo: string

  beforeAll(() => {
    const salt = `${Date.now()}-${process.pid}`
    const out = nixBuild(`[
      (${shellDerivation(`disk-tiny-${salt}`, 'echo tiny > $out')})
      (${shellDerivation(`disk-small1-${salt}`, 'head -c 2000000 /dev/urandom > $out')})
      (${shellDerivation(`disk-big-${salt}`, 'head -c 25000000 /dev/urandom > $out')})
      (${shellDerivation(`disk-small2-${salt}`, 'head -c 2000000 /dev/urandom > $out')})
    ]`)
    const [tiny, small1, big, small2] = out as [string, string, string, string]
    paths = { tiny, small1, big, small2 }
    mnt = mountTmpfs('20m')
    mounts.push(mnt)
    repo = join(mnt, 'repo')
  })
  afterAll(async () => {
    await gw?.stop()
    for (const n of nodes) await n.stop()
    for (const m of mounts) unmount(m)
  })

  // Found by an outside test: a read-only file system was reported as a failing disk, with advice to run fsck.
  it('a read-only file system: a write says it is one (ERR_DISK_READ_ONLY), not a disk to check; a repo on one is still read and served', async () => {
    const ro = tmp('nixipfs-ro-')
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', ro])
    mounts.push(ro)
    const r = runCli(['publish', '--repo', join(ro, 'repo'), paths.tiny])
    expect(r.status).toBe(1)
    expect(r.stderr + r.stdout).toMatch(new RegExp(`the file system holding ${ro}/repo is read-only \\(EROFS\\)\\. Nothing was changed; mount it read-write or choose another place.*\\[ERR_DISK_READ_ONLY\\]`))
    expect(r.stderr + r.stdout).not.toMatch(/fsck/)
    // keygen whose public key cannot be written leaves no secret key behind (one did, and the next keygen refused to overwrite it).
    const dir = tmp()
    const k = runCli(['keygen', 'half', '--secret-key-file', join(dir, 'k.sec'), '--public-key-file', join(ro, 'k.pub')])
    expect(k.status).toBe(1)
    expect(k.stderr + k.stdout).toMatch(new RegExp(`the file system holding ${ro}/k\\.pub is read-only \\(EROFS\\).*\\[ERR_DISK_READ_ONLY\\]`))
    expect(existsSync(join(dir, 'k.sec'))).toBe(false)
    // A repo on read-only media is still read: listed, checked, exported (all refused it).
    const media = mountTmpfs('4m')
    mounts.push(media)
    expect(runCli(['publish', '--repo', join(media, 'repo'), paths.tiny]).status).toBe(0)
    execFileSync('mount', ['-o', 'remount,ro', media])
    const ls = runCli(['ls', '--repo', join(media, 'repo')])
    expect(ls.status, ls.stderr).toBe(0)
    expect(ls.stdout).toContain(paths.tiny)
    const check = runCli(['fsck', '--repo', join(media, 'repo')])
    expect(check.status, check.stderr).toBe(0)
    expect(check.stdout + check.stderr).toMatch(/no damage found/)
    const dry = runCli(['gc', '--dry-run', '--repo', join(media, 'repo')])
    expect(dry.status, dry.stderr).toBe(0)
    expect(dry.stdout + dry.stderr).toMatch(/dry run: nothing was changed/)
    // Found by an outside test: a gateway over it failed on the folder for dispute statements, then on its libp2p key.
    const gw = await startGatewayProcess(['--repo', join(media, 'repo')])
    try {
      const pub = readFileSync(join(media, 'repo', 'keys', 'cache.public'), 'utf8').trim()
      const store = tmp()
      const copy = nix(['copy', '--from', gw.url, '--to', store, paths.tiny, '--option', 'trusted-public-keys', pub], { allowFail: true })
      expect(copy.status, copy.stderr).toBe(0)
      expect(Buffer.compare(nixDump(paths.tiny), nixDump(join(store, paths.tiny)))).toBe(0)
      // Offline, its libp2p identity (not stored: it is read-only) is only a name, so nothing is said of it.
      expect(gw.output()).not.toMatch(/lasts for this run only/)
    } finally {
      await gw.stop()
    }
  })

  // Found by an outside test: the advice on a full disk was `nixipfs gc`, which then failed for the same want of space.
  it('gc on a full disk says it needs room for what it keeps, changes nothing, and works once there is room', async () => {
    const disk = mountTmpfs('4m')
    mounts.push(disk)
    const r = join(disk, 'repo')
    expect(runCli(['publish', '--repo', r, paths.tiny]).status).toBe(0)
    const blocks = await PackStore.openRepo(r)
    for (let i = 0; i < 8; i++) { const bytes = randomBytes(100_000); await blocks.put(cidOf(RAW_CODE, bytes), bytes) }
    const before = blocks.size
    await blocks.close()
    spawnSync('dd', ['if=/dev/zero', `of=${join(disk, 'filler')}`, 'bs=64k'])
    const full = runCli(['gc', '--repo', r])
    expect(full.status).toBe(1)
    expect(full.stderr + full.stdout).toMatch(/is full \(ENOSPC\): it needed about [\d.]+ (B|KiB), [\d.]+ (B|KiB) were free\. Nothing a record reaches was changed; gc copies the [\d.]+ (B|KiB) it keeps before it frees the rest, so free that much on this disk first .*\[ERR_DISK_FULL\]/)
    const after = await PackStore.openRepo(r)
    expect(after.size).toBe(before)
    await after.close()
    rmSync(join(disk, 'filler'))
    const gc = runCli(['gc', '--repo', r])
    expect(gc.status, gc.stderr).toBe(0)
    expect(Number(/dropped: +(\d+) blocks/.exec(gc.stdout)?.[1])).toBeGreaterThanOrEqual(8)
  })

  it('fails with ERR_DISK_FULL, changes nothing a record reaches, and the next publish after space is freed serves byte for byte', async () => {
    const first = runCli(['publish', '--repo', repo, paths.tiny, paths.small1])
    expect(first.status, first.stderr).toBe(0)

    const full = runCli(['publish', '--repo', repo, paths.big])
    expect(full.status).toBe(1)
    expect(full.stderr).toMatch(/\[ERR_DISK_FULL\]/)
    expect(full.stderr).toContain(`the disk holding ${repo} is full (ENOSPC): it needed about 23.8 MiB`) // the NAR of the 25 MB path
    expect(full.stderr).not.toMatch(/^\s+at /m) // no stack trace

    execFileSync('mount', ['-o', 'remount,size=150m', mnt!])
    const second = runCli(['publish', '--repo', repo, paths.big, paths.small2])
    expect(second.status, second.stderr).toBe(0)
    expect(second.stdout + second.stderr).toMatch(/sequence 2\)/)

    gw = await startGatewayProcess(['--repo', repo])
    const store = tmp()
    const pub = readFileSync(join(repo, 'keys', 'cache.public'), 'utf8').trim()
    const all = Object.values(paths)
    const copy = nix(['copy', '--from', gw.url, '--to', store, ...all, '--option', 'trusted-public-keys', pub], { allowFail: true })
    expect(copy.status, `${copy.stderr}\n${gw.output()}`).toBe(0)
    for (const p of all) expect(Buffer.compare(nixDump(join(store, p)), nixDump(p))).toBe(0)
    await gw.stop()
    gw = undefined

    const fsck = runCli(['fsck', '--repo', repo])
    expect(fsck.status, fsck.stderr).toBe(0)
    expect(fsck.stdout + fsck.stderr).toMatch(/no damage found/)
  })

  it('a mirror that runs out of space keeps running, says why, and pins everything once there is space', async () => {
    const builder = tmp()
    expect(runCli(['publish', '--repo', builder, paths.tiny, paths.small1, paths.small2]).status).toBe(0)
    const pub = readFileSync(join(builder, 'keys', 'cache.public'), 'utf8').trim()
    const source = await startGatewayProcess(['--repo', builder])
    nodes.push(source)
    const small = mountTmpfs('3m') // less than the 4 MB the mirror must keep
    mounts.push(small)
    const mirror = await startNodeProcess('mirror', ['--repo', join(small, 'repo'), '--follow', pub, '--http-gateway', source.url, '--follow-interval', '1'])
    nodes.push(mirror)
    expect(await mirror.waitForLog(/fetching root \S+ failed: the disk holding .* is full/, 30_000)).toMatch(/is full \(ENOSPC\)/)
    expect(mirror.child.exitCode).toBeNull()
    expect(mirror.output()).not.toMatch(/pinned root/)
    expect(mirror.output()).not.toMatch(/^\s+at /m) // no stack trace

    execFileSync('mount', ['-o', 'remount,size=150m', small])
    expect(await mirror.waitForLog(/pinned root/, 30_000)).toMatch(/pinned root/)
    const store = tmp()
    const wanted = [paths.tiny, paths.small1, paths.small2]
    const copy = nix(['copy', '--from', mirror.url, '--to', store, ...wanted, '--option', 'trusted-public-keys', pub], { allowFail: true })
    expect(copy.status, copy.stderr).toBe(0)
    for (const p of wanted) expect(Buffer.compare(nixDump(join(store, p)), nixDump(p))).toBe(0)
    await mirror.stop()
    const fsck = runCli(['fsck', '--repo', join(small, 'repo')])
    expect(fsck.status, fsck.stdout + fsck.stderr).toBe(0)
    expect(fsck.stdout).toMatch(/no damage found/)
  })

  it('an import that runs out of space fails with ERR_DISK_FULL, records nothing, and completes once there is space', async () => {
    const dir = tmp()
    const secret = join(dir, 'upstream.secret')
    execFileSync('nix-store', ['--generate-binary-cache-key', 'upstream-1', secret, join(dir, 'upstream.public')])
    const upstreamKey = readFileSync(join(dir, 'upstream.public'), 'utf8').trim()
    const cache = join(dir, 'cache')
    nix(['copy', '--to', `file://${cache}?compression=none&secret-key=${secret}`, paths.small1, paths.small2])
    const upstream = await serveFiles(cache, new Map())
    try {
      const small = mountTmpfs('3m') // less than the 4 MB of the two NARs
      mounts.push(small)
      const repo = join(small, 'repo')
      const full = await runCliAsync(['import', '--repo', repo, '--from', upstream.url, '--trust', upstreamKey, paths.small1, paths.small2])
      expect(full.status).toBe(1)
      expect(full.stderr).toMatch(new RegExp(`the disk holding ${repo} is full \\(ENOSPC\\): it needed about 3\\.8 MiB.*\\[ERR_DISK_FULL\\]`))
      expect(full.stderr).not.toMatch(/^\s+at /m)
      expect(existsSync(join(repo, 'records'))).toBe(false) // no record was signed
      execFileSync('mount', ['-o', 'remount,size=150m', small])
      const again = await runCliAsync(['import', '--repo', repo, '--from', upstream.url, '--trust', upstreamKey, paths.small1, paths.small2])
      expect(again.status, again.stderr).toBe(0)
      const node = await startGatewayProcess(['--repo', repo])
      nodes.push(node)
      const store = tmp()
      const copy = nix(['copy', '--from', node.url, '--to', store, paths.small1, paths.small2, '--option', 'trusted-public-keys', upstreamKey], { allowFail: true })
      expect(copy.status, copy.stderr).toBe(0)
      for (const p of [paths.small1, paths.small2]) expect(Buffer.compare(nixDump(join(store, p)), nixDump(p))).toBe(0)
      await node.stop()
      expect(runCli(['fsck', '--repo', repo]).stdout).toMatch(/no damage found/)
    } finally {
      upstream.server.close()
    }
  })
})
