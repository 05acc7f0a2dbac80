import { afterAll, describe, expect, it } from 'vitest'
import { heapGrowthPercent } from '../src/heap.js'
import { runCli, startNodeProcess, tmp, type GatewayProcess } from './helpers/cli.js'
import { nixAvailable, nixBuild, shellDerivation } from './helpers/nix.js'

const MiB = 1024 * 1024

describe('heapGrowthPercent', () => {
  it('lets a large heap grow by 75%, a small one by at least 32 MiB, none by more than V8 would', () => {
    expect(heapGrowthPercent(200 * MiB)).toBe(75)
    expect(heapGrowthPercent(43 * MiB)).toBe(75)
    for (const live of [11, 18, 30, 40]) expect(heapGrowthPercent(live * MiB) / 100 * live * MiB).toBeGreaterThanOrEqual(32 * MiB)
    expect(heapGrowthPercent(10 * MiB)).toBe(300)
    expect(heapGrowthPercent(0)).toBe(300)
  })
})

describe.skipIf(!nixAvailable)('a gateway streaming NARs', () => {
  const gateways: GatewayProcess[] = []
  afterAll(async () => { for (const g of gateways) await g.stop() })

  it('runs no full GC after full GC on its small heap (every 70 ms with a growth of 75% alone)', async () => {
    const [path] = nixBuild(shellDerivation(`heap-${Date.now()}-${process.pid}`, `head -c ${32 * MiB} /dev/urandom > $out`)) as [string]
    const repo = tmp()
    const r = runCli(['publish', '--repo', repo, path])
    expect(r.status, r.stderr).toBe(0)
    const gw = await startNodeProcess('gateway', ['--repo', repo], {}, { nodeArgs: ['--trace-gc'] })
    gateways.push(gw)
    const info = await (await fetch(`${gw.url}/${path.slice(11, 43)}.narinfo`)).text()
    const url = /^URL: (.*)$/m.exec(info)![1]!
    const before = gw.output().split('Mark-Compact').length
    for (let i = 0; i < 4; i++) {
      const body = Buffer.from(await (await fetch(`${gw.url}/${url}`)).arrayBuffer())
      expect(body.length).toBeGreaterThan(32 * MiB)
    }
    // 128 MiB streamed: before the floor, 4-6 full GCs; after it, none (one leaves room for V8's own timing).
    expect(gw.output().split('Mark-Compact').length - before).toBeLessThanOrEqual(1)
  })
})
