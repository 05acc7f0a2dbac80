// Network namespaces joined to the root namespace by veth pairs, shaped with
// tbf: how bench/wan.mjs puts mirrors "on the other side of a link" on one
// machine. netem is not in these kernels, so delay comes from
// bench/lib/delay-proxy.mjs instead; tbf gives the rate. Everything created
// here carries the caller's name prefix, so a later run can delete what a
// killed one left (cleanupNetns) before it starts.
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'

/** Runs `ip`/`tc` (or any command) synchronously; throws with its stderr unless `allowFail`. */
export function sh (cmd, args, { allowFail = false } = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8' })
  if (r.status !== 0 && !allowFail) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${(r.stderr || '').trim()}`)
  return r
}

/** True when this process may create network namespaces (root with `ip netns` and `tc`). */
export function netnsAvailable () {
  if (process.getuid?.() !== 0) return false
  return sh('sh', ['-c', 'command -v ip && command -v tc'], { allowFail: true }).status === 0
}

/**
 * Deletes every namespace and host-side link whose name starts with
 * `prefix`, killing the processes still inside those namespaces first
 * (deleting a namespace does not kill them, and a listening mirror would
 * keep it alive). Qdiscs go with their links. Synchronous, so it can run
 * from an 'exit' handler.
 */
export function cleanupNetns (prefix) {
  const names = sh('ip', ['netns', 'list'], { allowFail: true }).stdout.split('\n').map(l => l.split(' ')[0]).filter(n => n && n.startsWith(prefix))
  for (const ns of names) {
    for (const pid of sh('ip', ['netns', 'pids', ns], { allowFail: true }).stdout.split(/\s+/).filter(Boolean)) {
      try { process.kill(Number(pid), 'SIGKILL') } catch {}
    }
    sh('ip', ['netns', 'del', ns], { allowFail: true })
  }
  for (const dev of fs.readdirSync('/sys/class/net').filter(d => d.startsWith(prefix))) sh('ip', ['link', 'del', dev], { allowFail: true })
}

/**
 * Creates namespace PREFIX+i and a veth pair PREFIX+i+'h' (root side,
 * 10.231.i.1/30) ↔ PREFIX+i+'n' (inside, 10.231.i.2/30), both up, with the
 * namespace's loopback up. Returns the names and addresses.
 */
export function addLink (prefix, i) {
  const ns = `${prefix}${i}`; const host = `${ns}h`; const inner = `${ns}n`
  if (host.length > 15) throw new Error(`interface name ${host} is longer than 15 characters`)
  const hostAddr = `10.231.${i}.1`; const nsAddr = `10.231.${i}.2`
  sh('ip', ['netns', 'add', ns])
  sh('ip', ['link', 'add', host, 'type', 'veth', 'peer', 'name', inner])
  sh('ip', ['link', 'set', inner, 'netns', ns])
  sh('ip', ['addr', 'add', `${hostAddr}/30`, 'dev', host])
  sh('ip', ['link', 'set', host, 'up'])
  sh('ip', ['netns', 'exec', ns, 'ip', 'addr', 'add', `${nsAddr}/30`, 'dev', inner])
  sh('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', inner, 'up'])
  sh('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up'])
  return { ns, host, inner, hostAddr, nsAddr }
}

/**
 * Sets (or replaces) a tbf qdisc of `mbit` Mbit/s on both ends of `link`.
 * The bucket holds ~4 ms of line rate but at least 128 KiB, so a GSO
 * super-packet of a veth (up to 64 KiB) always fits; the queue holds 50 ms.
 */
export function shapeLink (link, mbit) {
  const burst = Math.max(128 * 1024, Math.round(mbit * 1e6 / 8 * 0.004))
  const tbf = ['root', 'tbf', 'rate', `${mbit}mbit`, 'burst', String(burst), 'latency', '50ms']
  sh('tc', ['qdisc', 'replace', 'dev', link.host, ...tbf])
  sh('ip', ['netns', 'exec', link.ns, 'tc', 'qdisc', 'replace', 'dev', link.inner, ...tbf])
}

/** Bytes received plus sent so far on the root side of `link` (its veth counters). */
export function linkBytes (link) {
  const read = (what) => Number(fs.readFileSync(`/sys/class/net/${link.host}/statistics/${what}`, 'utf8'))
  return { rx: read('rx_bytes'), tx: read('tx_bytes') }
}

/** The argv prefix that runs a command inside `link`'s namespace. */
export const inNs = (link, cmd, args) => ['ip', ['netns', 'exec', link.ns, cmd, ...args]]
