import { execFileSync } from 'node:child_process'
import { describe, expect, it } from 'vitest'
import { bunzip2Chunks } from '../../src/bunzip2.js'
import { IntegrityError } from '../../src/errors.js'
import { acceptsBzip2 } from '../../src/gateway/log.js'

describe('serving build logs', () => {
  it('sends bzip2 to a client that sends no Accept-Encoding (Nix) or lists bzip2 or *, plain text to any other', () => {
    for (const header of [undefined, 'bzip2', 'gzip, BZIP2', 'gzip;q=1, bzip2;q=0.1', '*']) expect(acceptsBzip2(header)).toBe(true)
    for (const header of ['', 'identity', 'gzip, deflate, br', 'bzip2;q=0', '*;q=0', 'gzip, *;q=0']) expect(acceptsBzip2(header)).toBe(false)
  })

  it('decompresses bzip2 as it streams; corrupt or cut input is an error for the reader, not for the process', async () => {
    const text = Array.from({ length: 20_000 }, (_, i) => `line ${i}\n`).join('')
    const good = execFileSync('bzip2', ['-c'], { input: text })
    const read = async (bytes: Uint8Array): Promise<string> => {
      let out = ''
      for await (const chunk of bunzip2Chunks((async function * () { yield bytes })())) out += Buffer.from(chunk).toString()
      return out
    }
    expect(await read(good)).toBe(text)
    const flipped = Buffer.from(good)
    flipped[60]! ^= 0xff
    for (const bad of [flipped, good.subarray(0, good.length - 20), Buffer.from('not bzip2 at all')]) {
      await expect(read(bad)).rejects.toThrow(IntegrityError)
    }
    await expect(read(Buffer.from('not bzip2 at all'))).rejects.toThrow(/^the bzip2 stream does not decompress: No magic number found/)
  })
})
