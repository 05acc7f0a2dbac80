import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { readFileSync, statSync } from 'node:fs'
import type { ServerResponse } from 'node:http'
import { join } from 'node:path'
import type { CID } from 'multiformats/cid'
import { describe, expect, it } from 'vitest'
import { listNarInfos, openIndex } from '../../src/cache/index.js'
import { loadRecord } from '../../src/cache/records.js'
import { loadRecordBytes, recordPath } from '../../src/repo-layout.js'
import { BlockNotFoundError } from '../../src/errors.js'
import { checkBlock } from '../../src/ipfs/block.js'
import { walkDag } from '../../src/ipfs/dag.js'
import { readFile as readDagFile } from '../../src/ipfs/file-dag.js'
import { ipnsNameOf } from '../../src/ipfs/ipns.js'
import { INDEX_FILE, RECORD_BYTES } from '../../src/ipfs/pack-format.js'
import { PackStore } from '../../src/ipfs/pack-store.js'
import { NarHasher } from '../../src/nix/hash.js'
import { parsePublicKey } from '../../src/nix/signing.js'
import { parseStoreBaseName, parseStorePath } from '../../src/nix/store-path.js'
import { expectCacheIntact } from '../helpers/cache.js'
import { BIN, runCli, runCliAsync, startGatewayProcess, tmp, type GatewayProcess } from '../helpers/cli.js'
import { serveFiles } from '../helpers/http.js'
import { nix, nixAsync, nixAvailable, nixBuild, nixDump, shellDerivation } from '../helpers/nix.js'

/** Kill runs per test; bench/soak.mjs sets NIXIPFS_CRASH_RUNS=25. */
const RUNS = Number(process.env.NIXIPFS_CRASH_RUNS ?? 6)
/** Per-test timeout: the default RUNS take well under a minute each; a soak gets time in proportion. */
const TIMEOUT_MS = 60_000 + RUNS * 15_000

/** Kill runs of a mirror test on one repo before it starts over with a fresh one. */
const ROUND = 6

const random = (n: number): number => Math.floor(Math.random() * n)

let built: { top: string, closure: string[] } | undefined
/**
 * Four paths of 25 MB each (and a top path naming them), built by real Nix
 * once per file, so a publish, import or mirror runs long enough to be cut
 * anywhere. Each test uses its own repos; only the store paths are shared.
 */
function crashClosure (): { top: string, closure: string[] } {
  if (built === undefined) {
    const salt = `${Date.now()}-${process.pid}`
    const parts = [0, 1, 2, 3].map(i => shellDerivation(`crash-${i}-${salt}`, 'mkdir -p $out; head -c 25000000 /dev/urandom > $out/data; cp /bin/sh $out/sh'))
    const [top] = nixBuild(`let ${parts.map((p, i) => `p${i} = ${p};`).join(' ')} in ${shellDerivation(`crash-top-${salt}`, 'echo ${p0} ${p1} ${p2} ${p3} > $out')}`) as [string]
    const closure = execFileSync('nix-store', ['-qR', top], { encoding: 'utf8' }).trim().split('\n')
    built = { top, closure }
  }
  return built
}

/** Every narinfo of the repo's current record has its NAR, complete and matching its NarHash. */
async function checkRepo (repo: string, name: string): Promise<{ sequence: bigint, entries: number }> {
  const blocks = await PackStore.openRepo(repo)
  try {
    const record = await loadRecord(repo, name)
    if (record === undefined) return { sequence: 0n, entries: 0 }
    const entries = await expectCacheIntact(blocks, record.root)
    return { sequence: record.sequence, entries }
  } finally {
    await blocks.close()
  }
}

/** What the repo's current record for a name holds. */
interface RepoState {
  sequence: bigint
  root?: string
  entries: number
  /** store path hashes with a narinfo */
  paths: Set<string>
  /** what is wrong, one line each: a NAR missing, short or not its NarHash, a reference the cache lacks, an unreadable index */
  corrupt: string[]
}

/**
 * Like checkRepo, but lists what is wrong instead of throwing at the first
 * fault, so that faults can be counted: every narinfo's NAR must read back
 * complete and match NarHash and NarSize, and every path it references must
 * be in the cache too (nothing lands before its references).
 */
async function auditRepo (repo: string, name: string): Promise<RepoState> {
  const blocks = await PackStore.openRepo(repo)
  try {
    const record = await loadRecord(repo, name)
    if (record === undefined) return { sequence: 0n, entries: 0, paths: new Set(), corrupt: [] }
    const paths = new Set<string>()
    const corrupt: string[] = []
    const references: Array<{ storePath: string, ref: string }> = []
    try {
      const index = await openIndex(blocks, record.root)
      for await (const { hash } of listNarInfos(blocks, record.root)) {
        const entry = await index.narInfo(hash)
        if (entry === undefined) { corrupt.push(`${hash}: listed, but its narinfo does not read`); continue }
        const { info } = entry
        try {
          const hasher = new NarHasher()
          for await (const chunk of readDagFile(blocks, entry.nar)) hasher.update(chunk)
          const narHash = hasher.digest()
          if (narHash !== info.narHash || hasher.size !== info.narSize) corrupt.push(`${info.storePath}: NAR is ${hasher.size} bytes with ${narHash}, its narinfo says ${info.narSize} with ${info.narHash}`)
          else paths.add(parseStorePath(info.storePath).hash)
        } catch (err) {
          corrupt.push(`${info.storePath}: ${(err as Error).message}`)
        }
        for (const ref of info.references) references.push({ storePath: info.storePath, ref })
      }
    } catch (err) {
      corrupt.push(`the index of ${record.root.toString()}: ${(err as Error).message}`)
    }
    for (const { storePath, ref } of references) {
      if (!paths.has(parseStoreBaseName(ref).hash)) corrupt.push(`${storePath}: references ${ref}, which the cache lacks whole`)
    }
    return { sequence: record.sequence, root: record.root.toString(), entries: paths.size, paths, corrupt }
  } finally {
    await blocks.close()
  }
}

/** Audits a repo after a kill against its state before: no path lost, nothing corrupt, the record never behind (and untouched unless newer); counts into `stats`. */
async function auditAfterKill (repo: string, name: string, last: RepoState, stats: { lost: number, corrupt: number }): Promise<RepoState> {
  const now = await auditRepo(repo, name)
  const lost = [...last.paths].filter(p => !now.paths.has(p)).length
  stats.lost += lost
  stats.corrupt += now.corrupt.length
  expect(now.corrupt).toEqual([])
  expect(lost).toBe(0)
  expect(now.sequence >= last.sequence).toBe(true)
  // No newer record: the last good one, untouched (whatever the killed run stored is unreachable).
  if (now.sequence === last.sequence) expect(now.root).toBe(last.root)
  return now
}

/** What a mirror's repo holds of a followed cache. */
interface MirrorState {
  /** the stored record for the followed name, exactly as stored */
  record?: Uint8Array
  /** CIDs of every block in the repo */
  held: Set<string>
  /** blocks of the record's DAG reachable from its root through blocks the repo has */
  reachable: number
  /** blocks that do not hash to their CID, or fail other than by being absent */
  corrupt: string[]
  /** blocks the followed cache does not have */
  foreign: string[]
}

/**
 * Reads every block a mirror's repo holds and checks it against its CID, then
 * walks the DAG from the stored record's root: a block may be missing (the
 * mirror was cut off while fetching) but never wrong.
 */
async function auditMirror (repo: string, name: string, dag: Set<string>): Promise<MirrorState> {
  const blocks = await PackStore.openRepo(repo)
  try {
    const held = new Set<string>()
    const corrupt: string[] = []
    const foreign: string[] = []
    for await (const { cid, bytes } of blocks.getAll()) {
      const key = cid.toString()
      held.add(key)
      if (!dag.has(key)) foreign.push(key)
      try {
        const parts: Uint8Array[] = []
        for await (const part of bytes) parts.push(part)
        checkBlock(cid, Buffer.concat(parts))
      } catch (err) {
        corrupt.push(`${key}: ${(err as Error).message}`)
      }
    }
    const record = await loadRecordBytes(repo, name)
    let reachable = 0
    if (record !== undefined) {
      const { root } = (await loadRecord(repo, name))!
      const onMissing = (cid: CID, err: Error): void => { if (!(err instanceof BlockNotFoundError)) corrupt.push(`${cid.toString()}: ${err.message}`) }
      for await (const _ of walkDag(blocks, root, { onMissing })) reachable++
    }
    return { record, held, reachable, corrupt, foreign }
  } finally {
    await blocks.close()
  }
}

/** A `nixipfs` child to SIGKILL: `kill(ms)` arms a timer (calling `onKill` just before the signal); `onOutput` sees stdout and stderr so far. */
function startCli (args: string[], onKill: () => void = () => {}): { child: ChildProcess, exited: Promise<number | null>, output: () => string, onOutput: (fn: (out: string) => void) => void, kill: (ms: number) => void } {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  const listeners: Array<(out: string) => void> = []
  const timers: NodeJS.Timeout[] = []
  let killed = false
  const exited = new Promise<number | null>(resolve => child.once('exit', code => {
    for (const t of timers) clearTimeout(t)
    resolve(code)
  }))
  const take = (b: Buffer): void => {
    out += b.toString()
    for (const fn of listeners) fn(out)
  }
  child.stdout!.on('data', take)
  child.stderr!.on('data', take)
  return {
    child,
    exited,
    output: () => out,
    onOutput: fn => { listeners.push(fn) },
    kill: ms => {
      timers.push(setTimeout(() => {
        if (killed || child.exitCode !== null) return
        killed = true
        onKill()
        child.kill('SIGKILL')
      }, ms))
    }
  }
}

/** Real Nix copies `top` from the binary cache at `url` into a fresh store; every path of the closure must come out byte for byte as built. */
async function expectNixSubstitutes (url: string, publicKey: string, top: string, closure: string[]): Promise<void> {
  const store = tmp()
  const copy = await nixAsync(['copy', '--from', url, '--to', store, top, '--option', 'trusted-public-keys', publicKey])
  expect(copy.status, copy.stderr).toBe(0)
  for (const p of closure) expect(Buffer.compare(nixDump(p), nixDump(join(store, p))), p).toBe(0)
}

describe.runIf(nixAvailable)('publish killed with SIGKILL at random points', () => {
  it('leaves the last good record and a repo the next publish completes', async () => {
    const { top, closure } = crashClosure()
    const repo = tmp()
    const first = closure.find(p => p.includes('crash-0'))!
    expect(runCli(['publish', '--repo', repo, first]).status).toBe(0)
    const name = ipnsNameOf(parsePublicKey(readFileSync(join(repo, 'keys', 'cache.public'), 'utf8')).key)
    let last = await auditRepo(repo, name)
    expect(last).toMatchObject({ sequence: 1n, entries: 1, corrupt: [] })

    const stats = { killed: 0, midway: 0, lost: 0, corrupt: 0 }
    try {
      for (let run = 0; run < RUNS; run++) {
        const cli = startCli(['publish', '-r', '--repo', repo, top])
        // Kill at a random point: during start-up or the first import, or just after the k-th path was imported.
        // The first run kills while three paths are left at least, so that one kill surely lands before the end
        // (just after the last large path, the small top path and the commit can finish inside the delay).
        const k = random(run === 0 ? closure.length - last.entries - 2 : closure.length - 1) - 1
        let imported = 0
        cli.onOutput(out => {
          const before = imported
          imported = (out.match(/ -> /g) ?? []).length
          if (before <= k && imported > k) cli.kill(random(100))
        })
        if (k < 0) cli.kill(random(900))
        const code = await cli.exited
        expect(code === null || code === 0, cli.output()).toBe(true)
        if (code === null) {
          stats.killed++
          if (imported > 0) stats.midway++
        }
        last = await auditAfterKill(repo, name, last, stats)
        if (code === 0) break // it finished before the kill: nothing more to interrupt
      }
    } finally {
      console.log(`crash: publish killed ${stats.killed} times (${stats.midway} after some paths were in), ${stats.lost} paths lost, ${stats.corrupt} corrupt`)
    }
    expect(stats.killed).toBeGreaterThan(0)
    const done = runCli(['publish', '-r', '--repo', repo, top])
    expect(done.status).toBe(0)
    expect(await checkRepo(repo, name)).toMatchObject({ entries: closure.length })
  }, TIMEOUT_MS)
})

describe.runIf(nixAvailable)('import killed with SIGKILL at random points', () => {
  it('leaves the last good record with whole paths only; the next import completes, a further one finds everything there, and Nix substitutes the closure', async () => {
    const { top, closure } = crashClosure()
    // An upstream binary cache made by real Nix, uncompressed, signed by its own key.
    const keys = tmp()
    const secret = join(keys, 'upstream.secret')
    execFileSync('nix-store', ['--generate-binary-cache-key', 'upstream-1', secret, join(keys, 'upstream.public')])
    const upstreamPub = readFileSync(join(keys, 'upstream.public'), 'utf8').trim()
    const upstreamDir = tmp()
    nix(['copy', '--to', `file://${upstreamDir}?compression=none&secret-key=${secret}`, top, '--option', 'substituters', ''])
    // Served from this process: from here on only asynchronous children (spawnSync would deadlock).
    const { url, server } = await serveFiles(upstreamDir, new Map())
    const inFlight = new Set<ServerResponse>()
    let narRequests = 0
    let onNar = (): void => {}
    server.on('request', (req, res: ServerResponse) => {
      if (req.url?.startsWith('/nar/') !== true) return
      narRequests++
      inFlight.add(res)
      res.once('close', () => inFlight.delete(res))
      onNar()
    })
    const repo = tmp()
    const importArgs = (...paths: string[]): string[] => ['import', '--repo', repo, '--from', url, '--trust', upstreamPub, ...paths]
    const stats = { killed: 0, midTransfer: 0, lost: 0, corrupt: 0 }
    let gateway: GatewayProcess | undefined
    try {
      const first = closure.find(p => p.includes('crash-0'))!
      const r = await runCliAsync(importArgs(first))
      expect(r.status, r.stderr).toBe(0)
      const name = ipnsNameOf(parsePublicKey(readFileSync(join(repo, 'keys', 'cache.public'), 'utf8')).key)
      let last = await auditRepo(repo, name)
      expect(last).toMatchObject({ sequence: 1n, entries: 1, corrupt: [] })

      for (let run = 0; run < RUNS; run++) {
        let downloadsAtKill = 0
        const cli = startCli(importArgs('-r', top), () => { downloadsAtKill = inFlight.size })
        // Kill at a random point: by a timer (start-up, narinfos, the first downloads), a little after the n-th NAR
        // download began, or just after the n-th path came in whole (the parallel downloads end together, so this
        // lands before, during or just after the commit).
        const mode = random(3)
        const n = 1 + random(closure.length - last.entries)
        let nars = 0
        if (mode === 0) cli.kill(random(1500))
        onNar = () => { if (++nars === n && mode === 1) cli.kill(random(300)) }
        let imported = 0
        cli.onOutput(out => {
          const before = imported
          imported = (out.match(/\/nix\/store\/\S+ \(\d+(?:\.\d)? (?:B|KiB|MiB|GiB)\)$/gm) ?? []).length
          if (mode === 2 && before < n && imported >= n) cli.kill(random(50))
        })
        const code = await cli.exited
        onNar = () => {}
        expect(code === null || code === 0, cli.output()).toBe(true)
        if (code === null) {
          stats.killed++
          if (downloadsAtKill > 0) stats.midTransfer++
        }
        last = await auditAfterKill(repo, name, last, stats)
        if (code === 0) break // it finished before the kill: nothing more to interrupt
      }
      expect(stats.killed).toBeGreaterThan(0)
      expect(narRequests).toBeGreaterThan(0)

      const done = await runCliAsync(importArgs('-r', top))
      expect(done.status, done.stderr).toBe(0)
      expect(await checkRepo(repo, name)).toMatchObject({ entries: closure.length })
      const again = await runCliAsync(importArgs('-r', top))
      expect(again.status, again.stderr).toBe(0)
      expect(again.stdout + again.stderr).toContain(`imported 0 path(s), ${closure.length} already there`)

      gateway = await startGatewayProcess(['--repo', repo])
      await expectNixSubstitutes(gateway.url, upstreamPub, top, closure)
    } finally {
      console.log(`crash: import killed ${stats.killed} times (${stats.midTransfer} mid-transfer), ${stats.lost} paths lost, ${stats.corrupt} corrupt`)
      await gateway?.stop()
      server.closeAllConnections()
      server.close()
    }
  }, TIMEOUT_MS)
})

describe.runIf(nixAvailable)('mirror killed with SIGKILL at random points', () => {
  it('holds only the builder\'s record and blocks that hash to their CIDs; a mirror left alone pins the whole cache, which Nix substitutes', async () => {
    const { top, closure } = crashClosure()
    const builderRepo = tmp()
    const published = runCli(['publish', '-r', '--repo', builderRepo, top]) // before any server runs in this process
    expect(published.status, published.stderr).toBe(0)
    const pub = readFileSync(join(builderRepo, 'keys', 'cache.public'), 'utf8').trim()
    const name = ipnsNameOf(parsePublicKey(pub).key)
    const builderRecord = (await loadRecordBytes(builderRepo, name))!
    // Every block of the builder's cache: all a mirror may hold, and all it must hold in the end.
    const dag = new Set<string>()
    const builderBlocks = await PackStore.openRepo(builderRepo)
    try {
      for await (const { cid } of walkDag(builderBlocks, (await loadRecord(builderRepo, name))!.root)) dag.add(cid.toString())
    } finally {
      await builderBlocks.close()
    }
    const builder = await startGatewayProcess(['--repo', builderRepo])

    let mirrorRepo = tmp()
    const mirrorArgs = (): string[] => ['mirror', '--repo', mirrorRepo, '--follow', pub, '--http-gateway', builder.url, '--follow-interval', '1', '--listen', '127.0.0.1:0', '--offline']
    const indexed = (): number => { try { return Math.floor(statSync(join(mirrorRepo, 'packs', INDEX_FILE)).size / RECORD_BYTES) } catch { return 0 } }
    const hasRecord = (): boolean => { try { statSync(recordPath(mirrorRepo, name)); return true } catch { return false } }
    const stats = { killed: 0, midTransfer: 0, afterPinned: 0, pinnedNotOnDisk: 0, lost: 0, corrupt: 0 }
    let gateway: GatewayProcess | undefined
    try {
      let last = await auditMirror(mirrorRepo, name, dag)
      for (let run = 0; run < RUNS; run++) {
        // Once a mirror got through its first transfer, only the tail it had not written yet is ever missing:
        // a longer soak starts a fresh mirror every ROUND runs, so that kills mid-transfer keep coming.
        if (run > 0 && run % ROUND === 0) {
          mirrorRepo = tmp()
          last = await auditMirror(mirrorRepo, name, dag)
        }
        let pinned = false
        let fetchingAtKill = false
        // Mid-transfer: it runs (its poll starts before it says "mirroring"), holds the record and has not pinned the root yet.
        const cli = startCli(mirrorArgs(), () => { fetchingAtKill = /mirroring /.test(cli.output()) && hasRecord() && !pinned })
        // A mirror never exits on its own. Kill it at a random point: by a timer, a little after it took the
        // record, once a random number of blocks more (up to a third of those missing) are indexed on disk, or
        // right after "pinned root".
        const missing = dag.size - last.held.size
        const modes = ['timer', 'pinned', ...(last.record === undefined ? ['record'] : []), ...(missing > 1 ? ['blocks', 'blocks'] : [])]
        const mode = modes[random(modes.length)]!
        const from = indexed()
        const k = 1 + random(Math.max(1, Math.floor(missing / 3)))
        const watch = mode === 'blocks' ? setInterval(() => { if (indexed() - from >= k) cli.kill(0) }, 10) : undefined
        cli.kill(mode === 'timer' ? random(3500) : 30_000)
        cli.onOutput(out => {
          if (mode === 'record' && /: record \d+ from /.test(out)) cli.kill(random(300))
          if (!pinned && /: pinned root /.test(out)) {
            pinned = true
            cli.kill(mode === 'pinned' ? 0 : random(200))
          }
        })
        const code = await cli.exited
        clearInterval(watch)
        expect(code, cli.output()).toBeNull()
        stats.killed++
        if (fetchingAtKill) stats.midTransfer++
        const now = await auditMirror(mirrorRepo, name, dag)
        const lost = [...last.held].filter(c => !now.held.has(c)).length
        stats.lost += lost
        stats.corrupt += now.corrupt.length
        if (pinned) {
          stats.afterPinned++
          // What the mirror said it pinned is on disk: a kill right after "pinned root" loses none of it.
          stats.pinnedNotOnDisk += dag.size - now.reachable
          expect(now.reachable).toBe(dag.size)
        }
        expect(now.record === undefined || Buffer.compare(now.record, builderRecord) === 0).toBe(true)
        expect(now.corrupt).toEqual([])
        expect(now.foreign).toEqual([])
        expect(lost).toBe(0)
        last = now
      }

      // Left alone, a mirror pins the root; killed right after, it leaves the whole cache in its repo.
      const final = startCli(mirrorArgs())
      for (let i = 0; i < 600 && !/: pinned root /.test(final.output()); i++) await new Promise(resolve => setTimeout(resolve, 100))
      expect(final.output()).toMatch(/: pinned root /)
      final.child.kill('SIGKILL')
      await final.exited
      const now = await auditMirror(mirrorRepo, name, dag)
      expect(Buffer.compare(now.record!, builderRecord)).toBe(0)
      expect(now).toMatchObject({ reachable: dag.size, corrupt: [], foreign: [] })
      expect(now.held.size).toBe(dag.size)
      expect(await checkRepo(mirrorRepo, name)).toMatchObject({ entries: closure.length })

      // The builder is gone: Nix gets the closure from the mirror's repo alone.
      await builder.stop()
      gateway = await startGatewayProcess(['--repo', mirrorRepo, '--follow', pub])
      await expectNixSubstitutes(gateway.url, pub, top, closure)
    } finally {
      console.log(`crash: mirror killed ${stats.killed} times (${stats.midTransfer} mid-transfer, ${stats.afterPinned} after "pinned root"), ${stats.lost} blocks lost, ${stats.corrupt} corrupt; ${stats.pinnedNotOnDisk} blocks of a "pinned" root were not on disk after the kill`)
      await gateway?.stop()
      await builder.stop()
    }
  }, TIMEOUT_MS)
})
