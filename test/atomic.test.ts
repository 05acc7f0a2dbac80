import { execFileSync } from 'node:child_process'
import { chownSync, createReadStream, lstatSync, readFileSync, readlinkSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { writeFileAtomic, writeStreamAtomic } from '../src/atomic.js'
import { tmp } from './helpers/cli.js'

const isRoot = process.getuid?.() === 0

// Found by an outside test: `export-car -o` and `use --write` renamed a temp file over whatever was there.
describe('writeFileAtomic and writeStreamAtomic on what is not a plain file', () => {
  it('write through a symbolic link, which stays one (a nix.conf linked by home-manager)', async () => {
    const dir = tmp()
    writeFileSync(join(dir, 'real.conf'), 'old\n')
    symlinkSync('real.conf', join(dir, 'link.conf'))
    await writeFileAtomic(join(dir, 'link.conf'), 'new\n')
    expect(lstatSync(join(dir, 'link.conf')).isSymbolicLink()).toBe(true)
    expect(readFileSync(join(dir, 'real.conf'), 'utf8')).toBe('new\n')
    // A link to a file not made yet makes that file.
    symlinkSync('later.conf', join(dir, 'dangling.conf'))
    await writeFileAtomic(join(dir, 'dangling.conf'), 'made\n')
    expect(readlinkSync(join(dir, 'dangling.conf'))).toBe('later.conf')
    expect(readFileSync(join(dir, 'later.conf'), 'utf8')).toBe('made\n')
  })

  it('write into a FIFO, which stays one', async () => {
    const fifo = join(tmp(), 'fifo')
    execFileSync('mkfifo', [fifo])
    const read = new Promise<string>((resolve, reject) => {
      let got = ''
      createReadStream(fifo).on('data', b => { got += b.toString() }).on('end', () => resolve(got)).on('error', reject)
    })
    await writeStreamAtomic(fifo, (async function * () { yield Buffer.from('car bytes') })())
    expect(await read).toBe('car bytes')
    expect(statSync(fifo).isFIFO()).toBe(true)
  })

  it.runIf(isRoot)('write into a device, which stays one (as root, a rename replaced it)', async () => {
    const dev = join(tmp(), 'null')
    execFileSync('mknod', ['-m', '666', dev, 'c', '1', '3'])
    await writeFileAtomic(dev, 'discarded')
    expect(statSync(dev).isCharacterDevice()).toBe(true)
  })

  it('refuse a directory with a typed error, not a failed rename', async () => {
    const dir = tmp()
    await expect(writeFileAtomic(dir, 'x')).rejects.toMatchObject({ code: 'ERR_USAGE', message: `${dir} is a directory; give the path of a file` })
  })

  it.runIf(isRoot)('keep the owner of a file it replaces', async () => {
    const file = join(tmp(), 'nix.conf')
    writeFileSync(file, 'old\n')
    chownSync(file, 65534, 65534)
    await writeFileAtomic(file, 'new\n')
    expect(readFileSync(file, 'utf8')).toBe('new\n')
    expect(statSync(file).uid).toBe(65534)
    expect(statSync(file).gid).toBe(65534)
  })
})
