import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { NIX_OFFLINE, nixAvailable, shellDerivation } from './helpers/nix.js'
import { runAsync, tmp } from './helpers/cli.js'

/** Runs once after the next listing of a directory is taken, before it is returned. */
let afterListing: (() => Promise<void>) | undefined
vi.mock('node:fs/promises', async importOriginal => {
  const fs = await importOriginal<typeof import('node:fs/promises')>()
  const readdir = async (...args: Parameters<typeof fs.readdir>): Promise<unknown> => {
    const entries = await fs.readdir(...args)
    const hook = afterListing
    afterListing = undefined
    if (hook !== undefined) await hook()
    return entries
  }
  return { ...fs, readdir }
})
/** The store paths each validity check asked about (the real check, counted). */
const checked: string[][] = []
vi.mock('../src/nix/store.js', async importOriginal => {
  const store = await importOriginal<typeof import('../src/nix/store.js')>()
  return { ...store, validPaths: async (paths: string[]) => { checked.push(paths); return await store.validPaths(paths) } }
})
const { watchStore } = await import('../src/watch.js')

/** Adds a new file to the real store (a valid path at once) and returns its store path. */
function addToStore (name: string, text = `${name} ${Date.now()} ${Math.random()}\n`): string {
  const file = join(tmp(), name)
  writeFileSync(file, text)
  return execFileSync('nix-store', ['--add', file], { encoding: 'utf8' }).trim()
}

const waitUntil = async (ok: () => boolean): Promise<void> => {
  for (let i = 0; i < 50 && !ok(); i++) await new Promise(resolve => setTimeout(resolve, 100))
}

describe.runIf(nixAvailable)('watchStore', () => {
  let stop: (() => Promise<void>) | undefined
  afterEach(async () => { await stop?.() })

  it('publishes a path that appears while the store is being listed', async () => {
    const published: string[] = []
    const watcher = await watchStore({ intervalMs: 100, log: { info: () => {}, warn: () => {} }, publish: async paths => { published.push(...paths) } })
    stop = watcher.stop
    let during = ''
    // The path appears after the listing was taken, and its event is handled before the listing comes back.
    afterListing = async () => {
      during = addToStore('watch-during')
      await new Promise(resolve => setTimeout(resolve, 300))
    }
    const first = addToStore('watch-first')
    for (let i = 0; i < 50 && !(published.includes(first) && published.includes(during)); i++) await new Promise(resolve => setTimeout(resolve, 100))
    expect(published).toContain(first)
    expect(during).not.toBe('')
    expect(published).toContain(during)
  })

  it('publishes a path that was there at start once it is deleted and added again', async () => {
    const text = `watch-again ${Date.now()} ${Math.random()}\n`
    const path = addToStore('watch-again', text)
    const published: string[] = []
    const watcher = await watchStore({ intervalMs: 100, log: { info: () => {}, warn: () => {} }, publish: async paths => { published.push(...paths) } })
    stop = watcher.stop
    execFileSync('nix-store', ['--delete', path], { stdio: 'ignore' })
    expect(addToStore('watch-again', text)).toBe(path)
    await waitUntil(() => published.includes(path))
    expect(published).toContain(path)
  })

  it('checks what a failed build left less and less often, and a build that ends at once', async () => {
    const published: string[] = []
    const watcher = await watchStore({ intervalMs: 100, log: { info: () => {}, warn: () => {} }, publish: async paths => { published.push(...paths) } })
    stop = watcher.stop
    // What a failed build leaves (Nix 2.8 leaves the partial output): never valid.
    const left = `/nix/store/${createHash('sha256').update(`${Date.now()} ${Math.random()}`).digest('hex').replace(/[^0-9a-df-np-sv-z]/g, '').padEnd(32, '0').slice(0, 32)}-watch-failed`
    mkdirSync(left)
    try {
      const salt = `${Date.now()}-${process.pid}`
      // A build of 8 s meanwhile, whose output is there from its start: published as soon as it ends, however rarely
      // its output was being checked by then.
      const started = Date.now()
      const expr = join(tmp(), 'slow.nix')
      writeFileSync(expr, shellDerivation(`watch-slow-${salt}`, 'mkdir $out; sleep 8; echo done > $out/f'))
      // Not execFileSync: this event loop is the watcher's.
      const build = await runAsync('nix-build', [expr, '--no-out-link', ...NIX_OFFLINE])
      expect(build.status, build.stderr).toBe(0)
      const slow = build.stdout.trim()
      const built = Date.now()
      await waitUntil(() => published.includes(slow))
      expect(published).toContain(slow)
      expect(Date.now() - built, 'published after the build ended').toBeLessThan(2_000)
      const leftChecks = checked.filter(paths => paths.includes(left)).length
      // Every 100 ms for the whole time would be 80 checks and more.
      expect(leftChecks, `${leftChecks} checks of ${left} in ${Date.now() - started} ms`).toBeGreaterThan(0)
      expect(leftChecks).toBeLessThan(15)
    } finally {
      rmSync(left, { recursive: true, force: true })
    }
  })
})
