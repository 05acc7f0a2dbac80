import { existsSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { makeDirectory } from '../src/disk.js'
import { tmp } from './helpers/cli.js'

describe('makeDirectory', () => {
  it('makes a directory and its missing parents with the mode given, and takes one that exists', async () => {
    const dir = join(tmp(), 'a', 'b', 'c')
    await makeDirectory(dir, { mode: 0o700 })
    expect(statSync(dir).isDirectory()).toBe(true)
    expect(statSync(join(dir, '..')).mode & 0o777).toBe(0o700)
    await makeDirectory(dir)
  })

  it('refuses a path under a file', async () => {
    const file = join(tmp(), 'a-file')
    writeFileSync(file, 'not a directory\n')
    await expect(makeDirectory(join(file, 'repo'), { flag: '--repo' })).rejects.toThrow(/cannot make the directory .*a-file\/repo \(ENOTDIR.*\); choose another place for it \(--repo\)/)
    await expect(makeDirectory(file)).rejects.toThrow(/EEXIST/)
    // Found by an outside test: `use --write --nix-conf /proc/x/nix.conf` was told to choose another --repo.
    await expect(makeDirectory(join(file, 'nix'))).rejects.toThrow(/\(ENOTDIR[^)]*\); choose another place for it$/)
  })

  // Found by an outside test: `--repo /proc/x` hung for good (Node 20's recursive mkdir never returns there).
  it.runIf(existsSync('/proc/self'))('fails at once for a path that cannot be made, under /proc', async () => {
    const timeout = new Promise<string>(resolve => setTimeout(() => resolve('still waiting after 5 s'), 5_000).unref())
    const outcome = makeDirectory('/proc/nixipfs-test/repo').then(() => 'made', (err: Error) => err.message)
    expect(await Promise.race([outcome, timeout])).toMatch(/^cannot make the directory \/proc\/nixipfs-test\/repo \(ENOENT/)
  }, 10_000)
})
