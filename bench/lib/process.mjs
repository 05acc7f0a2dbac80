// Processes, ports, logging and memory: what every benchmark script needs to
// run commands and servers on this machine.
import { spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import { createServer } from 'node:net'

/** The environment of children that talk to 127.0.0.1: no proxy settings, no colours. */
export const LOCAL_ENV = { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' }
for (const k of Object.keys(LOCAL_ENV)) if (/_proxy$/i.test(k)) delete LOCAL_ENV[k]
LOCAL_ENV.NO_PROXY = LOCAL_ENV.no_proxy = '127.0.0.1,localhost'

/** A log function writing to stderr as `[tag   12s] …`, counting from its creation. */
export function logger (tag) {
  const t0 = Date.now()
  return (...a) => console.error(`[${tag} ${((Date.now() - t0) / 1000).toFixed(0).padStart(4)}s]`, ...a)
}

export const sleep = (ms) => new Promise(resolve => setTimeout(resolve, ms))
export const rmrf = (p) => fs.rmSync(p, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 })
export const stripAnsi = (s) => s.replace(/\x1b\[[0-9;]*[A-Za-z]/g, '')

/** A TCP port free on 127.0.0.1 right now. */
export const freePort = () => new Promise((resolve, reject) => {
  const s = createServer(); s.on('error', reject)
  s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)) })
})

/** True when `cmd` is on the PATH. */
export const has = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0

/**
 * Runs a command to completion, synchronously; returns its stdout and how
 * long it took, or throws with the end of its stderr.
 */
export function runSync (cmd, args, options = {}) {
  const t = process.hrtime.bigint()
  const r = spawnSync(cmd, args, { env: LOCAL_ENV, encoding: 'utf8', maxBuffer: 1 << 28, ...options })
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}):\n${(r.stderr || '').slice(-2000)}`)
  return { stdout: r.stdout, seconds: Number(process.hrtime.bigint() - t) / 1e9 }
}

/**
 * Runs a command to completion without blocking the event loop (so servers
 * and timers of the calling script keep running); resolves with its stdout
 * and how long it took, or rejects with the end of its stderr. `onSpawn`
 * gets the child (e.g. for its pid).
 */
export function runAsync (cmd, args, options = {}, onSpawn = () => {}) {
  const t = process.hrtime.bigint()
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: LOCAL_ENV, stdio: ['ignore', 'pipe', 'pipe'], ...options })
    onSpawn(child)
    let stdout = ''; let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d) => { stdout += d })
    child.stderr.setEncoding('utf8').on('data', (d) => { stderr = (stderr + d).slice(-20000) })
    child.on('error', reject)
    child.on('close', (status) => {
      const seconds = Number(process.hrtime.bigint() - t) / 1e9
      if (status === 0) resolve({ stdout, seconds })
      else reject(new Error(`${cmd} ${args.join(' ')} failed (${status}):\n${stderr.slice(-2000)}`))
    })
  })
}

/**
 * Starts `cmd` in the background (its own process group, output to
 * `logFile`) and resolves once its log matches `ready`, with the child, a
 * `log()` reader, the `match` and `readyAfter` seconds. Rejects if it exits
 * first or takes longer than `timeoutMs`.
 */
export async function startBackground (logFile, cmd, args, ready, { timeoutMs = 600_000, onSpawn = () => {} } = {}) {
  const fd = fs.openSync(logFile, 'w')
  const child = spawn(cmd, args, { env: LOCAL_ENV, stdio: ['ignore', fd, fd], detached: true })
  fs.closeSync(fd)
  onSpawn(child)
  const bg = { child, log: () => fs.readFileSync(logFile, 'utf8'), match: null, readyAfter: 0 }
  const start = Date.now()
  await waitForLog(bg, ready, timeoutMs)
  bg.match = ready.exec(bg.log())
  bg.readyAfter = (Date.now() - start) / 1000
  return bg
}

/** Waits until the log of a startBackground process matches `re`; rejects if it exits first or after `timeoutMs`. */
export async function waitForLog (bg, re, timeoutMs = 600_000) {
  const start = Date.now()
  while (!re.test(bg.log())) {
    if (bg.child.exitCode !== null || bg.child.signalCode !== null) throw new Error(`${bg.child.spawnargs.join(' ')} exited:\n${bg.log().slice(-2000)}`)
    if (Date.now() - start > timeoutMs) throw new Error(`no ${re} after ${timeoutMs / 1000} s:\n${bg.log().slice(-2000)}`)
    await sleep(50)
  }
}

/** Stops a startBackground process: SIGTERM, then SIGKILL to its group after 10 s. */
export async function stopBackground (bg) {
  if (bg.child.exitCode !== null || bg.child.signalCode !== null) return
  const exited = new Promise(resolve => bg.child.once('exit', resolve))
  bg.child.kill('SIGTERM')
  await Promise.race([exited, sleep(10_000).then(() => { try { process.kill(-bg.child.pid, 'SIGKILL') } catch {} })])
}

/** CPU seconds (user + system) process `pid` has used so far: fields 14 and 15 of /proc/PID/stat. */
export function cpuSeconds (pid) {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return (Number(f[11]) + Number(f[12])) / CLK_TCK
}
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout) || 100

/** Installs the apt package `pkg` when `cmd` is not on the PATH. */
export function installIfMissing (cmd, pkg = cmd) {
  if (!has(cmd)) runSync('apt-get', ['install', '-y', pkg])
}

/** Resident memory of a process now and at its peak (VmRSS, VmHWM), in MiB. */
export function memoryOf (pid) {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8')
  const mib = (field) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1]) / 1024
  return { rss: mib('VmRSS'), hwm: mib('VmHWM') }
}

/** The machine's load average over 1, 5 and 15 minutes, as /proc/loadavg gives it. */
export const loadAverage = () => fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')

/**
 * Runs this script again in a network namespace of its own (`unshare -n`, as
 * root), with only its loopback up, and exits with its status: its loopback
 * byte counts are then its own, not those of everything else on the machine.
 * Resolves 'own' inside it, or 'shared' when that is not possible (not root,
 * no unshare, or BENCH_NETNS=0); never resolves in the process that re-ran it.
 */
export async function ownLoopback () {
  if (process.env.BENCH_NETNS === 'inside') return 'own'
  if (process.env.BENCH_NETNS === '0') return 'shared'
  if (spawnSync('unshare', ['-n', 'ip', 'link', 'set', 'lo', 'up'], { stdio: 'ignore' }).status !== 0) return 'shared'
  const { spawn } = await import('node:child_process')
  const child = spawn('unshare', ['-n', 'sh', '-c', 'ip link set lo up && exec "$@"', 'sh', process.execPath, ...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit', env: { ...process.env, BENCH_NETNS: 'inside' } })
  for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal))
  return await new Promise(() => child.on('exit', (code, signal) => process.exit(code ?? (signal === null ? 1 : 128))))
}
