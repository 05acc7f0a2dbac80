import { spawn } from 'node:child_process'
import { execFileSync } from 'node:child_process'
import { describe, expect, it } from 'vitest'
import { loadRecord } from '../../src/cache/records.js'
import { ipnsNameOf } from '../../src/ipfs/ipns.js'
import { PackStore } from '../../src/ipfs/pack-store.js'
import { parsePublicKey } from '../../src/nix/signing.js'
import { expectCacheIntact } from '../helpers/cache.js'
import { BIN, runCli, tmp } from '../helpers/cli.js'
import { nixAvailable, nixBuild, shellDerivation } from '../helpers/nix.js'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'

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

describe.runIf(nixAvailable)('publish killed with SIGKILL at random points', () => {
  it('leaves the last good record and a repo the next publish completes', async () => {
    const salt = `${Date.now()}-${process.pid}`
    // Four paths of 25 MB each (and a top path), so a publish runs long enough to be cut anywhere.
    const parts = [0, 1, 2, 3].map(i => shellDerivation(`crash-${i}-${salt}`, 'mkdir -p $out; head -c 25000000 /dev/urandom > $out/data; cp /bin/sh $out/sh'))
    const [top] = nixBuild(`let ${parts.map((p, i) => `p${i} = ${p};`).join(' ')} in ${shellDerivation(`crash-top-${salt}`, 'echo ${p0} ${p1} ${p2} ${p3} > $out')}`) as [string]
    const closure = execFileSync('nix-store', ['-qR', top], { encoding: 'utf8' }).trim().split('\n')
    const repo = tmp()
    const first = closure.find(p => p.includes('crash-0'))!
    expect(runCli(['publish', '--repo', repo, first]).status).toBe(0)
    const name = ipnsNameOf(parsePublicKey(readFileSync(join(repo, 'keys', 'cache.public'), 'utf8')).key)
    let last = await checkRepo(repo, name)
    expect(last).toEqual({ sequence: 1n, entries: 1 })

    let killed = 0
    for (let run = 0; run < 6; run++) {
      const child = spawn(process.execPath, [BIN, 'publish', '-r', '--repo', repo, top], { stdio: ['ignore', 'pipe', 'ignore'] })
      const exited = new Promise<number | null>(resolve => child.once('exit', code => resolve(code)))
      // Kill at a random point: during start-up or the first import, or just after the k-th path was imported.
      const k = Math.floor(Math.random() * (closure.length - 1)) - 1
      let imported = 0
      const kill = (ms: number): void => { setTimeout(() => child.kill('SIGKILL'), ms) }
      if (k < 0) kill(Math.floor(Math.random() * 900))
      child.stdout.on('data', (b: Buffer) => {
        const before = imported
        imported += (b.toString().match(/ -> /g) ?? []).length
        if (before <= k && imported > k) kill(Math.floor(Math.random() * 100))
      })
      const code = await exited
      if (code === null) killed++
      const now = await checkRepo(repo, name) // throws if a reachable NAR is missing or wrong
      expect(now.sequence >= last.sequence).toBe(true)
      expect(now.entries >= last.entries).toBe(true)
      last = now
      if (code === 0) break // it finished before the kill: nothing more to interrupt
    }
    expect(killed).toBeGreaterThan(0)
    const done = runCli(['publish', '-r', '--repo', repo, top])
    expect(done.status).toBe(0)
    expect(await checkRepo(repo, name)).toMatchObject({ entries: closure.length })
  })
})
