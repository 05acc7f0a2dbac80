import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { resolve } from 'node:path'
import { MemoryDatastore } from 'datastore-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { PackStore } from '../../src/ipfs/pack-store.js'
import { startP2p, type P2pNode } from '../../src/net/p2p.js'
import { tmp } from '../helpers/cli.js'

// A node that seeds to other machines (--listen-p2p beyond loopback) under a
// handshake flood from one host: TCP connections that never send a byte,
// re-opened as soon as they are closed. libp2p's defaults let 10 handshakes
// be pending at once, each for up to 10 s, and one host open 5 connections
// a second, so that one host held every slot and other machines could not
// connect at all. Two network namespaces the test makes (and removes) are
// the two machines: the attacker's and an honest peer's.
const ROOT = resolve(import.meta.dirname, '../..')
const canNetns = process.getuid?.() === 0 && spawnSync('ip', ['netns', 'list']).status === 0
const tag = `${process.pid % 10_000}`
const net = 200 + (process.pid % 50)
const hosts = {
  attacker: { ns: `nxf-a-${tag}`, veth: `nxfa${tag}`, here: `10.${net}.1.1`, there: `10.${net}.1.2` },
  honest: { ns: `nxf-h-${tag}`, veth: `nxfh${tag}`, here: `10.${net}.2.1`, there: `10.${net}.2.2` }
}

function sh (...args: string[]): void {
  const r = spawnSync(args[0]!, args.slice(1), { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`${args.join(' ')}: ${r.stderr}`)
}

/** Holds as many silent connections to host:port as it is let, re-opening each one closed (run inside the attacker's namespace). */
const FLOOD = `
const net = require('node:net')
const [host, port] = process.argv.slice(1)
const open = () => {
  const s = net.connect(Number(port), host)
  s.on('error', () => {})
  s.on('close', () => setTimeout(open, 50))
}
for (let i = 0; i < 200; i++) setTimeout(open, i * 20)
`

/** Dials `address` a few times (as a peer's redial would) and prints how many dials connected (run inside the honest namespace). */
const HONEST = `
import './dist/shim.js'
import { MemoryDatastore } from 'datastore-core'
import { PackStore } from './dist/ipfs/pack-store.js'
import { startP2p, dialPeer } from './dist/net/p2p.js'
import { mkdtempSync } from 'node:fs'
const address = process.argv[1]
const node = await startP2p({ blocks: await PackStore.openRepo(mkdtempSync('/tmp/nxf-')), datastore: new MemoryDatastore(), listen: [], peerSeed: crypto.getRandomValues(new Uint8Array(32)), lookupRecord: async () => undefined })
let ok = 0
for (let i = 0; i < 4; i++) {
  try { await dialPeer(node, address, AbortSignal.timeout(3_000)); ok++; await node.libp2p.hangUp(node.libp2p.getConnections()[0].remotePeer) } catch (err) { console.error(err.message) }
  await new Promise(r => setTimeout(r, 500))
}
console.log('connected ' + ok)
await node.stop()
process.exit(0)
`

describe.runIf(canNetns)('libp2p under a handshake flood from one host', () => {
  let node: P2pNode
  let flood: ChildProcess | undefined

  beforeAll(async () => {
    for (const h of Object.values(hosts)) {
      sh('ip', 'netns', 'add', h.ns)
      sh('ip', 'link', 'add', h.veth, 'type', 'veth', 'peer', 'name', `${h.veth}n`)
      sh('ip', 'link', 'set', `${h.veth}n`, 'netns', h.ns)
      sh('ip', 'addr', 'add', `${h.here}/24`, 'dev', h.veth)
      sh('ip', 'link', 'set', h.veth, 'up')
      sh('ip', 'netns', 'exec', h.ns, 'ip', 'addr', 'add', `${h.there}/24`, 'dev', `${h.veth}n`)
      sh('ip', 'netns', 'exec', h.ns, 'ip', 'link', 'set', `${h.veth}n`, 'up')
      sh('ip', 'netns', 'exec', h.ns, 'ip', 'link', 'set', 'lo', 'up')
    }
    node = await startP2p({ blocks: await PackStore.openRepo(tmp()), datastore: new MemoryDatastore(), listen: ['/ip4/0.0.0.0/tcp/0'], peerSeed: crypto.getRandomValues(new Uint8Array(32)), lookupRecord: async () => undefined })
  })

  afterAll(async () => {
    flood?.kill('SIGKILL')
    await node?.stop()
    for (const h of Object.values(hosts)) spawnSync('ip', ['netns', 'del', h.ns]) // takes its end of the veth pair, and so the pair, along
  })

  it('a peer on another host still connects while one host holds handshakes open', async () => {
    const port = node.libp2p.getMultiaddrs()[0]!.toString().split('/tcp/')[1]!.split('/')[0]!
    const id = node.libp2p.peerId.toString()
    flood = spawn('ip', ['netns', 'exec', hosts.attacker.ns, process.execPath, '-e', FLOOD, hosts.attacker.here, port], { stdio: 'ignore' })
    await new Promise(resolve => setTimeout(resolve, 4_000)) // the flood has had time to take what it can
    // Not spawnSync: the node under test runs in this process and must answer meanwhile.
    const honest = spawn('ip', ['netns', 'exec', hosts.honest.ns, process.execPath, '--input-type=module', '-e', HONEST, `/ip4/${hosts.honest.here}/tcp/${port}/p2p/${id}`], { cwd: ROOT, timeout: 60_000 })
    let stdout = ''
    let stderr = ''
    honest.stdout.on('data', b => { stdout += b })
    honest.stderr.on('data', b => { stderr += b })
    await new Promise(resolve => honest.on('close', resolve))
    expect(stdout, stderr).toMatch(/connected 4/)
  }, 90_000)
})
