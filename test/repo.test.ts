import { utimesSync, writeFileSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { withRepoLock } from '../src/repo.js'
import { tmp } from './helpers/cli.js'

const settle = async (p: Promise<unknown>, ms: number): Promise<boolean> =>
  await Promise.race([p.then(() => true), new Promise<boolean>(resolve => setTimeout(() => resolve(false), ms))])

describe('withRepoLock', () => {
  it('serializes holders and removes the lock afterwards', async () => {
    const repo = tmp()
    const order: string[] = []
    let release!: () => void
    const first = withRepoLock(repo, async () => { order.push('a'); await new Promise<void>(resolve => { release = resolve }) })
    await new Promise(resolve => setTimeout(resolve, 50))
    const waits: number[] = []
    const second = withRepoLock(repo, async () => { order.push('b') }, pid => waits.push(pid))
    expect(await settle(second, 400)).toBe(false)
    expect(waits).toEqual([process.pid])
    release()
    await first; await second
    expect(order).toEqual(['a', 'b'])
    expect(existsSync(join(repo, 'lock'))).toBe(false)
  })

  it('waits on a lock being written, and takes over one left by a dead process or long empty', async () => {
    const repo = tmp()
    const lock = join(repo, 'lock')
    writeFileSync(lock, '') // a holder between creating the file and writing its pid
    expect(await settle(withRepoLock(repo, async () => {}), 400)).toBe(false)
    const old = (Date.now() - 60_000) / 1000
    utimesSync(lock, old, old)
    expect(await settle(withRepoLock(repo, async () => {}), 2000)).toBe(true)
    writeFileSync(lock, '999999999') // no such process
    expect(await settle(withRepoLock(repo, async () => {}), 2000)).toBe(true)
  })
})
