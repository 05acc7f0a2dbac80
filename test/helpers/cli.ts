import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'

/** The built CLI (npm test builds it first). */
export const BIN = resolve(import.meta.dirname, '../../bin/nixipfs.mjs')

/** Directories made by `tmp` in this test file, removed after it (test/helpers/setup.ts). */
const made: string[] = []

/** A fresh temporary directory, removed once the test file is done. */
export function tmp (prefix = 'nixipfs-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  made.push(dir)
  return dir
}

/** Removes every directory `tmp` made (repos, Nix stores: hundreds of MB per end-to-end file). */
export function removeTmpDirs (): void {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true })
}

/** Runs `nixipfs ARGS` to completion. */
export function runCli (args: string[], env: Record<string, string> = {}): { status: number, stdout: string, stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, ...env } })
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr }
}

/** Runs a command to completion without blocking this process (needed when this process also serves what the command fetches). */
export async function runAsync (cmd: string, args: string[], env: Record<string, string> = {}): Promise<{ status: number, stdout: string, stderr: string }> {
  const child = spawn(cmd, args, { env: { ...process.env, ...env } })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (b: Buffer) => { stdout += b.toString() })
  child.stderr.on('data', (b: Buffer) => { stderr += b.toString() })
  const status = await new Promise<number>(resolve => child.on('close', code => resolve(code ?? -1)))
  return { status, stdout, stderr }
}

/** Runs `nixipfs ARGS` without blocking this process. */
export async function runCliAsync (args: string[], env: Record<string, string> = {}): Promise<{ status: number, stdout: string, stderr: string }> {
  return await runAsync(process.execPath, [BIN, ...args], env)
}

/** A `nixipfs gateway` child process and the URL it serves. */
export interface GatewayProcess {
  url: string
  child: ChildProcess
  output: () => string
  /** the first libp2p address it listens on, if any */
  p2p: () => string | undefined
  /** waits (up to `ms`, default 5 s) until the log matches `re`; returns the log */
  waitForLog: (re: RegExp, ms?: number) => Promise<string>
  stop: () => Promise<void>
}

/**
 * Starts `nixipfs COMMAND --listen 127.0.0.1:0 ARGS` (gateway or mirror) and
 * waits until it serves. Without a p2p flag in ARGS it runs `--offline`, so
 * tests never bind the default libp2p port, unless `defaultP2p` asks for it.
 * `nodeArgs` go to Node before the script.
 */
export async function startNodeProcess (command: 'gateway' | 'mirror', args: string[], env: Record<string, string> = {}, options: { defaultP2p?: boolean, nodeArgs?: string[] } = {}): Promise<GatewayProcess> {
  const p2p = options.defaultP2p === true || args.some(a => a === '--listen-p2p' || a === '--peer' || a === '--bootstrap' || a === '--offline')
  const child = spawn(process.execPath, [...options.nodeArgs ?? [], BIN, command, '--listen', '127.0.0.1:0', ...(p2p ? [] : ['--offline']), ...args], { env: { ...process.env, ...env } })
  let out = ''
  child.stdout.on('data', (b: Buffer) => { out += b.toString() })
  child.stderr.on('data', (b: Buffer) => { out += b.toString() })
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${command} did not start:\n${out}`)), 30_000)
    const check = (): void => {
      const m = /serving .*at (http:\/\/[0-9.:]+)/.exec(out)
      if (m !== null) { clearTimeout(timer); resolve(m[1]!) }
    }
    child.stdout.on('data', check)
    child.stderr.on('data', check)
    child.on('exit', code => { clearTimeout(timer); reject(new Error(`${command} exited with ${code}:\n${out}`)) })
  })
  return {
    url,
    child,
    output: () => out,
    p2p: () => /p2p: listening on (\S+)/.exec(out)?.[1],
    waitForLog: async (re, ms = 5_000) => {
      for (let i = 0; i < ms / 100 && !re.test(out); i++) await new Promise(resolve => setTimeout(resolve, 100))
      return out
    },
    stop: async () => {
      if (child.exitCode !== null) return
      const exited = new Promise(resolve => child.once('exit', resolve))
      child.kill('SIGTERM')
      await exited
    }
  }
}

/** Starts `nixipfs gateway --listen 127.0.0.1:0 ARGS` (see startNodeProcess). */
export async function startGatewayProcess (args: string[], env: Record<string, string> = {}): Promise<GatewayProcess> {
  return await startNodeProcess('gateway', args, env)
}
