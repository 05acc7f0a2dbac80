import { execFileSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { nixAvailable } from './helpers/nix.js'
import { tmp } from './helpers/cli.js'

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
})
