import { CarBlockIterator } from '@ipld/car'
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createServer, connect, type Server, type Socket } from 'node:net'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { nixAsync, nixAvailable, nixBuild, nixDump, shellDerivation } from '../helpers/nix.js'
import { runCli, startGatewayProcess, tmp, type GatewayProcess } from '../helpers/cli.js'

// Three providers serve one NAR (8 MiB of random bytes), each behind a TCP proxy throttled to
// RATE bytes/s (all its connections together). A client gateway that knows
// the three as --http-gateway peers fetches the NAR's blocks from all three
// at once, each block from one of them only, for real `nix copy --from`.
// SWARM_NAR_MB=16 for the numbers in the report (one source ≈ 4 s).
const salt = `${Date.now()}-${process.pid}`
const NAR_MB = Number(process.env.SWARM_NAR_MB ?? 8)
const RATE = 4 * 1024 * 1024
const EXPR = shellDerivation(`swarm-${salt}`, `mkdir -p $out; head -c ${NAR_MB * 1024 * 1024} /dev/urandom > $out/blob`)

/** A TCP proxy to `upstream` whose answers (upstream → client) share one budget of `rate` bytes/s; it can die after `killAfter` bytes. */
interface Throttle { url: string, sent: () => number, kill: () => void }
async function throttle (upstream: string, rate: number, killAfter = Infinity): Promise<Throttle> {
  const { hostname, port } = new URL(upstream)
  const sockets = new Set<Socket>()
  let sent = 0
  let next = 0
  let dead = false
  const kill = (): void => {
    dead = true
    server.close()
    for (const s of sockets) s.destroy()
  }
  const server: Server = createServer(client => {
    if (dead) { client.destroy(); return }
    const up = connect(Number(port), hostname)
    sockets.add(client); sockets.add(up)
    client.on('data', chunk => up.write(chunk))
    up.on('data', (chunk: Buffer) => {
      // Each chunk leaves when the shared budget allows: RATE bytes/s over all connections of this provider.
      const now = Date.now()
      next = Math.max(now, next) + chunk.length / rate * 1000
      up.pause()
      setTimeout(() => {
        if (dead) return
        sent += chunk.length
        client.write(chunk)
        if (sent >= killAfter) { kill(); return }
        up.resume()
      }, next - now)
    })
    const close = (): void => { client.destroy(); up.destroy(); sockets.delete(client); sockets.delete(up) }
    client.on('close', close); up.on('close', close)
    client.on('error', close); up.on('error', close)
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const address = server.address() as { port: number }
  return { url: `http://127.0.0.1:${address.port}`, sent: () => sent, kill }
}

interface Stats { blocks: { http: number, car: number, peers: Record<string, number> } }

describe.runIf(nixAvailable)('swarm: one NAR from three throttled providers', () => {
  let top: string
  let pub: string
  let name: string
  let narCid: string
  let narSize: number
  let dagBlocks: number
  const providers: GatewayProcess[] = []
  const clients: GatewayProcess[] = []
  const proxies: Throttle[] = []

  beforeAll(async () => {
    ;[top] = nixBuild(EXPR) as [string]
    const repo = tmp()
    const r = runCli(['publish', '--repo', repo, top])
    expect(r.status, r.stderr).toBe(0)
    pub = readFileSync(join(repo, 'keys', 'cache.public'), 'utf8').trim()
    name = /\/ipns\/(k51\w+)/.exec(runCli(['info', '--repo', repo]).stdout)![1]!
    // Three providers of the same blocks: copies of the repo, each its own gateway.
    providers.push(...await Promise.all([0, 1, 2].map(async () => {
      const copy = join(tmp(), 'repo')
      execFileSync('cp', ['-a', repo, copy])
      return await startGatewayProcess(['--repo', copy])
    })))
    const hash = top.slice('/nix/store/'.length, '/nix/store/'.length + 32)
    const info = await (await fetch(`${providers[0]!.url}/${hash}.narinfo`)).text()
    narCid = /^URL: nar\/(\w+)\.nar$/m.exec(info)![1]!
    narSize = Number(/^NarSize: (\d+)$/m.exec(info)![1])
    const car = await fetch(`${providers[0]!.url}/ipfs/${narCid}?format=car`)
    dagBlocks = 0
    for await (const _ of await CarBlockIterator.fromBytes(new Uint8Array(await car.arrayBuffer()))) dagBlocks++
  }, 120_000)
  afterAll(async () => {
    for (const p of proxies) p.kill()
    await Promise.all([...clients, ...providers].map(async g => await g.stop()))
  })

  /** A client gateway with an empty repo following the cache through `peers`; `nix copy` of the NAR from it, timed. */
  async function copyThrough (peers: Throttle[]): Promise<{ client: GatewayProcess, ms: number, stats: Stats }> {
    const client = await startGatewayProcess(['--repo', tmp(), '--follow', pub, ...peers.flatMap(p => ['--http-gateway', p.url]), '--follow-interval', '1'])
    clients.push(client)
    for (let i = 0; i < 100 && (await fetch(`${client.url}/${top.slice(11, 43)}.narinfo`)).status !== 200; i++) await new Promise(resolve => setTimeout(resolve, 100))
    const store = tmp()
    const started = Date.now()
    // Not spawnSync: the throttling proxies run in this process.
    const copied = await nixAsync(['copy', '--from', client.url, '--to', store, top, '--option', 'trusted-public-keys', pub])
    const ms = Date.now() - started
    expect(copied.status, copied.stderr + client.output()).toBe(0)
    expect(Buffer.compare(nixDump(join(store, top)), nixDump(top))).toBe(0)
    const stats = await (await fetch(`${client.url}/stats`)).json() as Stats
    return { client, ms, stats }
  }

  it('fetches different blocks from each of three providers, none twice, faster than from one', async () => {
    const one = await throttle(providers[0]!.url, RATE)
    proxies.push(one)
    const single = await copyThrough([one])
    // One peer, nothing else to ask: the upper levels come as single blocks, the rest as one CAR stream, each block once.
    expect(single.stats.blocks.car).toBeGreaterThan(0)
    expect(single.stats.blocks.car + single.stats.blocks.http).toBeGreaterThanOrEqual(dagBlocks)
    expect(one.sent()).toBeGreaterThan(narSize)
    expect(one.sent()).toBeLessThan(narSize * 1.05 + 1024 * 1024)

    const three = await Promise.all(providers.map(async p => await throttle(p.url, RATE)))
    proxies.push(...three)
    const swarm = await copyThrough(three)
    const log = swarm.client.output()
    const report = new RegExp(`swarm: ${narCid}: (\\d+) blocks, [\\d.]+ (?:B|KiB|MiB|GiB) in ([\\d.]+) s from 3 peer\\(s\\): (.*)`).exec(log)
    expect(report, log).not.toBeNull()
    expect(Number(report![1])).toBe(dagBlocks)
    const shares = three.map(p => Number(new RegExp(`${p.url} (\\d+) blocks`).exec(report![3]!)?.[1] ?? 0))
    console.log(`${NAR_MB} MB NAR, providers throttled to ${RATE / 1024 / 1024} MiB/s: 1 source ${single.ms} ms (nix copy), 3 sources ${swarm.ms} ms (${(single.ms / swarm.ms).toFixed(1)}x); swarm ${report![2]} s, shares ${shares.join('/')} of ${dagBlocks} blocks`)
    // Blocks from all three, each block once: the shares add up to the DAG, and the proxies carried the NAR about once.
    for (const s of shares) expect(s).toBeGreaterThan(0)
    expect(shares.reduce((a, b) => a + b, 0)).toBe(dagBlocks)
    const carried = three.reduce((a, p) => a + p.sent(), 0)
    expect(carried).toBeGreaterThan(narSize)
    expect(carried).toBeLessThan(narSize * 1.05 + 1024 * 1024)
    // 3× in theory; a loaded 2-core machine gives less.
    expect(swarm.ms).toBeLessThan(single.ms * 0.8)
  }, 60_000)

  it('ranks providers by measured throughput: one at a quarter of the others\' rate sends the fewest blocks', async () => {
    const fast = await Promise.all(providers.slice(0, 2).map(async p => await throttle(p.url, RATE)))
    const slow = await throttle(providers[2]!.url, RATE / 4)
    proxies.push(...fast, slow)
    const { client } = await copyThrough([...fast, slow])
    const line = new RegExp(`swarm: ${narCid}: \\d+ blocks, [\\d.]+ (?:B|KiB|MiB|GiB) in ([\\d.]+) s from 3 peer\\(s\\): (.*)`).exec(client.output())!
    const report = line[2]!
    const share = (p: Throttle): number => Number(new RegExp(`${p.url} (\\d+) blocks`).exec(report)?.[1] ?? 0)
    console.log(`shares at 4/4/1 MiB/s: ${[...fast, slow].map(share).join('/')} in ${line[1]!} s (${(narSize / (9 * 1024 * 1024)).toFixed(2)} s at the sum of the rates)`)
    for (const f of fast) expect(share(slow)).toBeLessThan(share(f))
  }, 60_000)

  it('completes the NAR when a provider dies halfway through its share', async () => {
    const dying = await throttle(providers[0]!.url, RATE, 2 * 1024 * 1024)
    const others = await Promise.all(providers.slice(1).map(async p => await throttle(p.url, RATE)))
    proxies.push(dying, ...others)
    const { client } = await copyThrough([dying, ...others])
    expect(client.output()).toMatch(new RegExp(`swarm: ${dying.url} left the fetch of ${narCid}`))
    expect(dying.sent()).toBeGreaterThanOrEqual(2 * 1024 * 1024)
  }, 60_000)
})
