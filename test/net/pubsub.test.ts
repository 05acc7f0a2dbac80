import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { MemoryDatastore } from 'datastore-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { PackStore } from '../../src/ipfs/pack-store.js'
import { dialPeer, startP2p, type P2pNode } from '../../src/net/p2p.js'
import { DISPUTES_TOPIC } from '../../src/net/pubsub.js'
import { loadRecord } from '../../src/cache/records.js'
import { ipnsNameOf } from '../../src/ipfs/ipns.js'
import { generateSecretKey, parsePublicKey } from '../../src/nix/signing.js'
import { signStatement } from '../../src/trust/statement.js'
import { nixAvailable, nixBuild, shellDerivation } from '../helpers/nix.js'
import { runCli, runCliAsync, startGatewayProcess, tmp, type GatewayProcess } from '../helpers/cli.js'

// Six gateways in a line, each dialling only the one before it, so every
// announcement crosses nodes that relay it. Builders K1 and K2 publish a
// reproducible path; KT and KT2 publish a tampered copy (real Nix: exported,
// one byte changed, imported into a chroot store). Every node follows the
// four caches with a poll interval of an hour: records move by IPNS over
// pubsub and by the backlog peers hand each other when they connect. A
// verifier V rebuilds the path with real Nix and flags the tampered builders.
const salt = `${Date.now()}-${process.pid}`
const P2P = ['--listen-p2p', '/ip4/127.0.0.1/tcp/0', '--follow-interval', '3600']

interface Listed { kind: string, storePath: string, by?: string, date?: string, via?: string, rebuilt?: { narHash: string } }

describe.runIf(nixAvailable)('flagging over gossipsub: disputes and IPNS records', () => {
  let path: string
  let later: string
  const repos = { k1: tmp(), k2: tmp(), t: tmp(), v: tmp() }
  const keys: Record<'k1' | 'k2' | 't' | 't2' | 'v', { pub: string, secret?: string }> = {} as never
  const nodes: GatewayProcess[] = []
  const raw: Array<{ node: P2pNode, blocks: PackStore }> = []
  let trusting: GatewayProcess

  const start = async (args: string[]): Promise<GatewayProcess> => {
    const previous = nodes.at(-1)?.p2p()
    const node = await startGatewayProcess([...P2P, ...args, ...(previous === undefined ? [] : ['--peer', previous])])
    nodes.push(node)
    return node
  }
  const follows = (...who: Array<keyof typeof keys>): string[] => who.flatMap(k => ['--follow', keys[k].pub])
  const indexed = async (node: GatewayProcess, count: number): Promise<void> => {
    const log = await node.waitForLog(new RegExp(`(indexed root[^]*){${count}}`), 30_000)
    expect(log.match(/indexed root/g)?.length ?? 0, log).toBeGreaterThanOrEqual(count)
  }
  const disputesAt = async (node: GatewayProcess): Promise<Listed[]> => await (await fetch(`${node.url}/disputes`)).json() as Listed[]
  /** A libp2p node of the test's own (the stack nodes run), dialled to `peer`. */
  const rawNode = async (peer: GatewayProcess): Promise<P2pNode> => {
    const blocks = await PackStore.openRepo(tmp())
    const node = await startP2p({ blocks, datastore: new MemoryDatastore(), listen: ['/ip4/127.0.0.1/tcp/0'], peerSeed: crypto.getRandomValues(new Uint8Array(32)), lookupRecord: async () => undefined })
    raw.push({ node, blocks })
    await dialPeer(node, peer.p2p()!)
    return node
  }

  beforeAll(async () => {
    ;[path, later] = nixBuild(`[ (${shellDerivation(`flag-${salt}`, 'mkdir $out; echo hello > $out/greeting; echo stable > $out/stamp')}) (${shellDerivation(`flag-later-${salt}`, 'mkdir $out; echo later > $out/file')}) ]`) as [string, string]
    const exported = execFileSync('nix-store', ['--export', path], { maxBuffer: 1 << 26 })
    exported[exported.indexOf('stable')]! ^= 1 // same length, other bytes
    const evilStore = tmp()
    execFileSync('nix-store', ['--store', evilStore, '--import', '--option', 'require-sigs', 'false'], { input: exported })
    const publish = (repo: string, store?: string, secret?: string): void => {
      const r = runCli(['publish', '--repo', repo, ...(store === undefined ? [] : ['--store', store]), ...(secret === undefined ? [] : ['--secret-key-file', secret]), path])
      expect(r.status, r.stderr).toBe(0)
    }
    const keygen = (name: string): { pub: string, secret: string } => {
      const secret = join(tmp(), 'key.secret')
      expect(runCli(['keygen', name, '--secret-key-file', secret]).status).toBe(0)
      return { secret, pub: readFileSync(`${secret}.pub`, 'utf8').trim() }
    }
    publish(repos.k1)
    publish(repos.k2)
    publish(repos.t, evilStore)
    keys.t2 = keygen('tampered-2')
    publish(repos.t, evilStore, keys.t2.secret) // a second cache in the same repo: its node hands both out
    for (const k of ['k1', 'k2', 't'] as const) keys[k] = { pub: readFileSync(join(repos[k], 'keys', 'cache.public'), 'utf8').trim() }
    keys.v = keygen('verifier')

    await start(['--repo', repos.k1, ...follows('k2', 't', 't2')])
    await start(['--repo', repos.k2, ...follows('k1', 't', 't2')])
    await indexed(nodes[1]!, 1)
    await start(['--repo', repos.t, ...follows('k1', 'k2', 't2')])
    await indexed(nodes[2]!, 3)
    for (let i = 0; i < 2; i++) {
      await start(['--repo', tmp(), ...follows('k1', 'k2', 't', 't2')])
      await indexed(nodes.at(-1)!, 4)
    }
    // Trusts K1, the two tampered builders and the verifier, 2 of them: the tampered NAR has its quorum until V flags it.
    trusting = await start(['--repo', tmp(), ...follows('k1', 'k2', 't', 't2'), ...['k1', 't', 't2', 'v'].flatMap(k => ['--trust', keys[k as keyof typeof keys].pub]), '--threshold', '2'])
    await indexed(trusting, 4)
  }, 180_000)

  afterAll(async () => {
    await Promise.all(nodes.map(async n => await n.stop()))
    for (const { node, blocks } of raw) { await node.stop(); await blocks.close() }
  })

  it('verify flags the tampered builders: every node lists the signed statement within 10 s, and the trusted verifier\'s vote breaks the tampered quorum', async () => {
    const narinfo = async (): Promise<Response> => await fetch(`${trusting.url}/${path.slice(11, 43)}.narinfo`)
    const before = await narinfo()
    expect(before.status).toBe(200)
    const tamperedHash = /^NarHash: (\S+)$/m.exec(await before.text())![1]!

    const v = await runCliAsync(['verify', path, '--repo', repos.v, '--secret-key-file', keys.v.secret!, ...follows('k1', 'k2', 't', 't2'), '--listen-p2p', '/ip4/127.0.0.1/tcp/0', '--peer', nodes[3]!.p2p()!])
    expect(v.status, v.stdout + v.stderr).toBe(1)
    // It dialled one node; the DHT queries for the NAR's providers (the swarm) may connect it to more.
    expect(v.stdout + v.stderr).toMatch(/announced 1 dispute statement\(s\) on \/nixipfs\/disputes\/1 to [1-9]\d* peer/)
    const ended = Date.now()
    const reached = await Promise.all(nodes.map(async (node) => {
      for (;;) {
        const found = (await disputesAt(node)).find(d => d.kind === 'rebuild' && d.by === keys.v.pub)
        if (found !== undefined) return { found, ms: Date.now() - ended, fromSigning: Date.now() - Date.parse(found.date!) }
        if (Date.now() - ended > 10_000) return undefined
        await new Promise(resolve => setTimeout(resolve, 100))
      }
    }))
    console.log(`dispute listed by ${reached.filter(r => r !== undefined).length}/${nodes.length} nodes; ms after verify exited: ${reached.map(r => r?.ms).join(', ')}; ms after signing: ${reached.map(r => r?.fromSigning).join(', ')}`)
    for (const r of reached) {
      expect(r).toBeDefined()
      expect(r!.found.storePath).toBe(path)
      expect(r!.found.rebuilt!.narHash).not.toBe(tamperedHash)
    }
    // The CLI lists what the node kept, also with no gateway asked.
    expect(runCli(['disputes', '--repo', repos.t]).stdout).toMatch(/rebuilt by verifier on \S+, announced on the network\)/)

    // K1 and V now back the honest NAR as KT and KT2 back the tampered one: 2 against 2, so nothing is served.
    const after = await narinfo()
    expect(after.status).toBe(404)
    expect(await trusting.waitForLog(/2 different NARs each reached the threshold of 2 trusted signatures or rebuilds/)).toMatch(/refusing it/)
  })

  it('a forged statement is rejected by the first node and neither relayed nor listed; a valid one by an unknown key is', async () => {
    const hostile = await rawNode(nodes[3]!)
    const observer = await rawNode(nodes[3]!)
    // The DHT may connect the observer to the hostile node directly: it would then take each message from the hostile
    // node first, and node 3's relay of it as a duplicate (never reported). Such a connection is closed at once.
    const cut = (): void => { void observer.libp2p.hangUp(hostile.libp2p.peerId).catch(() => {}) }
    observer.libp2p.addEventListener('connection:open', (e) => { if (e.detail.remotePeer.equals(hostile.libp2p.peerId)) cut() })
    cut()
    const heard: string[] = []
    // Only what the nodes relay counts: node 3, or another node the DHT connected to the hostile one, whichever came first.
    observer.libp2p.services.pubsub.addEventListener('gossipsub:message', (e) => {
      if (e.detail.msg.topic === DISPUTES_TOPIC && !e.detail.propagationSource.equals(hostile.libp2p.peerId)) heard.push(new TextDecoder().decode(e.detail.msg.data))
    })
    observer.libp2p.services.pubsub.subscribe(DISPUTES_TOPIC)
    for (let i = 0; i < 100 && hostile.libp2p.services.pubsub.getSubscribers(DISPUTES_TOPIC).length === 0; i++) await new Promise(resolve => setTimeout(resolve, 100))
    await new Promise(resolve => setTimeout(resolve, 1_500)) // a heartbeat, for the observer to be in node 3's mesh

    const junk = generateSecretKey('nobody')
    const statement = (narHash: string): string => signStatement(junk, { storePath: path, rebuilt: { narHash, narSize: 1 }, signed: [], date: new Date().toISOString() })
    const valid = statement('sha256:1jq0bgmfbk0ix2ip00cmpp70wq2qz3z76lrk6xkyb29c5qm7ik14')
    const forged = statement('sha256:0c5xbm8a0iz4h1pvvfjx2mcp6rl1wx0l3yzz1lhv6qm42jsm3y8m').replace('"narSize": 1', '"narSize": 2')
    await hostile.libp2p.services.pubsub.publish(DISPUTES_TOPIC, new TextEncoder().encode(forged))
    await hostile.libp2p.services.pubsub.publish(DISPUTES_TOPIC, new TextEncoder().encode(valid))
    for (let i = 0; i < 100 && !heard.includes(valid); i++) await new Promise(resolve => setTimeout(resolve, 100))
    expect(heard).toContain(valid) // the observer hears what the nodes relay…
    expect(heard).not.toContain(forged) // …and none relayed the forgery
    expect(await nodes[3]!.waitForLog(/refused a dispute statement from \S+: a dispute statement in \/ipns\/\S+ has a bad signature/)).toMatch(/bad signature/)
    for (const node of [nodes[0]!, trusting]) {
      for (let i = 0; i < 100 && !(await disputesAt(node)).some(d => d.by?.startsWith('nobody:') === true); i++) await new Promise(resolve => setTimeout(resolve, 100))
      const byNobody = (await disputesAt(node)).filter(d => d.by?.startsWith('nobody:') === true)
      expect(byNobody.map(d => [d.rebuilt!.narHash, d.via])).toEqual([['sha256:1jq0bgmfbk0ix2ip00cmpp70wq2qz3z76lrk6xkyb29c5qm7ik14', 'network']])
    }
  })

  it('a node that joins later learns the disputes from the peer it dials', async () => {
    const late = await start(['--repo', tmp(), ...follows('k1')])
    for (let i = 0; i < 100 && !(await disputesAt(late)).some(d => d.by === keys.v.pub); i++) await new Promise(resolve => setTimeout(resolve, 100))
    expect((await disputesAt(late)).filter(d => d.kind === 'rebuild' && d.by === keys.v.pub)).toHaveLength(1)
  })

  it('a gateway announces the statements that `verify --offline` publishes into its repo', async () => {
    const repo = tmp()
    expect(runCli(['publish', '--repo', repo, later]).status).toBe(0) // an own cache for the gateway to serve
    const gateway = await start(['--repo', repo, ...follows('k1')])
    const v = runCli(['verify', path, '--repo', repo, ...follows('k1', 't'), '--offline', '--http-gateway', nodes[3]!.url])
    expect(v.status, v.stdout + v.stderr).toBe(1)
    const by = readFileSync(join(repo, 'keys', 'cache.public'), 'utf8').trim()
    const ended = Date.now()
    for (const node of [nodes[0]!, gateway]) {
      for (let i = 0; i < 100 && !(await disputesAt(node)).some(d => d.by === by); i++) await new Promise(resolve => setTimeout(resolve, 100))
      expect((await disputesAt(node)).filter(d => d.by === by).map(d => d.storePath)).toEqual([path])
    }
    console.log(`statement of verify --offline listed at the far end ${Date.now() - ended} ms after verify exited`)
  })

  it('a new record of K1 reaches every follower by IPNS over pubsub, with polls an hour apart', async () => {
    const r = runCli(['publish', '--repo', repos.k1, later])
    expect(r.status, r.stderr).toBe(0)
    const published = Date.now()
    const followers = nodes.slice(1)
    const k1 = ipnsNameOf(parsePublicKey(keys.k1.pub).key)
    const sequence = (await loadRecord(repos.k1, k1))!.sequence
    const times = await Promise.all(followers.map(async (node) => {
      for (let i = 0; i < 100; i++) {
        if (node.output().includes(`/ipns/${k1}: record ${sequence} from`)) return Date.now() - published
        await new Promise(resolve => setTimeout(resolve, 100))
      }
      return undefined
    }))
    console.log(`record ${sequence} of K1 stored by ${times.filter(t => t !== undefined).length}/${followers.length} followers; ms after publish: ${times.join(', ')}`)
    for (const t of times) expect(t).toBeDefined()
    // A follower four hops away fetches the new index (over bitswap, from its one neighbour) and serves the new path.
    const served = async (): Promise<number> => (await fetch(`${nodes[4]!.url}/${later.slice(11, 43)}.narinfo`)).status
    for (let i = 0; i < 100 && await served() !== 200; i++) await new Promise(resolve => setTimeout(resolve, 100))
    expect(await served()).toBe(200)
  })
})

describe('gossipsub on loopback', () => {
  it('a node with more than 10 peers on 127.0.0.1 still relays to them (no IP colocation penalty on loopback)', async () => {
    const made: Array<{ node: P2pNode, blocks: PackStore }> = []
    try {
      for (let i = 0; i < 14; i++) {
        const blocks = await PackStore.openRepo(tmp())
        made.push({ blocks, node: await startP2p({ blocks, datastore: new MemoryDatastore(), listen: ['/ip4/127.0.0.1/tcp/0'], peerSeed: crypto.getRandomValues(new Uint8Array(32)), lookupRecord: async () => undefined }) })
      }
      const [hub, ...leaves] = made.map(m => m.node) as [P2pNode, ...P2pNode[]]
      const got = new Set<number>()
      for (const [i, leaf] of leaves.entries()) {
        leaf.libp2p.services.pubsub.addEventListener('message', () => got.add(i))
        leaf.libp2p.services.pubsub.subscribe(DISPUTES_TOPIC)
      }
      hub.libp2p.services.pubsub.subscribe(DISPUTES_TOPIC)
      // The hub dials out: libp2p takes only 5 inbound connections a second from one host.
      for (const leaf of leaves) await hub.libp2p.dial(leaf.libp2p.getMultiaddrs()[0]!)
      for (let i = 0; i < 100 && hub.libp2p.services.pubsub.getSubscribers(DISPUTES_TOPIC).length < leaves.length; i++) await new Promise(resolve => setTimeout(resolve, 100))
      await new Promise(resolve => setTimeout(resolve, 2_500)) // heartbeats: mesh and scores
      await leaves[0]!.libp2p.services.pubsub.publish(DISPUTES_TOPIC, new TextEncoder().encode('hello'))
      for (let i = 0; i < 50 && got.size < leaves.length - 1; i++) await new Promise(resolve => setTimeout(resolve, 100))
      expect(got.size).toBe(leaves.length - 1)
    } finally {
      for (const { node, blocks } of made) { await node.stop(); await blocks.close() }
    }
  }, 30_000)
})
